package main

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/collector"
	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// Switching every collector off leaves only etcd_monitor_up and the exporter's own metrics (on a
// telemetry path of its own, which must work too).
func TestEveryCollectorDisabled(t *testing.T) {
	c := etcdtest.Start(t, 1)
	args := []string{"--etcd.endpoints=" + strings.Join(c.Endpoints(), ","), "--web.telemetry-path=/etcd/metrics"}
	for _, i := range collector.Available() {
		args = append(args, "--no-collector."+i.Name)
	}
	p := startExporter(t, args...)
	code, body, err := p.get(t, "/etcd/metrics", 10*time.Second)
	if err != nil || code != 200 {
		t.Fatalf("/metrics: %d %v\n%s", code, err, body)
	}
	if !strings.Contains(body, "\netcd_monitor_up 1\n") {
		t.Errorf("etcd_monitor_up 1 missing:\n%s", body)
	}
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "etcd_monitor_") && !strings.HasPrefix(line, "etcd_monitor_up ") && !strings.HasPrefix(line, "etcd_monitor_build_info") {
			t.Errorf("collector series with every collector disabled: %s", line)
		}
	}
}

// A telemetry path the mux cannot take, or that would hide the API or the page, is a one-line
// error and exit 1 at start-up, never a panic.
func TestBadTelemetryPathIsAnError(t *testing.T) {
	for _, path := range []string{
		"/api/", "/api/v1/cluster/status", "/api", "/-/healthy", "/-/ready", "/",
		"/met rics", "/metrics\t", "/metrics/{x}", "/a/../metrics", "//metrics", "metrics", "",
	} {
		t.Run(path, func(t *testing.T) {
			// An endpoint nobody listens on: start-up never contacts etcd.
			code, stdout, stderr := runBinary(t, "--web.telemetry-path="+path, "--web.listen-address=127.0.0.1:0")
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if code != 1 || len(lines) != 1 || !strings.Contains(stderr, "--web.telemetry-path") {
				t.Errorf("exit %d, want 1 with one line naming the flag; stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
		})
	}
}

// The handler's builder reports a pattern the mux refuses as an error even without validation.
func TestHandlerPatternConflictIsAnError(t *testing.T) {
	taker, err := snapshot.NewTaker(etcdconn.Config{Endpoints: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer taker.Close()
	exp, err := collector.New(taker, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer exp.Close()
	for _, p := range []string{"/api/", "/-/ready", "/met rics"} {
		_, _, err := newExporterHandler(exporterHandlerConfig{
			metricsPath: p, timeout: time.Second, taker: taker, exporter: exp, logger: slog.New(slog.DiscardHandler),
		})
		if err == nil || !strings.Contains(err.Error(), "--web.telemetry-path") {
			t.Errorf("%q: err = %v, want a --web.telemetry-path error", p, err)
		}
	}
}
