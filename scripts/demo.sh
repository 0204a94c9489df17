#!/usr/bin/env bash
# The local demo (docs/demo.md): a 3-member etcd cluster, etcd-monitor, Prometheus with the
# shipped rules, Alertmanager with the shipped routing, a log receiver standing in for
# PagerDuty/Slack/e-mail, a Pushgateway and one benchmark run, all on 127.0.0.1.
#
#   scripts/demo.sh up                    start everything, print where to look, then print the
#                                         alerts as they arrive; Ctrl-C stops everything
#   scripts/demo.sh stop                  stop every process a demo started (another terminal)
#   scripts/demo.sh restart-member NAME   start a stopped member again (etcd-0, etcd-1, etcd-2)
#
# Environment: DEMO_DIR (state directory, default <repo>/.demo), DEMO_PORT_OFFSET (added to
# every port of demo/demo.env, default 0), and the binary variables of tools/build.sh
# (ETCD_BIN, ETCDCTL_BIN, PROMETHEUS_BIN, ALERTMANAGER_BIN, PUSHGATEWAY_BIN, ETCD_MONITOR_BIN).
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

# port_in_use PORT: something accepts connections on 127.0.0.1:PORT.
port_in_use() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_ready NAME PORT PATH: bounded wait for the endpoint; fails (and stops the demo) if the
# process exits or the time runs out.
wait_ready() {
	local name="$1" p="$2" path="$3" pid i
	pid="$(cat "$STATE/run/$name.pid")"
	for ((i = 0; i < START_TIMEOUT * 5; i++)); do
		http_ok 127.0.0.1 "$p" "$path" && return 0
		kill -0 "$pid" 2>/dev/null || die "$name exited during start; see $STATE/logs/$name.log"
		sleep 0.2
	done
	die "$name did not answer http://127.0.0.1:$p$path within ${START_TIMEOUT}s; see $STATE/logs/$name.log"
}

# ---- binaries ----------------------------------------------------------------------------

# find_bin NAME VAR: the variable if set, else <repo>/bin/NAME, else NAME on PATH.
find_bin() {
	local name="$1" var="$2"
	if [ -n "${!var:-}" ]; then
		[ -x "${!var}" ] || die "$var=${!var} is not an executable file"
		echo "${!var}"
	elif [ -x "$ROOT/bin/$name" ]; then
		echo "$ROOT/bin/$name"
	else
		command -v "$name" || true
	fi
}

resolve_bins() {
	ETCD="$(find_bin etcd ETCD_BIN)"
	ETCDCTL="$(find_bin etcdctl ETCDCTL_BIN)"
	PROMETHEUS="$(find_bin prometheus PROMETHEUS_BIN)"
	ALERTMANAGER="$(find_bin alertmanager ALERTMANAGER_BIN)"
	PUSHGATEWAY="$(find_bin pushgateway PUSHGATEWAY_BIN)"
	EXPORTER="$(find_bin etcd-monitor ETCD_MONITOR_BIN)"
}

# ---- member commands ---------------------------------------------------------------------

start_member() {
	local i="$1"
	start "etcd-$i" "$ETCD" \
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
	local name="${1:-}" i
	[ -n "$name" ] || die "usage: scripts/demo.sh restart-member etcd-0|etcd-1|etcd-2"
	i="$(member_index "$name")"
	[ -f "$STATE/$MARKER_FILE" ] || die "no demo in $STATE"
	if [ -f "$STATE/run/$name.pid" ] && kill -0 "$(cat "$STATE/run/$name.pid")" 2>/dev/null; then
		die "$name is running"
	fi
	resolve_bins
	start_member "$i"
	wait_ready "$name" "${CLIENT_PORTS[i]}" /health
	echo "demo: $name is back"
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

	resolve_bins
	if [ -z "$ETCD" ] || [ -z "$ETCDCTL" ] || [ -z "$PROMETHEUS" ] || [ -z "$ALERTMANAGER" ] || [ -z "$PUSHGATEWAY" ]; then
		echo "demo: building the pinned tools into ./bin (first time: several minutes, Prometheus is the longest)"
		"$ROOT/tools/build.sh" || die "tools/build.sh failed"
		resolve_bins
	fi
	[ -n "$EXPORTER" ] || die "bin/etcd-monitor not found; run: make build"

	rm -rf "$STATE"
	mkdir -p "$STATE"/{run,logs,bin,prometheus/targets,prometheus/rules,alertmanager/secrets,pushgateway,logreceiver,backups}
	touch "$STATE/$MARKER_FILE"
	echo $$ >"$STATE/run/demo.pid"
	trap cleanup_on_exit EXIT
	# Ctrl-C and `make demo-stop` are how a demo is meant to end: not an error.
	trap 'exit 0' INT TERM

	echo "demo: building the log receiver"
	(cd "$ROOT" && CGO_ENABLED=0 go build -o "$STATE/bin/logreceiver" ./demo/logreceiver) ||
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

	echo "demo: starting etcd (3 members), the log receiver, Alertmanager, the Pushgateway, etcd-monitor and Prometheus"
	for i in 0 1 2; do start_member "$i"; done
	start logreceiver "$STATE/bin/logreceiver" --web.listen-address="127.0.0.1:$LOGRECEIVER_PORT"
	start alertmanager "$ALERTMANAGER" \
		--config.file="$ROOT/demo/alertmanager.yml" \
		--storage.path="$STATE/alertmanager/data" \
		--web.listen-address="127.0.0.1:$ALERTMANAGER_PORT" \
		--cluster.listen-address=
	start pushgateway "$PUSHGATEWAY" --web.listen-address="127.0.0.1:$PUSHGATEWAY_PORT"
	start etcd-monitor "$EXPORTER" \
		--etcd.endpoints="$ENDPOINTS" \
		--collector.backup --backup.dir="$STATE/backups" \
		--web.listen-address="127.0.0.1:$EXPORTER_PORT"
	start prometheus "$PROMETHEUS" \
		--config.file="$STATE/prometheus/prometheus.yml" \
		--storage.tsdb.path="$STATE/prometheus/data" \
		--web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
		--scrape.discovery-reload-interval=1s

	for i in 0 1 2; do wait_ready "etcd-$i" "${CLIENT_PORTS[i]}" /health; done
	wait_ready logreceiver "$LOGRECEIVER_PORT" /-/healthy
	wait_ready alertmanager "$ALERTMANAGER_PORT" /-/ready
	wait_ready pushgateway "$PUSHGATEWAY_PORT" /-/ready
	wait_ready etcd-monitor "$EXPORTER_PORT" /metrics
	wait_ready prometheus "$PROMETHEUS_PORT" /-/ready

	echo "demo: first benchmark run (etcd-monitor benchmark $DEMO_BENCHMARK_ARGS)"
	# shellcheck disable=SC2086 # DEMO_BENCHMARK_ARGS is a list of flags
	if ! env "$MARK" "$EXPORTER" benchmark --etcd.endpoints="$ENDPOINTS" $DEMO_BENCHMARK_ARGS \
		--pushgateway.url="http://127.0.0.1:$PUSHGATEWAY_PORT" 2>&1 </dev/null | tee "$STATE/logs/benchmark.log"; then
		echo "demo: warning: the benchmark failed (see $STATE/logs/benchmark.log); the rest of the demo runs" >&2
	fi

	echo "demo: first backup (etcd-monitor snapshot save --dir=$STATE/backups)"
	if ! env "$MARK" "$EXPORTER" snapshot save --etcd.endpoints="$ENDPOINTS" --dir="$STATE/backups" \
		--cluster=demo --keep=5 --pushgateway.url="http://127.0.0.1:$PUSHGATEWAY_PORT" \
		2>&1 </dev/null | tee "$STATE/logs/snapshot.log"; then
		echo "demo: warning: the snapshot failed (see $STATE/logs/snapshot.log); the rest of the demo runs" >&2
	fi

	local c="--endpoints=$ENDPOINTS"
	cat <<EOF

================================================================================================
etcd-monitor demo is running (ready in ${SECONDS}s). State and logs: $STATE
  etcd members      http://127.0.0.1:${CLIENT_PORTS[0]}  http://127.0.0.1:${CLIENT_PORTS[1]}  http://127.0.0.1:${CLIENT_PORTS[2]}  (etcd-0..2, /metrics on the same ports)
  etcd-monitor      http://127.0.0.1:$EXPORTER_PORT/metrics
  Prometheus        http://127.0.0.1:$PROMETHEUS_PORT  (targets: /targets, alerts: /alerts)
  Alertmanager      http://127.0.0.1:$ALERTMANAGER_PORT
  Pushgateway       http://127.0.0.1:$PUSHGATEWAY_PORT  (benchmark results, job etcd_benchmark; backups, job etcd_backup)
  log receiver      http://127.0.0.1:$LOGRECEIVER_PORT  (stands in for PagerDuty, Slack and e-mail)

Break it (in another terminal) and watch the alert arrive below (Alertmanager waits 30 s
before sending a new group):
  1. stop one member   -> EtcdMemberDown after 5 min (warning, slack):
       kill \$(cat $STATE/run/etcd-2.pid)
  2. stop two members  -> EtcdQuorumLost after 1 min (critical, pagerduty):
       kill \$(cat $STATE/run/etcd-1.pid) \$(cat $STATE/run/etcd-2.pid)
  3. fill the quota    -> EtcdNoSpaceAlarm at once (critical, pagerduty):
       for i in \$(seq 40); do head -c 1000000 /dev/zero | tr '\\0' x | $ETCDCTL $c put /demo-fill/\$i >/dev/null || break; done
Bring a member back:  ${envs}$ROOT/scripts/demo.sh restart-member etcd-2
Start afresh:         stop, then make demo again (the state directory is recreated)
Stop everything:      Ctrl-C here, or ${envs}make demo-stop
================================================================================================
Alerts received by the log receiver:
EOF
	env "$MARK" tail -n 0 -F "$STATE/logs/logreceiver.log" &
	TAIL_PID=$!
	wait "$TAIL_PID"
}

case "${1:-up}" in
up) cmd_up ;;
stop) cmd_stop ;;
restart-member) cmd_restart_member "${2:-}" ;;
*) die "unknown command ${1} (up, stop, restart-member NAME)" ;;
esac
