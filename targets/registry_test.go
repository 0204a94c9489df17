package targets

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/etcd-monitor/etcd-monitor/collector"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

func defaultExporter(_ Cluster, tk collector.Taker) (*collector.Exporter, func(), error) {
	exp, err := collector.New(tk, nil)
	return exp, nil, err
}

// writeClusters writes a config file naming each cluster with its one endpoint, in order.
func writeClusters(t *testing.T, path string, clusters ...[2]string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("clusters:\n")
	for _, c := range clusters {
		fmt.Fprintf(&b, "  - name: %s\n    endpoints: [%q]\n", c[0], c[1])
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func up(t *testing.T, r *Registry, name string) bool {
	t.Helper()
	tg, release, ok := r.Acquire(name)
	if !ok {
		t.Fatalf("cluster %q not configured (have %v)", name, r.Names())
	}
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return tg.Taker.Take(ctx, snapshot.Needs{Status: true}).Up()
}

// A reload adds, removes and rebuilds clusters: a removed cluster's connections are closed, but
// only once the request using it is done; an unchanged cluster keeps its Taker.
func TestReloadAddsRemovesAndRebuilds(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ep := c.Endpoints()[0]
	fa, fb := newForwarder(t, ep), newForwarder(t, ep)
	path := filepath.Join(t.TempDir(), "c.yml")
	writeClusters(t, path, [2]string{"a", fa.addr()}, [2]string{"b", fb.addr()})
	r, err := New(path, Options{NewExporter: defaultExporter})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := strings.Join(r.Names(), ","); got != "a,b" {
		t.Fatalf("names %s", got)
	}
	if !up(t, r, "a") || !up(t, r, "b") {
		t.Fatal("a cluster is down")
	}
	fb.waitOpen(t, "b after a snapshot", func(n int64) bool { return n > 0 })
	a1, release, _ := r.Acquire("a")
	release()

	// A request is using b when the reload removes it.
	b, releaseB, _ := r.Acquire("b")
	writeClusters(t, path, [2]string{"a", fa.addr()}, [2]string{"c", fb.addr()})
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Names(), ","); got != "a,c" {
		t.Fatalf("names after reload %s", got)
	}
	if _, _, ok := r.Acquire("b"); ok {
		t.Error("b still served after its removal")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !b.Taker.Take(ctx, snapshot.Needs{Status: true}).Up() {
		t.Error("the request in flight on b lost its connections at the reload")
	}
	releaseB()
	// c uses the same forwarder; without a snapshot of c, its Taker has opened nothing yet.
	fb.waitOpen(t, "b removed and released", func(n int64) bool { return n == 0 })
	if !up(t, r, "c") {
		t.Error("c, added by the reload, is down")
	}
	a2, release, _ := r.Acquire("a")
	release()
	if a1 != a2 {
		t.Error("a, unchanged, was rebuilt")
	}

	// a changed (its probe key): rebuilt, and the old Taker's connections closed.
	fa.waitOpen(t, "a before its change", func(n int64) bool { return n > 0 })
	if err := os.WriteFile(path, []byte(fmt.Sprintf("clusters:\n  - name: a\n    endpoints: [%q]\n    probe_key: /other\n", fa.addr())), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	a3, release, _ := r.Acquire("a")
	release()
	if a3 == a1 {
		t.Error("a, changed, kept its Taker")
	}
	fa.waitOpen(t, "a rebuilt, nothing taken since", func(n int64) bool { return n == 0 })
	fb.waitOpen(t, "c removed", func(n int64) bool { return n == 0 })
	if !up(t, r, "a") {
		t.Error("a rebuilt is down")
	}
}

// A bad file keeps the running configuration and says so in the reload metrics.
func TestBadReloadKeepsTheConfiguration(t *testing.T) {
	c := etcdtest.Start(t, 1)
	path := filepath.Join(t.TempDir(), "c.yml")
	writeClusters(t, path, [2]string{"a", c.Endpoints()[0]})
	r, err := New(path, Options{NewExporter: defaultExporter})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(r)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP etcd_monitor_config_last_reload_successful 1 when the last load of --config.file succeeded, 0 when it failed (the previous configuration is still in use).
# TYPE etcd_monitor_config_last_reload_successful gauge
etcd_monitor_config_last_reload_successful 1
`), "etcd_monitor_config_last_reload_successful"); err != nil {
		t.Error(err)
	}
	ts := testutil.ToFloat64(prometheus.CollectorFunc(func(ch chan<- prometheus.Metric) {
		ch <- prometheus.MustNewConstMetric(r.timestampDesc, prometheus.GaugeValue, float64(r.lastSuccessAt.Load())/1e9)
	}))
	if ts < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last success timestamp %v", ts)
	}

	writeClusters(t, path, [2]string{"a", c.Endpoints()[0]}, [2]string{"a", c.Endpoints()[0]})
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Fatalf("reload of a bad file: %v", err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP etcd_monitor_config_clusters Clusters in the configuration in use.
# TYPE etcd_monitor_config_clusters gauge
etcd_monitor_config_clusters 1
# HELP etcd_monitor_config_last_reload_successful 1 when the last load of --config.file succeeded, 0 when it failed (the previous configuration is still in use).
# TYPE etcd_monitor_config_last_reload_successful gauge
etcd_monitor_config_last_reload_successful 0
`), "etcd_monitor_config_last_reload_successful", "etcd_monitor_config_clusters"); err != nil {
		t.Error(err)
	}
	if r.lastSuccessAt.Load() == 0 || float64(r.lastSuccessAt.Load())/1e9 != ts {
		t.Error("a failed reload moved the last success timestamp")
	}
	if !up(t, r, "a") {
		t.Error("a down after a failed reload")
	}
}

// What NewExporter built beside a cluster's Exporter (a certificate checker, with its goroutine)
// is released with the cluster: when a reload removes or changes it, after the request using it,
// and at Close; an unchanged cluster keeps its own.
func TestReloadReleasesWhatTheExporterBuilt(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ep := c.Endpoints()[0]
	var mu sync.Mutex
	released := map[string]int{}
	newExporter := func(cl Cluster, tk collector.Taker) (*collector.Exporter, func(), error) {
		exp, err := collector.New(tk, nil)
		name := cl.Name + "@" + cl.Endpoints[0]
		return exp, func() { mu.Lock(); released[name]++; mu.Unlock() }, err
	}
	count := func(name string) int { mu.Lock(); defer mu.Unlock(); return released[name] }
	path := filepath.Join(t.TempDir(), "c.yml")
	other := newForwarder(t, ep).addr()
	writeClusters(t, path, [2]string{"a", ep}, [2]string{"b", ep}, [2]string{"c", ep})
	r, err := New(path, Options{NewExporter: newExporter})
	if err != nil {
		t.Fatal(err)
	}
	_, releaseB, _ := r.Acquire("b")
	// b removed while in use, c changed, a unchanged.
	writeClusters(t, path, [2]string{"a", ep}, [2]string{"c", other})
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if count("c@"+ep) != 1 || count("a@"+ep) != 0 || count("b@"+ep) != 0 {
		t.Errorf("after the reload: released %v, want c's old one only (b is in use)", released)
	}
	releaseB()
	if count("b@"+ep) != 1 {
		t.Errorf("b released %d times once its request ended, want 1", count("b@"+ep))
	}
	r.Close()
	if count("a@"+ep) != 1 || count("c@"+other) != 1 || count("b@"+ep) != 1 || count("c@"+ep) != 1 {
		t.Errorf("after Close: released %v, want each once", released)
	}
}
