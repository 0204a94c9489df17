// Package e2e runs etcd-monitor against the real stack a user runs: etcd members, Prometheus,
// Alertmanager and a Pushgateway, each a real process built by `make tools` into ./bin, all on
// loopback. Every process is killed and every temporary directory removed when the test ends,
// pass or fail; on failure the tail of every process log is written to the test log.
//
// The tests are behind the build tag e2e so `go test ./...` stays fast:
//
//	make tools build && go test -tags e2e ./test/e2e/ -v
package e2e
