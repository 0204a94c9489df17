package collector

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/internal/toolbin"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// TestConsistencyExposesDivergedMember: one follower's data is changed on disk while it is
// stopped; once it is back, a scrape reports it as the one member whose data differs, with the
// revision compared at, and the check is served again (same timestamp) until the interval passes.
func TestConsistencyExposesDivergedMember(t *testing.T) {
	dirs := make([]string, 3)
	c := etcdtest.Start(t, 3, func(i int, cfg *embed.Config) { dirs[i] = cfg.Dir })
	cli := client(t, c.Endpoints())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 5 {
		if _, err := cli.Put(ctx, fmt.Sprintf("k%d", i), "value"); err != nil {
			t.Fatal(err)
		}
	}
	c.Settle()
	victim := -1
	for i, m := range c.Members {
		if uint64(m.Etcd().Server.Leader()) != m.ID() {
			victim = i
		}
	}
	c.Members[victim].Stop()
	etcdtest.CorruptValue(t, dirs[victim], "k3")
	c.Members[victim].Restart(t)
	c.Settle()

	taker, err := snapshot.NewTaker(etcdconn.Config{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(taker.Close)
	e, err := New(taker, []string{"consistency"}, WithConsistency(time.Hour, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	v := values(t, registryFor(e, 5*time.Second))
	for _, m := range c.Members {
		want := 1.0
		if m == c.Members[victim] {
			want = 0
		}
		key := fmt.Sprintf(`etcd_monitor_member_data_consistent{member=%q}`, m.Name)
		if got, ok := v[key]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}
	rev, err := cli.Get(ctx, "k0")
	if err != nil {
		t.Fatal(err)
	}
	if got := v["etcd_monitor_consistency_revision{}"]; got <= 0 || got > float64(rev.Header.Revision) {
		t.Errorf("compared revision %v, want in (0, %d]", got, rev.Header.Revision)
	}
	if v["etcd_monitor_consistency_check_success{}"] != 1 || v["etcd_monitor_consistency_distinct_hashes{}"] != 2 ||
		v[`etcd_monitor_scrape_collector_success{collector="consistency"}`] != 1 {
		t.Errorf("check: %v", v)
	}
	if _, ok := v["etcd_monitor_consistency_compact_revision{}"]; !ok {
		t.Error("no compact revision")
	}
	ts := v["etcd_monitor_consistency_check_timestamp_seconds{}"]
	if ts == 0 || v["etcd_monitor_consistency_last_success_timestamp_seconds{}"] != ts {
		t.Errorf("timestamps: %v", v)
	}

	firesFromScrape(t, e, c.Members[victim].Name, snapshot.IDString(c.Members[victim].ID()))

	// A write and a second scrape within the interval: the same check is served.
	if _, err := cli.Put(ctx, "k9", "later", clientv3.WithPrevKV()); err != nil {
		t.Fatal(err)
	}
	v2 := values(t, registryFor(e, 5*time.Second))
	if v2["etcd_monitor_consistency_check_timestamp_seconds{}"] != ts || v2["etcd_monitor_consistency_revision{}"] != v["etcd_monitor_consistency_revision{}"] {
		t.Errorf("a second check ran within the interval: %v then %v", v, v2)
	}
}

// TestConsistencyUnknownWhenMemberDown: a stopped member has no verdict (its series is absent, not
// 1) and is counted under member_down; the two others are still compared.
func TestConsistencyUnknownWhenMemberDown(t *testing.T) {
	c := etcdtest.Start(t, 3)
	c.Settle()
	stopped := c.Members[2]
	stopped.Stop()
	taker, err := snapshot.NewTaker(etcdconn.Config{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(taker.Close)
	e, err := New(taker, []string{"consistency"}, WithConsistency(time.Nanosecond, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	var v map[string]float64
	for range 2 {
		v = values(t, registryFor(e, 5*time.Second))
	}
	if _, ok := v[fmt.Sprintf(`etcd_monitor_member_data_consistent{member=%q}`, stopped.Name)]; ok {
		t.Errorf("stopped member has a verdict: %v", v)
	}
	for _, m := range c.Members[:2] {
		if v[fmt.Sprintf(`etcd_monitor_member_data_consistent{member=%q}`, m.Name)] != 1 {
			t.Errorf("%s not reported consistent: %v", m.Name, v)
		}
	}
	if got := v[`etcd_monitor_consistency_unknown_total{reason="member_down"}`]; got != 2 {
		t.Errorf("member_down count %v after two checks, want 2", got)
	}
	if got := v[`etcd_monitor_consistency_unknown_total{reason="no_majority"}`]; got != 0 {
		t.Errorf("no_majority count %v", got)
	}
}

// firesFromScrape turns one real scrape of e into promtool input series (with the target labels
// Prometheus would add, and the cluster collector's voters up) and checks with the committed rules
// that EtcdDataInconsistent fires for the diverged member alone.
func firesFromScrape(t *testing.T, e *Exporter, member, memberID string) {
	t.Helper()
	promtool := toolbin.Path(t, "promtool", "PROMTOOL")
	rules, err := filepath.Abs(filepath.Join("..", "alerts", "etcd-monitor.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	mfs, err := registryFor(e, 5*time.Second).Gather()
	if err != nil {
		t.Fatal(err)
	}
	var series []string
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "etcd_monitor_member_data_consistent") {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := []string{`job="etcd-monitor"`, `instance="em:9379"`, `cluster="c1"`}
			for _, lp := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			sort.Strings(labels)
			series = append(series, fmt.Sprintf("      - series: '%s{%s}'\n        values: '%gx5'\n", mf.GetName(), strings.Join(labels, ", "), value(mf, m)))
		}
	}
	if len(series) != 3 {
		t.Fatalf("%d data_consistent series in the scrape, want 3", len(series))
	}
	test := fmt.Sprintf(`rule_files:
  - %s
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
%s    alert_rule_test:
      - alertname: EtcdDataInconsistent
        eval_time: 1m
        exp_alerts:
          - exp_labels: { severity: critical, job: etcd-monitor, instance: "em:9379", cluster: c1, member: %[3]q, member_id: %[4]q }
            exp_annotations:
              summary: "An etcd member holds data that differs from the rest of its cluster."
              description: "Member %[3]s (%[4]s) of cluster c1 answered a HashKV that differs from the majority of its peers at the same revision and compact revision: its data has diverged, and clients reading from it (serializable reads, watches it serves) get other data than from the others."
              runbook_url: "https://github.com/etcd-monitor/etcd-monitor/blob/main/docs/runbooks.md#etcddatainconsistent"
`, rules, strings.Join(series, ""), member, memberID)
	dir := t.TempDir()
	f := filepath.Join(dir, "scrape.yml")
	if err := os.WriteFile(f, []byte(test), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, promtool, "test", "rules", f).CombinedOutput(); err != nil {
		t.Fatalf("promtool on the scrape: %v\n%s\n%s", err, out, test)
	}
}

func value(mf *dto.MetricFamily, m *dto.Metric) float64 {
	if mf.GetType() == dto.MetricType_COUNTER {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}
