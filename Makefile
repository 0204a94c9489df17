GO        ?= go
BIN       := $(CURDIR)/bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -X github.com/prometheus/common/version.Version=$(VERSION) \
             -X github.com/prometheus/common/version.Revision=$(REVISION) \
             -X github.com/prometheus/common/version.Branch=$(shell git rev-parse --abbrev-ref HEAD 2>/dev/null)
export ETCD_MONITOR_BIN := $(BIN)/etcd-monitor

.PHONY: all build test unit-test e2e-test fuzz lint tools mixin bench bench-compare scrape-compare fleet-bench demo demo-stop

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/etcd-monitor ./cmd/etcd-monitor

# Every pinned tool; `./tools/build.sh NAME...` builds only those.
tools:
	@./tools/build.sh

# The kustomize base and the Helm chart carry copies (neither tool loads files outside its own
# directory); their tests fail when a copy differs.
mixin:
	$(GO) run ./mixin/cmd/render -out .
	cp alerts/prometheusrule.yaml deploy/kubernetes/base/prometheusrule.yaml
	cp alerts/prometheusrule.yaml deploy/helm/etcd-monitor/files/prometheusrule.yaml
	cp dashboards/*.json deploy/helm/etcd-monitor/files/dashboards/

# gofmt, go vet and staticcheck (pinned in tools/staticcheck, built by `make tools`), each also over
# the e2e-tagged files; zero findings. A deliberate exception is a `//lint:ignore CHECK reason` comment.
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e/
	@test -x $(BIN)/staticcheck || { echo "lint: $(BIN)/staticcheck is missing: run make tools" >&2; exit 1; }
	$(BIN)/staticcheck ./...
	$(BIN)/staticcheck -tags e2e ./test/e2e/

# Unit tests against embedded etcd, then the end-to-end suite against real processes. The tools
# are required: tests that need promtool, Prometheus or the Pushgateway fail instead of skipping.
test: tools build lint unit-test e2e-test

unit-test:
	ETCD_MONITOR_REQUIRE_TOOLS=1 $(GO) test -count=1 -timeout 15m ./...

# Every fuzz target (func Fuzz* in a _test.go file) for FUZZTIME each, one at a time: go test
# fuzzes one target per run. `make unit-test` already runs their seed corpora (f.Add and
# testdata/fuzz/), where inputs the fuzzer found are kept as regression cases.
FUZZTIME ?= 10s
fuzz:
	@set -e; for dir in $$(git grep --untracked -l '^func Fuzz' -- '*_test.go' | xargs -n1 dirname | sort -u); do \
	  for target in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$dir/*_test.go); do \
	    echo "fuzz ./$$dir $$target for $(FUZZTIME)"; \
	    $(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) ./$$dir; \
	  done; \
	done

e2e-test:
	ETCD_MONITOR_REQUIRE_TOOLS=1 $(GO) test -count=1 -tags e2e -timeout 20m ./test/e2e/

# One full scrape of a 3-member embedded cluster (ns/op, allocs/op).
bench:
	$(GO) test -run '^$$' -bench Scrape -benchmem ./collector/

bench-compare: tools build
	./scripts/compare-benchmark.sh

scrape-compare: tools build
	./scripts/compare-scrape.sh

# One exporter over K configured clusters (docs/fleet.md#cost-per-cluster): per-probe latency,
# RSS, goroutines, fds and CPU per probe for each K.
fleet-bench: tools build
	$(GO) run ./scripts/fleetbench -exporter $(BIN)/etcd-monitor -etcd $(BIN)/etcd -interval 5s -rounds 5

# The local demo (docs/demo.md): etcd x3, etcd-monitor, Prometheus, Alertmanager, Pushgateway and
# a benchmark run on 127.0.0.1, state in .demo/ (DEMO_DIR), ports shifted by DEMO_PORT_OFFSET;
# Ctrl-C or `make demo-stop` ends it. Staged: the cluster and the exporter come up as soon as
# etcd-monitor and etcd are built, the rest joins as each is found or built (scripts/demo.sh).
# The typical time is scripts/measure-first-run.sh's, from empty Go caches on 2 cores.
demo:
	@echo "demo: building etcd-monitor (this checkout, $(VERSION)): typically 52s on 2 cores from empty Go caches"
	@start=$$(date +%s); bash -c 'set -o pipefail; $(MAKE) -s --no-print-directory build 2>&1 | { grep -v "^go: downloading " || true; }' && \
		echo "demo: built etcd-monitor in $$(( $$(date +%s) - start ))s"
	@./scripts/demo.sh up

demo-stop:
	./scripts/demo.sh stop
