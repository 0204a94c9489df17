#!/usr/bin/env bash
# Prints, on the same local 3-member etcd cluster, the median time of one etcd-monitor scrape
# next to the median time of `etcdctl endpoint status --cluster`, and their ratio; then
# (scripts/scrapecompare) one scrape against its limit (the same etcd calls made directly, every
# member at once) and against one member's native /metrics, interleaved on warm connections.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/bin"
RUNS="${RUNS:-21}"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
base=$((23000 + RANDOM % 2000))
cluster=""
for i in 0 1 2; do cluster+="m$i=http://127.0.0.1:$((base + 10 + i)),"; done
cluster="${cluster%,}"
eps=""
urls=""
for i in 0 1 2; do
  "$BIN/etcd" --name "m$i" --data-dir "$work/m$i" --log-level error \
    --listen-client-urls "http://127.0.0.1:$((base + i))" --advertise-client-urls "http://127.0.0.1:$((base + i))" \
    --listen-peer-urls "http://127.0.0.1:$((base + 10 + i))" --initial-advertise-peer-urls "http://127.0.0.1:$((base + 10 + i))" \
    --initial-cluster "$cluster" --initial-cluster-token "cmp-$base" >"$work/m$i.log" 2>&1 &
  pids+=($!)
  eps+="127.0.0.1:$((base + i)),"
  urls+="http://127.0.0.1:$((base + i)),"
done
eps="${eps%,}"
urls="${urls%,}"
(cd "$ROOT" && go build -o "$work/scrapecompare" ./scripts/scrapecompare)
for _ in $(seq 1 100); do "$BIN/etcdctl" --endpoints "$eps" endpoint health >/dev/null 2>&1 && break; sleep 0.2; done
"$BIN/etcd-monitor" --web.listen-address "127.0.0.1:$((base + 20))" --etcd.endpoints "$eps" --log.level error &
pids+=($!)
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$((base + 20))/metrics" >/dev/null && break; sleep 0.1; done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_ms() { local s e; s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000 )); }
scrape=$(for _ in $(seq 1 "$RUNS"); do time_ms curl -sf "http://127.0.0.1:$((base + 20))/metrics"; done | median)
etcdctl=$(for _ in $(seq 1 "$RUNS"); do time_ms "$BIN/etcdctl" --endpoints "$eps" endpoint status --cluster; done | median)
echo "median of $RUNS runs on a 3-member loopback cluster:"
echo "  etcd-monitor scrape (curl /metrics):      ${scrape} us"
echo "  etcdctl endpoint status --cluster:        ${etcdctl} us"
awk -v a="$scrape" -v b="$etcdctl" 'BEGIN { printf "  ratio scrape/etcdctl:                     %.2f\n", a / b }'
echo
"$work/scrapecompare" -scrape "http://127.0.0.1:$((base + 20))/metrics" -endpoints "$urls" -rounds "${ROUNDS:-200}"
