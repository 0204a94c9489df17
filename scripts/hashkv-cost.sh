#!/usr/bin/env bash
# Prints what one HashKV costs a member with a database of SIZE_MB MiB (default 1024): a real
# single-member etcd from ./bin, filled by etcd's benchmark tool with VAL_SIZE-byte values
# (default 1000000, unique keys), then `etcdctl endpoint hashkv` timed RUNS times (default 5),
# the first on a cold page cache with COLD=1 as root (drops the whole machine's page cache), the
# others warm. Used for the
# figures in docs/consistency.md next to --consistency.interval's default.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/bin"
SIZE_MB="${SIZE_MB:-1024}"
VAL_SIZE="${VAL_SIZE:-1000000}"
RUNS="${RUNS:-5}"
work="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port=$((24000 + RANDOM % 2000))
ep="127.0.0.1:$port"
"$BIN/etcd" --name m0 --data-dir "$work/m0" --log-level error --quota-backend-bytes $((8 * 1024 * 1024 * 1024)) \
  --listen-client-urls "http://$ep" --advertise-client-urls "http://$ep" \
  --listen-peer-urls "http://127.0.0.1:$((port + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((port + 1))" \
  --initial-cluster "m0=http://127.0.0.1:$((port + 1))" >"$work/m0.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do "$BIN/etcdctl" --endpoints "$ep" endpoint health >/dev/null 2>&1 && break; sleep 0.2; done
total=$(( SIZE_MB * 1024 * 1024 / VAL_SIZE ))
fill_start=$(date +%s)
"$BIN/etcd-benchmark" --endpoints "$ep" --clients 4 --conns 2 put --key-size 16 --val-size "$VAL_SIZE" \
  --total "$total" --key-space-size "$total" --sequential-keys >/dev/null 2>&1
fill_s=$(( $(date +%s) - fill_start ))
status=$("$BIN/etcdctl" --endpoints "$ep" endpoint status -w json)
db=$(echo "$status" | sed -E 's/.*"dbSize":([0-9]+).*/\1/')
rev=$(echo "$status" | sed -E 's/.*"revision":([0-9]+).*/\1/')
file=$(du -m "$work/m0/member/snap/db" | cut -f1)
echo "filled: $total values of $VAL_SIZE bytes in ${fill_s}s; db size $((db / 1024 / 1024)) MiB (file $file MiB), revision $rev"
for i in $(seq 1 "$RUNS"); do
  note="warm"
  if [ "$i" = 1 ] && [ "${COLD:-0}" = 1 ] && [ -w /proc/sys/vm/drop_caches ]; then sync; echo 3 >/proc/sys/vm/drop_caches; note="cold"; fi
  s=$(date +%s%N)
  "$BIN/etcdctl" --endpoints "$ep" --command-timeout 10m endpoint hashkv >/dev/null &
  hk=$!
  # A write while the hash runs: HashKV holds the backend's read transaction, which the backend's
  # commit has to wait for.
  sleep 0.05
  ps=$(date +%s%N)
  "$BIN/etcdctl" --endpoints "$ep" --command-timeout 10m put during-hashkv "$i" >/dev/null 2>&1 || echo "  the put failed (etcd: request timed out)"
  pe=$(date +%s%N)
  wait "$hk"
  e=$(date +%s%N)
  echo "hashkv $i ($note): $(( (e - s) / 1000000 )) ms; a put started 50 ms into it took $(( (pe - ps) / 1000000 )) ms"
  idle_s=$(date +%s%N)
  "$BIN/etcdctl" --endpoints "$ep" put idle "$i" >/dev/null
  echo "  a put with no hash running: $(( ($(date +%s%N) - idle_s) / 1000000 )) ms"
done
