#!/usr/bin/env bash
# Measures what a new user waits for (docs/demo.md, "How long"): `make demo` in a fresh clone of
# this repository's HEAD with empty Go caches (GOMODCACHE and GOCACHE point at empty temporary
# folders, so every module is downloaded and every package compiled), then a second `make demo`
# once everything is built. For each run it prints the time from `make demo` to the first URL
# (the exporter's /metrics answering) and to the full stack (the Pushgateway, Alertmanager and
# Prometheus ready and the demo saying so), plus the build lines of the first run.
#
#   scripts/measure-first-run.sh
#
# Environment:
#   DEMO_PORT_OFFSET        added to the demo's ports (default 0; the demo refuses taken ports)
#   MEASURE_USE_INSTALLED=1 let the demo use tools installed on the PATH (default: build them all,
#                           the slowest first run)
#   MEASURE_TIMEOUT         seconds one run may take (default 3600)
#   MEASURE_KEEP=1          keep the temporary folder (clone, caches, demo state, output)
#   TMPDIR                  where the temporary folder goes (about 5 GB: two Go caches)
# It needs the Go module proxy, like a new user's first run. Only committed files are measured.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OFFSET="${DEMO_PORT_OFFSET:-0}"
TIMEOUT="${MEASURE_TIMEOUT:-3600}"
[[ "$OFFSET" =~ ^[0-9]+$ ]] || { echo "measure: DEMO_PORT_OFFSET=$OFFSET is not a non-negative integer" >&2; exit 1; }
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || { echo "measure: MEASURE_TIMEOUT=$TIMEOUT is not a number of seconds" >&2; exit 1; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/etcd-monitor-first-run.XXXXXX")"
CLONE="$TMP/clone"
DEMO_PID=""

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_demo
	if [ "${MEASURE_KEEP:-0}" = 1 ]; then
		echo "measure: kept $TMP"
	else
		# The module cache is read-only by design.
		chmod -R u+w "$TMP" 2>/dev/null || true
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
# elapsed FROM TO: seconds with one decimal.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
# human SECONDS: 72.3 -> "1m12s (72.3 s)".
human() { awk -v s="$1" 'BEGIN { printf "%dm%02ds (%.1f s)", int(s / 60), int(s) % 60, s }'; }

# http_ok PORT PATH: 127.0.0.1:PORT answers PATH with 200.
http_ok() {
	(
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
		IFS= read -r -t 5 line <&3 || exit 1
		[[ "$line" == "HTTP/1."[01]" 200"* ]]
	) 2>/dev/null
}

stop_demo() {
	if [ -n "$DEMO_PID" ] && kill -0 "$DEMO_PID" 2>/dev/null; then
		DEMO_DIR="$TMP/demo" DEMO_PORT_OFFSET="$OFFSET" make -s -C "$CLONE" demo-stop >/dev/null 2>&1 || true
		for ((i = 0; i < 300; i++)); do
			kill -0 "$DEMO_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -TERM -- "-$DEMO_PID" 2>/dev/null || true
		wait "$DEMO_PID" 2>/dev/null || true
	fi
	DEMO_PID=""
}

echo "measure: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start; $(go version)"
echo "measure: cloning $(git -C "$ROOT" rev-parse --short HEAD) into $CLONE"
git clone -q "$ROOT" "$CLONE"
git -C "$CLONE" checkout -q "$(git -C "$ROOT" rev-parse HEAD)"

# A new user's machine: empty caches, none of the tools, none of this shell's tool variables.
export GOMODCACHE="$TMP/gomodcache" GOCACHE="$TMP/gocache" DEMO_DIR="$TMP/demo" DEMO_PORT_OFFSET="$OFFSET"
mkdir -p "$GOMODCACHE" "$GOCACHE"
unset ETCD_BIN ETCDCTL_BIN PROMETHEUS_BIN ALERTMANAGER_BIN PUSHGATEWAY_BIN ETCD_MONITOR_BIN BIN_DIR DEMO_HOLD_STAGE2
[ "${MEASURE_USE_INSTALLED:-0}" = 1 ] || export DEMO_USE_INSTALLED=0

# shellcheck source=../demo/demo.env
source "$CLONE/demo/demo.env"
EXPORTER_PORT=$((DEMO_EXPORTER_PORT + OFFSET))
PROMETHEUS_PORT=$((DEMO_PROMETHEUS_PORT + OFFSET))
ALERTMANAGER_PORT=$((DEMO_ALERTMANAGER_PORT + OFFSET))
PUSHGATEWAY_PORT=$((DEMO_PUSHGATEWAY_PORT + OFFSET))

# run LABEL: one `make demo`, its output shown and kept; sets FIRST and FULL (seconds).
run() {
	local label="$1" out="$TMP/$1.out" t0 t i
	FIRST="" FULL=""
	echo "measure: $label: make demo"
	t0="$(now)"
	# setsid: its own process group, so that stopping it reaches make and the script alike.
	setsid make -C "$CLONE" --no-print-directory demo > >(tee "$out") 2>&1 </dev/null &
	DEMO_PID=$!
	for ((i = 0; i < TIMEOUT * 4; i++)); do
		t="$(now)"
		if [ -z "$FIRST" ] && http_ok "$EXPORTER_PORT" /metrics; then
			FIRST="$(elapsed "$t0" "$t")"
			echo "measure: $label: first URL http://127.0.0.1:$EXPORTER_PORT/metrics answered after $(human "$FIRST")"
		fi
		if [ -n "$FIRST" ] && grep -q "demo: the full stack is up" "$out" &&
			http_ok "$PUSHGATEWAY_PORT" /-/ready && http_ok "$ALERTMANAGER_PORT" /-/ready && http_ok "$PROMETHEUS_PORT" /-/ready; then
			FULL="$(elapsed "$t0" "$t")"
			echo "measure: $label: full stack up after $(human "$FULL")"
			break
		fi
		kill -0 "$DEMO_PID" 2>/dev/null || { echo "measure: $label: make demo exited before the full stack was up; see above" >&2; exit 1; }
		sleep 0.25
	done
	[ -n "$FULL" ] || { echo "measure: $label: no full stack within ${TIMEOUT}s" >&2; exit 1; }
	stop_demo
}

run first
FIRST1="$FIRST" FULL1="$FULL"
run second
FIRST2="$FIRST" FULL2="$FULL"

echo
echo "measure: summary ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end)"
echo "  first make demo, empty Go caches:  first URL $(human "$FIRST1"), full stack $(human "$FULL1")"
echo "  second make demo, all built:       first URL $(human "$FIRST2"), full stack $(human "$FULL2")"
echo "  builds of the first run:"
grep -E '^(demo: built etcd-monitor|built |reused |demo: using the installed)' "$TMP/first.out" | sed 's/^/    /' || true
