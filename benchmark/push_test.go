package benchmark

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/internal/pushgwtest"
)

func startPushgateway(t *testing.T) string { return pushgwtest.Start(t) }

// scrape returns the Pushgateway's series of job etcd_benchmark, keyed by name and then by the
// label set written as name="value" pairs sorted as the Pushgateway sorts them.
func scrape(t *testing.T, url string) map[string]map[string]float64 {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]float64{}
	for name, f := range fams {
		if !strings.HasPrefix(name, "etcd_benchmark_") {
			continue
		}
		// Each push replaces the run's values: a counter, or a _total name, would tell rate()
		// and increase() that a value going down is a counter reset.
		if f.GetType() != dto.MetricType_GAUGE || strings.HasSuffix(name, "_total") {
			t.Errorf("pushed %s as a %s: per-run values are gauges without _total", name, f.GetType())
		}
		out[name] = map[string]float64{}
		for _, m := range f.Metric {
			var ls []string
			for _, l := range m.Label {
				if l.GetName() == "instance" || l.GetName() == "job" && l.GetValue() == pushJob {
					continue
				}
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			out[name][strings.Join(ls, ",")] = metricValue(m)
		}
	}
	return out
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return -1
}

func TestPushToPushgateway(t *testing.T) {
	pg := startPushgateway(t)
	ep := startEtcd(t, nil)

	cfg := testConfig(WorkloadPut, 25)
	cfg.PushgatewayURL = pg
	cfg.RunName = "nightly"
	res, out, err := run(t, ctxT(t), ep, cfg, nil)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	got := scrape(t, pg)
	group := `run="nightly",workload="put"`
	want := map[string]float64{
		"etcd_benchmark_operations":       25,
		"etcd_benchmark_duration_seconds": res.DurationSeconds,
	}
	for name, v := range want {
		if g, ok := got[name][group]; !ok || g != v {
			t.Errorf("%s{%s} = %v (present %v), want %v; all: %v", name, group, g, ok, v, got[name])
		}
	}
	if g := got["etcd_benchmark_throughput_ops_per_second"][group]; g <= 0 {
		t.Errorf("throughput %v", g)
	}
	for _, q := range []string{"0.5", "0.9", "0.95", "0.99", "0.999", "1"} {
		if g := got["etcd_benchmark_latency_seconds"][`quantile="`+q+`",`+group]; g <= 0 {
			t.Errorf("latency quantile %s = %v; all: %v", q, g, got["etcd_benchmark_latency_seconds"])
		}
	}
	if g, ok := got["etcd_benchmark_errors"][`code="Unavailable",`+group]; !ok || g != 0 {
		t.Errorf("errors{code=Unavailable} = %v (present %v), want a pushed 0", g, ok)
	}
	lastSuccess := got["etcd_benchmark_last_success_timestamp_seconds"][group]
	if time.Since(time.Unix(int64(lastSuccess), 0)) > time.Minute {
		t.Errorf("last success timestamp %v is not now", lastSuccess)
	}
	var info string
	for ls := range got["etcd_benchmark_info"] {
		info = ls
	}
	for _, l := range []string{`clients="4"`, `conns="2"`, `val_size="32"`, `total="25"`, `prefix="/etcd-monitor-benchmark/"`, `run="nightly"`, `run_id="` + res.RunID + `"`} {
		if !strings.Contains(info, l) {
			t.Errorf("info series %s lacks %s", info, l)
		}
	}

	// A failed run pushes its counts but leaves the last success in place (add semantics).
	failed := &Result{Config: cfg, Workload: cfg.Workload, Operations: 10, Successes: 7, Failures: 3,
		ErrorsByCode: map[string]int64{"Unavailable": 3}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pushResults(ctx, cfg, failed, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got = scrape(t, pg)
	if g := got["etcd_benchmark_last_success_timestamp_seconds"][group]; g != lastSuccess {
		t.Errorf("a failed run moved the last success from %v to %v", lastSuccess, g)
	}
	if g := got["etcd_benchmark_errors"][`code="Unavailable",`+group]; g != 3 {
		t.Errorf("errors{code=Unavailable} = %v after the failed run, want 3", g)
	}
	if g := got["etcd_benchmark_operations"][group]; g != 10 {
		t.Errorf("operations = %v after the failed run, want 10", g)
	}
}

func TestPushToClosedPortFailsAfterReport(t *testing.T) {
	ep := startEtcd(t, nil)
	cfg := testConfig(WorkloadPut, 10)
	cfg.PushgatewayURL = fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t))
	res, out, err := run(t, ctxT(t), ep, cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "Pushgateway") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("want a one-line Pushgateway error, got %v", err)
	}
	if res == nil || res.Operations != 10 || !strings.Contains(out, "Operations:  10") {
		t.Errorf("the report was not printed before the push failed:\n%s", out)
	}
}
