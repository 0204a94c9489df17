#!/usr/bin/env bash
# Builds the pinned reference binaries into <repo>/bin (see tools/README.md).
#
#   tools/build.sh              every tool (make tools)
#   tools/build.sh NAME...      only these, e.g. `tools/build.sh etcd etcdctl` (make demo)
#   tools/build.sh --typical NAME   how long NAME took to build from empty Go caches
#
# Each tool lives in its own Go module under tools/ so their dependency graphs never meet.
# A binary already in bin/ whose stamp (bin/.NAME.pin) names the pinned version is reused;
# a binary the user points to with a variable (ETCD_BIN=/path/to/etcd, ...) is linked into bin/
# instead of being built. Idempotent: a second run builds nothing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/tools"
BIN="${BIN_DIR:-$ROOT/bin}"

export CGO_ENABLED=0
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
# Never let a caller's -mod=mod rewrite the committed go.mod/go.sum.
# -buildvcs=false: the tools modules sit inside this repo; its git state says nothing about them.
export GOFLAGS="-mod=readonly -buildvcs=false"

# name | variable | tools/ dir | module (its version is the pin) | package | version-check args
TABLE='
etcd|ETCD_BIN|etcd|go.etcd.io/etcd/server/v3|go.etcd.io/etcd/server/v3|--version
etcdctl|ETCDCTL_BIN|etcd|go.etcd.io/etcd/etcdctl/v3|go.etcd.io/etcd/etcdctl/v3|version
etcdutl|ETCDUTL_BIN|etcd|go.etcd.io/etcd/etcdutl/v3|go.etcd.io/etcd/etcdutl/v3|version
etcd-3.5|ETCD35_BIN|etcd35|go.etcd.io/etcd/server/v3|go.etcd.io/etcd/server/v3|--version
etcd-benchmark|ETCD_BENCHMARK_BIN|etcdbench|go.etcd.io/etcd/v3|go.etcd.io/etcd/v3/tools/benchmark|--help
prometheus|PROMETHEUS_BIN|prometheus|github.com/prometheus/prometheus|github.com/prometheus/prometheus/cmd/prometheus|--version
promtool|PROMTOOL_BIN|prometheus|github.com/prometheus/prometheus|github.com/prometheus/prometheus/cmd/promtool|--version
alertmanager|ALERTMANAGER_BIN|alertmanager|github.com/prometheus/alertmanager|github.com/prometheus/alertmanager/cmd/alertmanager|--version
amtool|AMTOOL_BIN|alertmanager|github.com/prometheus/alertmanager|github.com/prometheus/alertmanager/cmd/amtool|--version
pushgateway|PUSHGATEWAY_BIN|pushgateway|github.com/prometheus/pushgateway|github.com/prometheus/pushgateway|--version
staticcheck|STATICCHECK_BIN|staticcheck|honnef.co/go/tools|honnef.co/go/tools/cmd/staticcheck|-version
kustomize|KUSTOMIZE_BIN|kustomize|sigs.k8s.io/kustomize/kustomize/v5|sigs.k8s.io/kustomize/kustomize/v5|version
helm|HELM_BIN|helm|helm.sh/helm/v3|helm.sh/helm/v3/cmd/helm|version
mimir|MIMIR_BIN|mimir|github.com/grafana/mimir|github.com/grafana/mimir/cmd/mimir|-version
'

# Build tags per binary. remove_all_sd drops Prometheus' cloud and Kubernetes service discovery
# (file and HTTP SD stay: all the demo and the tests use) and most of its compile time; promtool
# gets the same tags so that it reuses the packages Prometheus just compiled.
declare -A TAGS=(
	[prometheus]=remove_all_sd
	[promtool]=remove_all_sd
)

# Seconds each build took on the 2-core development machine (shared with other builds) from
# empty Go caches (GOMODCACHE and GOCACHE), each after the ones before it, which leave modules and
# packages it shares: the demo's tools from scripts/measure-first-run.sh (etcd-monitor, etcd,
# etcdctl, pushgateway, alertmanager, prometheus, in that order; the mean of two runs), promtool right after a
# Prometheus build, the test-only rest from `make tools`. Printed before each build so that nobody
# wonders whether a silent minute is a hang; tools/README.md has the figures.
# kustomize and helm: measured once with their modules already downloaded and the other tools built.
# mimir: measured once from an empty GOCACHE with its modules already downloaded (142% CPU of the
# 2 shared cores).
declare -A TYPICAL=(
	[etcd]=36
	[etcdctl]=3
	[etcd-3.5]=55
	[etcd-benchmark]=29
	[prometheus]=120
	[promtool]=71
	[alertmanager]=42
	[amtool]=11
	[pushgateway]=12
	[kustomize]=10
	[helm]=150
	[staticcheck]=92
	[mimir]=277
)

# check NAME ARGS: the binary must start and answer its version (or help) flag.
check() {
	local out
	if ! out="$("$BIN/$1" $2 2>&1)"; then
		echo "tools: $BIN/$1 $2 failed:" >&2
		echo "$out" | head -5 >&2
		return 1
	fi
}

# ldflags for binaries stamped through github.com/prometheus/common/version (their
# Makefiles do this with promu; without it --version prints an empty version).
promldflags() {
	local dir="$1" version
	version="$(cat "$dir/VERSION" 2>/dev/null || true)"
	local v=github.com/prometheus/common/version
	echo "-X $v.Version=${version} -X $v.Revision=module-proxy -X $v.Branch=HEAD -X $v.BuildUser=etcd-monitor-tools -X $v.BuildDate=19700101-00:00:00"
}

# human SECONDS: "45s" or "9m06s".
human() {
	if (($1 < 60)); then echo "${1}s"; else printf '%dm%02ds\n' $(($1 / 60)) $(($1 % 60)); fi
}

# --typical NAME: only print how long NAME took to build from empty caches (for make demo's banner).
if [ "${1:-}" = --typical ]; then
	if [ -n "${TYPICAL[${2:-}]:-}" ]; then human "${TYPICAL[$2]}"; else echo "unmeasured"; fi
	exit 0
fi

mkdir -p "$BIN"

# Which tools to build: the arguments, each checked against the table, or all of them.
known="$(while IFS='|' read -r name _; do if [ -n "$name" ]; then echo "$name"; fi; done <<<"$TABLE")"
declare -A WANT=()
for name in "$@"; do
	if ! grep -qxF -- "$name" <<<"$known"; then
		echo "tools: unknown tool $name (known: $(echo $known))" >&2
		exit 2
	fi
	WANT[$name]=1
done

# unstamped BINARY ARGS MODULE: a Prometheus-family binary whose version line is empty.
unstamped() {
	case "$3" in
	github.com/prometheus/*)
		local out
		out="$("$1" $2 2>&1 || true)"
		[[ "$out" == *", version  ("* ]]
		;;
	*) return 1 ;;
	esac
}

status=0
while IFS='|' read -r name var dir mod pkg checkargs; do
	[ -n "$name" ] || continue
	[ $# -eq 0 ] || [ -n "${WANT[$name]:-}" ] || continue
	target="$BIN/$name"
	stamp="$BIN/.$name.pin"

	# 1. A binary the user points to.
	src="${!var:-}"
	if [ -n "$src" ]; then
		if [ ! -x "$src" ]; then
			echo "tools: $var=$src is not an executable file" >&2
			status=1
			continue
		fi
		src="$(cd "$(dirname "$src")" && pwd)/$(basename "$src")"
		if [ "$(readlink "$target" 2>/dev/null || true)" != "$src" ]; then
			rm -f "$target"
			ln -s "$src" "$target"
		fi
		rm -f "$stamp" # never write through a link into another checkout's bin/
		echo "user-provided" >"$stamp"
		check "$name" "$checkargs" || { status=1; continue; }
		echo "reused  $name  ($var=$src)"
		continue
	fi

	pin="$(cd "$TOOLS/$dir" && go list -m -f '{{.Path}}@{{.Version}}' "$mod")"

	# 2. Already built at the pinned version (a stamp-less binary was put there by hand: keep it).
	# A Prometheus-family build that prints an empty version came from an older build.sh that
	# missed the version stamp from empty caches: rebuilt, as make demo reads versions.
	if [ -x "$target" ] && { [ ! -e "$stamp" ] || [ "$(cat "$stamp")" = "$pin" ]; }; then
		if [ ! -e "$stamp" ] || ! unstamped "$target" "$checkargs" "$mod"; then
			echo "reused  $name  ($pin)"
			continue
		fi
	fi

	# 3. Build it.
	tags="${TAGS[$name]:-}"
	typical="${TYPICAL[$name]:-}"
	echo "building $name  ($pin${tags:+, tags $tags}): typically $(if [ -n "$typical" ]; then human "$typical"; else echo "unmeasured"; fi) on 2 cores from empty Go caches"
	start=$SECONDS
	ldflags="-s -w"
	case "$mod" in
	github.com/prometheus/*)
		# The module must be in the cache for its VERSION file: from empty caches `go list -m`
		# alone reports no directory and the binary would print an empty version.
		(cd "$TOOLS/$dir" && go mod download "$mod") || { echo "tools: downloading $pin failed" >&2; status=1; continue; }
		ldflags="$ldflags $(promldflags "$(cd "$TOOLS/$dir" && go list -m -f '{{.Dir}}' "$mod")")"
		;;
	esac
	rm -f "$target.tmp"
	# A fresh cache downloads hundreds of modules; their names are noise next to the line above.
	if ! (cd "$TOOLS/$dir" && go build -trimpath ${tags:+-tags "$tags"} -ldflags "$ldflags" -o "$target.tmp" "$pkg" 2> >(grep -v '^go: downloading ' >&2)); then
		echo "tools: building $name ($pin) failed" >&2
		rm -f "$target.tmp"
		status=1
		continue
	fi
	rm -f "$target"
	mv "$target.tmp" "$target"
	rm -f "$stamp"
	echo "$pin" >"$stamp"
	check "$name" "$checkargs" || { status=1; continue; }
	echo "built   $name  ($pin) in $(human $((SECONDS - start)))"
done <<<"$TABLE"

exit "$status"
