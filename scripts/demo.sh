#!/usr/bin/env bash
# The local demo (docs/demo.md): a 3-member etcd cluster, etcd-monitor, Prometheus with the
# shipped rules, Alertmanager with the shipped routing, a log receiver standing in for
# PagerDuty/Slack/e-mail, a Pushgateway and one benchmark run, all on 127.0.0.1.
#
#   scripts/demo.sh up                    start everything in two stages (the cluster and the
#                                         exporter first, then the Pushgateway, Alertmanager and
#                                         Prometheus, each as soon as it is found or built), print
#                                         where to look, then the alerts as they arrive; Ctrl-C
#                                         stops everything
#   scripts/demo.sh stop                  stop every process a demo started (another terminal)
#   scripts/demo.sh restart-member NAME   start a stopped member again (etcd-0, etcd-1, etcd-2)
#
# Environment: DEMO_DIR (state directory, default <repo>/.demo), DEMO_PORT_OFFSET (added to
# every port of demo/demo.env, default 0), the binary variables of tools/build.sh (ETCD_BIN,
# ETCDCTL_BIN, PROMETHEUS_BIN, ALERTMANAGER_BIN, PUSHGATEWAY_BIN, ETCD_MONITOR_BIN) and its
# BIN_DIR, DEMO_USE_INSTALLED=0 (never run a tool found on the PATH), and, for the tests only,
# DEMO_HOLD_STAGE2=FILE (stage 2 waits until FILE exists). docs/demo.md has the details.
#
# Every process the demo starts runs in its own session (setsid, so a Ctrl-C reaches only this
# script, which then stops them in order) and carries EM_DEMO_STATE=<state dir> in its
# environment: stopping kills every process carrying that mark, whether or not its pid file
# is still there, so nothing is left running.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../demo/demo.env
source "$ROOT/demo/demo.env"

STATE="${DEMO_DIR:-$ROOT/.demo}"
mkdir -p "$(dirname "$STATE")"
STATE="$(cd "$(dirname "$STATE")" && pwd)/$(basename "$STATE")"
MARK="EM_DEMO_STATE=$STATE"
MARKER_FILE=".etcd-monitor-demo"
OFFSET="${DEMO_PORT_OFFSET:-0}"
STOP_TIMEOUT=10 # seconds between SIGTERM and SIGKILL
START_TIMEOUT=60

die() {
	echo "demo: $*" >&2
	exit 1
}

[[ "$OFFSET" =~ ^[0-9]+$ ]] || die "DEMO_PORT_OFFSET=$OFFSET is not a non-negative integer"

port() { echo $(($1 + OFFSET)); }

read -r -a CLIENT_PORTS <<<"$DEMO_ETCD_CLIENT_PORTS"
read -r -a PEER_PORTS <<<"$DEMO_ETCD_PEER_PORTS"
for i in 0 1 2; do
	CLIENT_PORTS[i]=$(port "${CLIENT_PORTS[i]}")
	PEER_PORTS[i]=$(port "${PEER_PORTS[i]}")
done
EXPORTER_PORT=$(port "$DEMO_EXPORTER_PORT")
PROMETHEUS_PORT=$(port "$DEMO_PROMETHEUS_PORT")
ALERTMANAGER_PORT=$(port "$DEMO_ALERTMANAGER_PORT")
PUSHGATEWAY_PORT=$(port "$DEMO_PUSHGATEWAY_PORT")
LOGRECEIVER_PORT=$(port "$DEMO_LOGRECEIVER_PORT")
for p in "${CLIENT_PORTS[@]}" "${PEER_PORTS[@]}" "$EXPORTER_PORT" "$PROMETHEUS_PORT" \
	"$ALERTMANAGER_PORT" "$PUSHGATEWAY_PORT" "$LOGRECEIVER_PORT"; do
	((p < 65536)) || die "DEMO_PORT_OFFSET=$OFFSET puts port $p out of range"
done
ENDPOINTS="127.0.0.1:${CLIENT_PORTS[0]},127.0.0.1:${CLIENT_PORTS[1]},127.0.0.1:${CLIENT_PORTS[2]}"
INITIAL_CLUSTER="etcd-0=http://127.0.0.1:${PEER_PORTS[0]},etcd-1=http://127.0.0.1:${PEER_PORTS[1]},etcd-2=http://127.0.0.1:${PEER_PORTS[2]}"

# ---- processes -------------------------------------------------------------------------

# marked_pids: every live process carrying this demo's mark.
marked_pids() {
	local d pid
	for d in /proc/[0-9]*; do
		pid="${d#/proc/}"
		[ "$pid" != "$$" ] || continue
		if grep -qzxF "$MARK" "$d/environ" 2>/dev/null; then
			echo "$pid"
		fi
	done
}

# stop_all: SIGTERM to every marked process group, SIGKILL to what is left after STOP_TIMEOUT.
stop_all() {
	local pids pid i
	pids="$(marked_pids)"
	if [ -n "$pids" ]; then
		for pid in $pids; do
			kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
			kill -CONT -- "-$pid" 2>/dev/null || true # a paused member must see the TERM
		done
		for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
			[ -n "$(marked_pids)" ] || break
			sleep 0.1
		done
		pids="$(marked_pids)"
		for pid in $pids; do
			echo "demo: pid $pid ignored SIGTERM for ${STOP_TIMEOUT}s; killing it" >&2
			kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
		done
		for ((i = 0; i < 50; i++)); do
			[ -n "$(marked_pids)" ] || break
			sleep 0.1
		done
	fi
	rm -f "$STATE"/run/*.pid
}

# start NAME BINARY ARGS...: runs BINARY in its own session with the mark, output to
# logs/NAME.log, pid in run/NAME.pid. cwd is STATE/NAME when that directory exists.
start() {
	local name="$1" bin="$2"
	shift 2
	local dir="$STATE"
	[ -d "$STATE/$name" ] && dir="$STATE/$name"
	echo "---- $(date -u +%FT%TZ) $bin $*" >>"$STATE/logs/$name.log"
	(cd "$dir" && exec env "$MARK" $SETSID "$bin" "$@" >>"$STATE/logs/$name.log" 2>&1 </dev/null) &
	echo $! >"$STATE/run/$name.pid"
}

# http_ok HOST PORT PATH: the endpoint answers 200 (bash's /dev/tcp: no curl needed).
http_ok() {
	(
		exec 3<>"/dev/tcp/$1/$2" || exit 1
		printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$3" "$1" >&3
		IFS= read -r -t 5 line <&3 || exit 1
		[[ "$line" == "HTTP/1."[01]" 200"* ]]
	) 2>/dev/null
}

# pid_alive PID: the process exists and has not exited (a zombie its parent has not reaped yet
# has exited).
pid_alive() {
	local st
	st="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
	st="${st##*) }"
	[ "${st:0:1}" != Z ]
}

# port_in_use PORT: something accepts connections on 127.0.0.1:PORT.
port_in_use() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# await NAME PORT PATH: bounded wait for the endpoint; returns 1, with the reason in AWAIT_ERR,
# if the process exits or the time runs out.
await() {
	local name="$1" p="$2" path="$3" pid i
	pid="$(cat "$STATE/run/$name.pid")"
	for ((i = 0; i < START_TIMEOUT * 5; i++)); do
		http_ok 127.0.0.1 "$p" "$path" && return 0
		if ! kill -0 "$pid" 2>/dev/null; then
			AWAIT_ERR="$name exited during start; see $STATE/logs/$name.log"
			return 1
		fi
		sleep 0.2
	done
	AWAIT_ERR="$name did not answer http://127.0.0.1:$p$path within ${START_TIMEOUT}s; see $STATE/logs/$name.log"
	return 1
}

# wait_ready NAME PORT PATH: await, or stop the demo.
wait_ready() {
	await "$@" || die "$AWAIT_ERR"
}

# ---- binaries ----------------------------------------------------------------------------

BIN="${BIN_DIR:-$ROOT/bin}" # where tools/build.sh puts the pinned builds

# The oldest version of each tool the demo is known to work with (docs/demo.md says how each was
# checked); an installed binary older than that is not used.
declare -A MIN_VERSION=(
	[etcd]=3.5.0
	[etcdctl]=3.5.0
	[prometheus]=2.42.0
	[alertmanager]=0.28.0
	[pushgateway]=1.5.1
)
# The names a package manager installs each tool under (Debian prefixes two of them).
declare -A PATH_NAMES=(
	[alertmanager]="alertmanager prometheus-alertmanager"
	[pushgateway]="pushgateway prometheus-pushgateway"
)
TIMEOUT=""
command -v timeout >/dev/null && TIMEOUT="timeout 10"
declare -A TITLE=([prometheus]=Prometheus [alertmanager]=Alertmanager [pushgateway]=Pushgateway)

# tool_version BINARY NAME: the X.Y.Z the binary reports, or nothing.
tool_version() {
	local out args=--version
	[ "$2" != etcdctl ] || args=version
	# Bounded: whatever is on the PATH under that name must not hang the demo.
	out="$($TIMEOUT "$1" $args 2>&1 </dev/null | head -n 3)" || true
	if [[ "$out" =~ [Vv]ersion:?\ +v?([0-9]+\.[0-9]+\.[0-9]+) ]]; then
		echo "${BASH_REMATCH[1]}"
	fi
}

# version_ge A B: version A is B or newer.
version_ge() {
	[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" = "$2" ]
}

# find_bin NAME VAR: the binary the demo runs for NAME, or nothing when it has to be built:
#   1. the variable, as tools/build.sh reads it (an error if it reports a version below the minimum);
#   2. BIN/NAME, the pinned build;
#   3. unless DEMO_USE_INSTALLED=0, the first binary on PATH, under any name its packages use,
#      whose version meets the minimum.
find_bin() {
	local name="$1" var="$2" min="${MIN_VERSION[$1]:-}" v p cand real seen=" "
	if [ -n "${!var:-}" ]; then
		[ -x "${!var}" ] || die "$var=${!var} is not an executable file"
		if [ -n "$min" ]; then
			v="$(tool_version "${!var}" "$name")"
			if [ -n "$v" ] && ! version_ge "$v" "$min"; then
				die "$var=${!var} is $name $v; the demo needs $min or newer (docs/demo.md)"
			fi
		fi
		echo "${!var}"
		return 0
	fi
	# make build writes the exporter into <repo>/bin whatever BIN_DIR says.
	local dir="$BIN"
	[ "$name" != etcd-monitor ] || dir="$ROOT/bin"
	if [ -x "$dir/$name" ]; then
		echo "$dir/$name"
		return 0
	fi
	[ "${DEMO_USE_INSTALLED:-1}" != 0 ] || return 0
	for cand in ${PATH_NAMES[$name]:-$name}; do
		while IFS= read -r p; do
			# /bin and /usr/bin are one directory on merged-/usr systems: look at each file once.
			real="$(readlink -f "$p" 2>/dev/null || echo "$p")"
			[[ "$seen" != *" $real "* ]] || continue
			seen+="$real "
			if [ -z "$min" ]; then
				echo "$p"
				return 0
			fi
			v="$(tool_version "$p" "$name")"
			if [ -n "$v" ] && version_ge "$v" "$min"; then
				echo "demo: using the installed $p ($name $v; the demo needs $min or newer)" >&2
				echo "$p"
				return 0
			fi
			echo "demo: not using the installed $p ($name ${v:-of unknown version}; the demo needs $min or newer): building it" >&2
		done < <(type -P -a "$cand" 2>/dev/null || true)
	done
	return 0
}

# bin_var NAME: the variable tools/build.sh reads for NAME.
bin_var() {
	case "$1" in
	etcd-monitor) echo ETCD_MONITOR_BIN ;;
	*) echo "$(echo "$1" | tr 'a-z-' 'A-Z_')_BIN" ;;
	esac
}

# typical_build NAME: how long building NAME from empty Go caches took on 2 cores.
typical_build() {
	"$ROOT/tools/build.sh" --typical "$1" 2>/dev/null || echo "unmeasured"
}

# need NAME...: every tool found (find_bin) or built with tools/build.sh, which prints what it
# builds, the pinned version and the time it takes; sets BINS[NAME]. Returns 1 if a build fails.
declare -A BINS=()
# With -q it does not say again which installed binaries it takes or leaves, and why.
need() {
	local name missing=() quiet=""
	if [ "$1" = -q ]; then
		quiet=1
		shift
	fi
	for name in "$@"; do
		if [ -n "$quiet" ]; then
			BINS[$name]="$(find_bin "$name" "$(bin_var "$name")" 2>/dev/null)"
		else
			BINS[$name]="$(find_bin "$name" "$(bin_var "$name")")"
		fi
		[ -n "${BINS[$name]}" ] || missing+=("$name")
	done
	[ ${#missing[@]} -gt 0 ] || return 0
	# In the background so that Ctrl-C and `make demo-stop` interrupt the wait at once; the
	# build carries the mark, so stopping the demo stops it too.
	env "$MARK" BIN_DIR="$BIN" "$ROOT/tools/build.sh" "${missing[@]}" </dev/null &
	if ! wait $!; then
		echo "demo: tools/build.sh ${missing[*]} failed (see above)" >&2
		return 1
	fi
	for name in "${missing[@]}"; do
		BINS[$name]="$BIN/$name"
		if [ ! -x "${BINS[$name]}" ]; then
			echo "demo: tools/build.sh did not build $BIN/$name" >&2
			return 1
		fi
	done
}

# ---- member commands ---------------------------------------------------------------------

start_member() {
	local i="$1"
	start "etcd-$i" "${BINS[etcd]}" \
		--name="etcd-$i" \
		--data-dir="$STATE/etcd-$i/data" \
		--listen-client-urls="http://127.0.0.1:${CLIENT_PORTS[i]}" \
		--advertise-client-urls="http://127.0.0.1:${CLIENT_PORTS[i]}" \
		--listen-peer-urls="http://127.0.0.1:${PEER_PORTS[i]}" \
		--initial-advertise-peer-urls="http://127.0.0.1:${PEER_PORTS[i]}" \
		--initial-cluster="$INITIAL_CLUSTER" \
		--initial-cluster-token=etcd-monitor-demo \
		--initial-cluster-state=new \
		--quota-backend-bytes="$DEMO_ETCD_QUOTA_BYTES"
}

member_index() {
	case "$1" in
	etcd-0 | etcd-1 | etcd-2) echo "${1#etcd-}" ;;
	*) die "unknown member $1 (etcd-0, etcd-1 or etcd-2)" ;;
	esac
}

SETSID=""
command -v setsid >/dev/null && SETSID="setsid"

# ---- stage 2: Pushgateway, Alertmanager, Prometheus ------------------------------------------

declare -A STARTED=()
declare -A FOLLOWER_PORT=([pushgateway]=$PUSHGATEWAY_PORT [alertmanager]=$ALERTMANAGER_PORT [prometheus]=$PROMETHEUS_PORT)

# start_follower NAME: starts NAME from BINS[NAME] with the demo's configuration.
start_follower() {
	case "$1" in
	pushgateway)
		start pushgateway "${BINS[pushgateway]}" --web.listen-address="127.0.0.1:$PUSHGATEWAY_PORT"
		;;
	alertmanager)
		start alertmanager "${BINS[alertmanager]}" \
			--config.file="$ROOT/demo/alertmanager.yml" \
			--storage.path="$STATE/alertmanager/data" \
			--web.listen-address="127.0.0.1:$ALERTMANAGER_PORT" \
			--cluster.listen-address=
		;;
	prometheus)
		start prometheus "${BINS[prometheus]}" \
			--config.file="$STATE/prometheus/prometheus.yml" \
			--storage.tsdb.path="$STATE/prometheus/data" \
			--web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
			--scrape.discovery-reload-interval=1s
		;;
	esac
	STARTED[$1]=1
}

# ---- commands ----------------------------------------------------------------------------

cmd_stop() {
	local sup i
	if [ ! -f "$STATE/run/demo.pid" ] && [ -z "$(marked_pids)" ]; then
		echo "demo: nothing is running in $STATE"
		return 0
	fi
	if [ -f "$STATE/run/demo.pid" ]; then
		# The foreground `make demo` stops everything itself on TERM; give it the time to.
		sup="$(cat "$STATE/run/demo.pid")"
		if kill -TERM "$sup" 2>/dev/null; then
			for ((i = 0; i < (STOP_TIMEOUT + 5) * 10; i++)); do
				kill -0 "$sup" 2>/dev/null || break
				sleep 0.1
			done
		fi
	fi
	stop_all
	rm -f "$STATE/run/demo.pid"
	echo "demo: stopped (state kept in $STATE)"
}

cmd_restart_member() {
	local name="${1:-}" i j pid
	[ -n "$name" ] || die "usage: scripts/demo.sh restart-member etcd-0|etcd-1|etcd-2"
	i="$(member_index "$name")"
	[ -f "$STATE/$MARKER_FILE" ] || die "no demo in $STATE"
	# Right after `kill` the member may still be shutting down: give it the time a stop gets.
	if [ -f "$STATE/run/$name.pid" ]; then
		pid="$(cat "$STATE/run/$name.pid")"
		for ((j = 0; j < STOP_TIMEOUT * 10; j++)); do
			pid_alive "$pid" || break
			sleep 0.1
		done
		! pid_alive "$pid" || die "$name is running (pid $pid)"
	fi
	BINS[etcd]="$(find_bin etcd ETCD_BIN)"
	[ -n "${BINS[etcd]}" ] || die "no etcd binary; run: make demo"
	start_member "$i"
	wait_ready "$name" "${CLIENT_PORTS[i]}" /health
	echo "demo: $name is back"
}

# cmd_snapshot takes a verified snapshot into the demo's backups directory (the exporter's backup
# collector watches it) and pushes the outcome when the Pushgateway is up; the five newest are kept.
cmd_snapshot() {
	[ -f "$STATE/$MARKER_FILE" ] || die "no demo in $STATE"
	BINS[etcd-monitor]="$(find_bin etcd-monitor ETCD_MONITOR_BIN)"
	[ -n "${BINS[etcd-monitor]}" ] || die "bin/etcd-monitor not found; run: make build"
	local push=()
	if http_ok 127.0.0.1 "$PUSHGATEWAY_PORT" /-/ready; then
		push=(--pushgateway.url="http://127.0.0.1:$PUSHGATEWAY_PORT")
	fi
	mkdir -p "$STATE/backups" "$STATE/logs"
	env "$MARK" "${BINS[etcd-monitor]}" snapshot save --etcd.endpoints="$ENDPOINTS" --dir="$STATE/backups" \
		--cluster=demo --keep=5 "${push[@]}" 2>&1 </dev/null | tee -a "$STATE/logs/snapshot.log"
	return "${PIPESTATUS[0]}"
}

cleanup_on_exit() {
	local rc=$?
	trap - EXIT INT TERM
	echo
	echo "demo: stopping..."
	[ -n "${TAIL_PID:-}" ] && kill "$TAIL_PID" 2>/dev/null
	stop_all
	rm -f "$STATE/run/demo.pid"
	echo "demo: stopped; logs and data are in $STATE"
	exit "$rc"
}

cmd_up() {
	local i p name envs=""
	SECONDS=0
	# The follow-up commands need this demo's settings when they are not the defaults.
	[ -z "${DEMO_DIR:-}" ] || envs+="DEMO_DIR=$STATE "
	[ "$OFFSET" = 0 ] || envs+="DEMO_PORT_OFFSET=$OFFSET "

	# A previous demo still running, or a directory that is not ours: refuse rather than clobber.
	if [ -n "$(marked_pids)" ]; then
		die "a demo is already running in $STATE; stop it with: make demo-stop"
	fi
	if [ -e "$STATE" ] && [ ! -f "$STATE/$MARKER_FILE" ] && [ -n "$(ls -A "$STATE" 2>/dev/null)" ]; then
		die "$STATE exists and is not a demo state directory; remove it or set DEMO_DIR"
	fi

	# Every port up front, so a clash is one line and nothing has started.
	local names=(etcd-0 etcd-1 etcd-2 etcd-0-peer etcd-1-peer etcd-2-peer etcd-monitor prometheus alertmanager pushgateway logreceiver)
	local ports=("${CLIENT_PORTS[@]}" "${PEER_PORTS[@]}" "$EXPORTER_PORT" "$PROMETHEUS_PORT" "$ALERTMANAGER_PORT" "$PUSHGATEWAY_PORT" "$LOGRECEIVER_PORT")
	for i in "${!ports[@]}"; do
		if port_in_use "${ports[i]}"; then
			die "port ${ports[i]} (${names[i]}) on 127.0.0.1 is in use; free it or set DEMO_PORT_OFFSET"
		fi
	done

	BINS[etcd-monitor]="$(find_bin etcd-monitor ETCD_MONITOR_BIN)"
	[ -n "${BINS[etcd-monitor]}" ] || die "bin/etcd-monitor not found; run: make build"
	# A binary named by a variable that is too old is an error before anything starts, not later.
	for name in etcd etcdctl pushgateway alertmanager prometheus; do
		[ -z "$(printenv "$(bin_var "$name")" || true)" ] || find_bin "$name" "$(bin_var "$name")" >/dev/null
	done

	rm -rf "$STATE"
	mkdir -p "$STATE"/{run,logs,bin,prometheus/targets,prometheus/rules,alertmanager/secrets,pushgateway,logreceiver}
	touch "$STATE/$MARKER_FILE"
	echo $$ >"$STATE/run/demo.pid"
	trap cleanup_on_exit EXIT
	# Ctrl-C and `make demo-stop` are how a demo is meant to end: not an error.
	trap 'exit 0' INT TERM

	# Stage 1: what needs only etcd and etcd-monitor. Stage 2: the Pushgateway, Alertmanager and
	# Prometheus, each joining as soon as it is there (found or built), the quickest build first.
	need etcd etcdctl || die "the demo cannot run without etcd and etcdctl"

	echo "demo: building the log receiver"
	# The flags of `make build`, so that it reuses the packages the exporter's build compiled.
	(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o "$STATE/bin/logreceiver" ./demo/logreceiver 2> >(grep -v '^go: downloading ' >&2)) ||
		die "building demo/logreceiver failed"

	# Configuration: the shared files from demo/ and alerts/, plus this environment's targets.
	ln -s "$ROOT/demo/prometheus.yml" "$STATE/prometheus/prometheus.yml"
	ln -s "$ROOT/alerts/etcd-monitor.rules.yml" "$STATE/prometheus/rules/etcd-monitor.rules.yml"
	cat >"$STATE/prometheus/targets/etcd.yml" <<EOF
# make demo: every member's client port, which also serves etcd's /metrics.
- targets: ['127.0.0.1:${CLIENT_PORTS[0]}', '127.0.0.1:${CLIENT_PORTS[1]}', '127.0.0.1:${CLIENT_PORTS[2]}']
  labels: {cluster: demo}
EOF
	cat >"$STATE/prometheus/targets/etcd-monitor.yml" <<EOF
- targets: ['127.0.0.1:$EXPORTER_PORT']
  labels: {cluster: demo}
EOF
	cat >"$STATE/prometheus/targets/pushgateway.yml" <<EOF
- targets: ['127.0.0.1:$PUSHGATEWAY_PORT']
  labels: {cluster: demo}
EOF
	cat >"$STATE/prometheus/targets/alertmanager.yml" <<EOF
- targets: ['127.0.0.1:$ALERTMANAGER_PORT']
EOF
	echo "http://127.0.0.1:$LOGRECEIVER_PORT/" >"$STATE/alertmanager/secrets/webhook-url"

	echo "demo: starting etcd (3 members), etcd-monitor and the log receiver"
	for i in 0 1 2; do start_member "$i"; done
	# What stage 2 finds already built starts now, beside stage 1; the rest is built after the banner.
	for name in pushgateway alertmanager prometheus; do
		BINS[$name]="$(find_bin "$name" "$(bin_var "$name")")"
		[ -z "${BINS[$name]}" ] || [ -n "${DEMO_HOLD_STAGE2:-}" ] || start_follower "$name"
	done
	start logreceiver "$STATE/bin/logreceiver" --web.listen-address="127.0.0.1:$LOGRECEIVER_PORT"
	mkdir -p "$STATE/backups"
	start etcd-monitor "${BINS[etcd-monitor]}" \
		--etcd.endpoints="$ENDPOINTS" \
		--web.listen-address="127.0.0.1:$EXPORTER_PORT" \
		--collector.backup --backup.dir="$STATE/backups"
	for i in 0 1 2; do wait_ready "etcd-$i" "${CLIENT_PORTS[i]}" /health; done
	wait_ready logreceiver "$LOGRECEIVER_PORT" /-/healthy
	wait_ready etcd-monitor "$EXPORTER_PORT" /metrics

	local c="--endpoints=$ENDPOINTS" follow=() how
	for name in pushgateway alertmanager prometheus; do
		how="starting"
		[ -n "${BINS[$name]}" ] || how="to build: $(typical_build "$name")"
		follow+=("${TITLE[$name]} ($how)")
	done
	cat <<EOF

================================================================================================
etcd-monitor demo is running: the cluster and the exporter are up (in ${SECONDS}s). State and logs: $STATE
  etcd members      http://127.0.0.1:${CLIENT_PORTS[0]}  http://127.0.0.1:${CLIENT_PORTS[1]}  http://127.0.0.1:${CLIENT_PORTS[2]}  (etcd-0..2, /metrics on the same ports)
  etcd-monitor      http://127.0.0.1:$EXPORTER_PORT/  (status page)   http://127.0.0.1:$EXPORTER_PORT/metrics
  one-shot check    ${BINS[etcd-monitor]} check --etcd.endpoints=$ENDPOINTS
  log receiver      http://127.0.0.1:$LOGRECEIVER_PORT  (stands in for PagerDuty, Slack and e-mail)
Prometheus, Alertmanager and the Pushgateway follow, each with a line here when it is up
(builds one after the other, times from empty Go caches on 2 cores):
${follow[0]}, ${follow[1]}, ${follow[2]}.
  Pushgateway       http://127.0.0.1:$PUSHGATEWAY_PORT  (benchmark results, job etcd_benchmark: a first benchmark runs once it is up)
  Alertmanager      http://127.0.0.1:$ALERTMANAGER_PORT
  Prometheus        http://127.0.0.1:$PROMETHEUS_PORT  (targets: /targets, alerts: /alerts)

Break it (in another terminal), now or later: the status page, /metrics and check show it at
once; the alert arrives below once Prometheus and Alertmanager are up (Alertmanager waits 30 s
before sending a new group):
  1. stop one member   -> EtcdMemberDown after 5 min (warning, slack):
       kill \$(cat $STATE/run/etcd-2.pid)
  2. stop two members  -> EtcdQuorumLost after 1 min (critical, pagerduty):
       kill \$(cat $STATE/run/etcd-1.pid) \$(cat $STATE/run/etcd-2.pid)
  3. fill the quota    -> EtcdNoSpaceAlarm at once (critical, pagerduty):
       for i in \$(seq 40); do head -c 1000000 /dev/zero | tr '\\0' x | ${BINS[etcdctl]} $c put /demo-fill/\$i >/dev/null || break; done
Bring a member back:  ${envs}$ROOT/scripts/demo.sh restart-member etcd-2
Take a backup:        ${envs}$ROOT/scripts/demo.sh snapshot  (verified, pushed; its age is on the overview dashboard)
Start afresh:         stop, then make demo again (the state directory is recreated)
Stop everything:      Ctrl-C here, or ${envs}make demo-stop
================================================================================================
Alerts received by the log receiver are printed below as they arrive.
EOF
	env "$MARK" tail -n 0 -F "$STATE/logs/logreceiver.log" &
	TAIL_PID=$!

	# Test-only (test/e2e/demo_test.go): hold stage 2 until a file exists, as a slow build would.
	if [ -n "${DEMO_HOLD_STAGE2:-}" ]; then
		echo "demo: holding the Pushgateway, Alertmanager and Prometheus until $DEMO_HOLD_STAGE2 exists"
		for ((i = 0; i < 6000; i++)); do
			[ ! -e "$DEMO_HOLD_STAGE2" ] || break
			sleep 0.1
		done
		[ -e "$DEMO_HOLD_STAGE2" ] || die "$DEMO_HOLD_STAGE2 did not appear within 10 minutes"
	fi

	# A stage 2 tool that cannot be built or started is a warning: what runs keeps running.
	local without=()
	for name in pushgateway alertmanager prometheus; do
		if [ -z "${STARTED[$name]:-}" ]; then
			if ! need -q "$name"; then
				echo "demo: warning: ${TITLE[$name]} could not be built; the demo goes on without it" >&2
				without+=("${TITLE[$name]}")
				continue
			fi
			start_follower "$name"
		fi
		if ! await "$name" "${FOLLOWER_PORT[$name]}" /-/ready; then
			echo "demo: warning: $AWAIT_ERR; the demo goes on without ${TITLE[$name]}" >&2
			without+=("${TITLE[$name]}")
			continue
		fi
		case "$name" in
		pushgateway)
			echo "demo: the Pushgateway is up (at ${SECONDS}s): http://127.0.0.1:$PUSHGATEWAY_PORT"
			echo "demo: first benchmark run (etcd-monitor benchmark $DEMO_BENCHMARK_ARGS)"
			# shellcheck disable=SC2086 # DEMO_BENCHMARK_ARGS is a list of flags
			if ! env "$MARK" "${BINS[etcd-monitor]}" benchmark --etcd.endpoints="$ENDPOINTS" $DEMO_BENCHMARK_ARGS \
				--pushgateway.url="http://127.0.0.1:$PUSHGATEWAY_PORT" 2>&1 </dev/null | tee "$STATE/logs/benchmark.log"; then
				echo "demo: warning: the benchmark failed (see $STATE/logs/benchmark.log); the rest of the demo runs" >&2
			fi
			echo "demo: first backup (etcd-monitor snapshot save --dir $STATE/backups)"
			cmd_snapshot || echo "demo: warning: the backup failed (see $STATE/logs/snapshot.log); the rest of the demo runs" >&2
			;;
		alertmanager)
			echo "demo: Alertmanager is up (at ${SECONDS}s): http://127.0.0.1:$ALERTMANAGER_PORT"
			;;
		prometheus)
			echo "demo: Prometheus is up (at ${SECONDS}s): http://127.0.0.1:$PROMETHEUS_PORT/targets, alerts: http://127.0.0.1:$PROMETHEUS_PORT/alerts"
			;;
		esac
	done
	if [ ${#without[@]} -eq 0 ]; then
		echo "demo: the full stack is up (ready in ${SECONDS}s); alerts are printed below as they arrive"
	else
		echo "demo: up without ${without[*]} (at ${SECONDS}s); the rest keeps running until Ctrl-C or make demo-stop"
	fi
	wait "$TAIL_PID"
}

case "${1:-up}" in
up) cmd_up ;;
stop) cmd_stop ;;
restart-member) cmd_restart_member "${2:-}" ;;
snapshot) cmd_snapshot ;;
*) die "unknown command ${1} (up, stop, restart-member NAME, snapshot)" ;;
esac
