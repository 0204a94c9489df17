#!/usr/bin/env bash
# Builds the pinned reference binaries into <repo>/bin (see tools/README.md).
#
# Each tool lives in its own Go module under tools/ so their dependency graphs never meet.
# A binary already in bin/ whose stamp (bin/.NAME.pin) names the pinned version is reused;
# a binary the user points to with a variable (ETCD_BIN=/path/to/etcd, ...) is linked into bin/
# instead of being built. Idempotent: a second run builds nothing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/tools"
BIN="${BIN_DIR:-$ROOT/bin}"
mkdir -p "$BIN"

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
'

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

status=0
while IFS='|' read -r name var dir mod pkg checkargs; do
	[ -n "$name" ] || continue
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
		echo "user-provided" >"$stamp"
		check "$name" "$checkargs" || { status=1; continue; }
		echo "reused  $name  ($var=$src)"
		continue
	fi

	pin="$(cd "$TOOLS/$dir" && go list -m -f '{{.Path}}@{{.Version}}' "$mod")"

	# 2. Already built at the pinned version (a stamp-less binary was put there by hand: keep it).
	if [ -x "$target" ] && { [ ! -e "$stamp" ] || [ "$(cat "$stamp")" = "$pin" ]; }; then
		echo "reused  $name  ($pin)"
		continue
	fi

	# 3. Build it.
	ldflags="-s -w"
	case "$mod" in
	github.com/prometheus/*)
		ldflags="$ldflags $(promldflags "$(cd "$TOOLS/$dir" && go list -m -f '{{.Dir}}' "$mod")")"
		;;
	esac
	start=$SECONDS
	rm -f "$target.tmp"
	if ! (cd "$TOOLS/$dir" && go build -trimpath -ldflags "$ldflags" -o "$target.tmp" "$pkg"); then
		echo "tools: building $name ($pin) failed" >&2
		rm -f "$target.tmp"
		status=1
		continue
	fi
	rm -f "$target"
	mv "$target.tmp" "$target"
	echo "$pin" >"$stamp"
	check "$name" "$checkargs" || { status=1; continue; }
	echo "built   $name  ($pin) in $((SECONDS - start))s"
done <<<"$TABLE"

exit "$status"
