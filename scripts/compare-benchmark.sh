#!/usr/bin/env bash
# Compares `etcd-monitor benchmark` with etcd's own benchmark tool (tools/benchmark of
# go.etcd.io/etcd/v3@v3.6.8, built into bin/etcd-benchmark by `make tools`).
#
# Both tools run the put workload with the same parameters against the same local etcd cluster
# (started here on loopback, in a temp dir removed at the end), in alternating order, PAIRS
# times, with SETTLE seconds of idle cluster before each run. Prints every run, then the median throughput of each tool, the median of the per-pair
# ratios ours/theirs, and each tool's CPU seconds (user+sys) per 1,000 operations.
#
# Environment (defaults in brackets):
# Keep PAIRS even so that each tool runs first equally often: the members may still be busy with
# the previous run's aftermath (garbage collection, backend commits, raft log snapshots), and an
# odd count would give one tool the second slot once more than the other.
#
#   MEMBERS [3]  PAIRS [4]  SETTLE [2]  CONNS [10]  CLIENTS [100]  KEY_SIZE [8]  VAL_SIZE [256]
#   KEY_SPACE [100000]  TOTAL [20000]  UNSAFE_NO_FSYNC [false]
#   PREFIX [/b/]: etcd-monitor's key prefix. etcd's tool writes KEY_SIZE-byte keys at the root;
#     ours are the prefix, the run's 26-byte directory (<run id>/) and KEY_SIZE bytes, so a short
#     prefix keeps the requests close in size.
#     PREFIX=/etcd-monitor-benchmark/ measures the default (23 more bytes per key).
#   ETCD_BIN [bin/etcd]  ETCDCTL_BIN [bin/etcdctl]  ETCD_BENCHMARK_BIN [bin/etcd-benchmark]
#   ETCD_MONITOR_BIN [built from ./cmd/etcd-monitor into the temp dir]
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
MEMBERS=${MEMBERS:-3}
PAIRS=${PAIRS:-4}
SETTLE=${SETTLE:-2}
CONNS=${CONNS:-10}
CLIENTS=${CLIENTS:-100}
KEY_SIZE=${KEY_SIZE:-8}
VAL_SIZE=${VAL_SIZE:-256}
KEY_SPACE=${KEY_SPACE:-100000}
TOTAL=${TOTAL:-20000}
PREFIX=${PREFIX:-/b/}
UNSAFE_NO_FSYNC=${UNSAFE_NO_FSYNC:-false}
ETCD_BIN=${ETCD_BIN:-$repo/bin/etcd}
ETCDCTL_BIN=${ETCDCTL_BIN:-$repo/bin/etcdctl}
ETCD_BENCHMARK_BIN=${ETCD_BENCHMARK_BIN:-$repo/bin/etcd-benchmark}

for b in "$ETCD_BIN" "$ETCDCTL_BIN" "$ETCD_BENCHMARK_BIN"; do
	if [[ ! -x $b ]]; then
		echo "compare-benchmark: $b is missing; run 'make tools' first" >&2
		exit 1
	fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/compare-benchmark.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z ${ETCD_MONITOR_BIN:-} ]]; then
	(cd "$repo" && go build -o "$work/etcd-monitor" ./cmd/etcd-monitor)
	ETCD_MONITOR_BIN=$work/etcd-monitor
fi

# free_port sets port to a loopback port no socket uses, above the last one handed out. The ports
# come from below the kernel's ephemeral range: on a busy machine an outgoing connection's source
# port in that range made a member fail with "bind: address already in use" although nothing
# listened there.
read -r ephemeral_low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || ephemeral_low=32768
next_port=$((10000 + RANDOM % (ephemeral_low - 10000 - 1000)))
port_used() {
	if command -v ss >/dev/null; then
		[[ -n $(ss -Htan "( sport = :$1 or dport = :$1 )" 2>/dev/null) ]]
	else
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
	fi
}
free_port() {
	while port_used "$next_port"; do
		next_port=$((next_port + 1))
	done
	port=$next_port
	next_port=$((next_port + 1))
}

cluster=() endpoints=()
declare -A client_port peer_port
for i in $(seq 1 "$MEMBERS"); do
	free_port
	client_port[$i]=$port
	free_port
	peer_port[$i]=$port
	cluster+=("m$i=http://127.0.0.1:${peer_port[$i]}")
	endpoints+=("127.0.0.1:${client_port[$i]}")
done
initial_cluster=$(IFS=,; echo "${cluster[*]}")
eps=$(IFS=,; echo "${endpoints[*]}")

for i in $(seq 1 "$MEMBERS"); do
	# etcd reads ETCD_* variables as flags: hide this script's own.
	env -u ETCD_BIN -u ETCDCTL_BIN -u ETCD_BENCHMARK_BIN -u ETCD_MONITOR_BIN \
		"$ETCD_BIN" --name "m$i" --data-dir "$work/m$i" \
		--listen-client-urls "http://127.0.0.1:${client_port[$i]}" \
		--advertise-client-urls "http://127.0.0.1:${client_port[$i]}" \
		--listen-peer-urls "http://127.0.0.1:${peer_port[$i]}" \
		--initial-advertise-peer-urls "http://127.0.0.1:${peer_port[$i]}" \
		--initial-cluster "$initial_cluster" --initial-cluster-state new \
		--unsafe-no-fsync="$UNSAFE_NO_FSYNC" --log-level error >"$work/m$i.log" 2>&1 &
	pids+=($!)
done

healthy=false
for _ in $(seq 1 60); do
	if "$ETCDCTL_BIN" --endpoints "$eps" --dial-timeout 1s --command-timeout 2s endpoint health >/dev/null 2>&1; then
		healthy=true
		break
	fi
	sleep 0.5
done
if ((PAIRS % 2)); then
	echo "compare-benchmark: PAIRS=$PAIRS is odd: one tool runs second in a pair once more than the other" >&2
fi
if ! $healthy; then
	echo "compare-benchmark: the $MEMBERS-member cluster did not become healthy; logs:" >&2
	tail -n 20 "$work"/m*.log >&2
	exit 1
fi

# run_timed FILE CMD...: runs CMD with stdout to FILE, prints its user+sys CPU seconds.
run_timed() {
	local out=$1
	shift
	local TIMEFORMAT='%U %S'
	local t
	t=$({ time "$@" >"$out" 2>"$out.err"; } 2>&1) || {
		echo "compare-benchmark: failed: $*" >&2
		cat "$out" "$out.err" >&2
		exit 1
	}
	awk '{printf "%.3f", $1 + $2}' <<<"$t"
}

theirs() {
	local cpu rps
	cpu=$(run_timed "$work/theirs.out" "$ETCD_BENCHMARK_BIN" --endpoints="$eps" --conns="$CONNS" --clients="$CLIENTS" \
		put --key-size="$KEY_SIZE" --val-size="$VAL_SIZE" --total="$TOTAL" --key-space-size="$KEY_SPACE")
	rps=$(awk '/Requests\/sec/ {print $2}' "$work/theirs.out")
	echo "$rps $cpu"
}

ours() {
	local cpu rps
	cpu=$(run_timed "$work/ours.out" "$ETCD_MONITOR_BIN" benchmark --etcd.endpoints="$eps" --conns="$CONNS" --clients="$CLIENTS" \
		--workload=put --prefix="$PREFIX" --key-size="$KEY_SIZE" --val-size="$VAL_SIZE" --total="$TOTAL" --key-space-size="$KEY_SPACE" --output=json)
	rps=$(awk -F'[:,]' '/"throughput_ops_per_second"/ {gsub(/ /, "", $2); print $2}' "$work/ours.out")
	echo "$rps $cpu"
}

median() { sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

echo "etcd $("$ETCD_BIN" --version | head -n 1 | awk '{print $3}'), $MEMBERS members on loopback (unsafe-no-fsync=$UNSAFE_NO_FSYNC), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "put: conns $CONNS, clients $CLIENTS, key $KEY_SIZE B (ours under prefix $PREFIX), value $VAL_SIZE B, key space $KEY_SPACE, $TOTAL ops; $PAIRS pairs, alternating order, ${SETTLE}s idle before each run"
printf '%-5s %-14s %14s %14s %10s %10s\n' pair first "theirs ops/s" "ours ops/s" ratio "cpu t/o s"
ratios=() their_rps=() our_rps=() their_cpu=() our_cpu=()
for p in $(seq 1 "$PAIRS"); do
	if ((p % 2)); then
		first=theirs
		sleep "$SETTLE"
		read -r t_rps t_cpu < <(theirs)
		sleep "$SETTLE"
		read -r o_rps o_cpu < <(ours)
	else
		first=ours
		sleep "$SETTLE"
		read -r o_rps o_cpu < <(ours)
		sleep "$SETTLE"
		read -r t_rps t_cpu < <(theirs)
	fi
	ratio=$(awk -v o="$o_rps" -v t="$t_rps" 'BEGIN {printf "%.3f", o / t}')
	ratios+=("$ratio") their_rps+=("$t_rps") our_rps+=("$o_rps") their_cpu+=("$t_cpu") our_cpu+=("$o_cpu")
	printf '%-5s %-14s %14.1f %14.1f %10s %10s\n' "$p" "$first" "$t_rps" "$o_rps" "$ratio" "$t_cpu/$o_cpu"
done

m_t=$(printf '%s\n' "${their_rps[@]}" | median)
m_o=$(printf '%s\n' "${our_rps[@]}" | median)
m_r=$(printf '%s\n' "${ratios[@]}" | median)
c_t=$(printf '%s\n' "${their_cpu[@]}" | median)
c_o=$(printf '%s\n' "${our_cpu[@]}" | median)
echo
printf 'median throughput: etcd-benchmark %.1f ops/s, etcd-monitor %.1f ops/s\n' "$m_t" "$m_o"
printf 'median ratio ours/theirs: %s\n' "$m_r"
awk -v t="$c_t" -v o="$c_o" -v n="$TOTAL" 'BEGIN {printf "CPU seconds per 1000 ops (user+sys, whole process): etcd-benchmark %.3f, etcd-monitor %.3f (ratio %.2f)\n", t * 1000 / n, o * 1000 / n, o / t}'
