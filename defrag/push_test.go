package defrag

import (
	"fmt"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/etcd-monitor/etcd-monitor/internal/pushgwtest"
)

// scrapeDefrag returns the Pushgateway's etcd_defrag_* series by name, then by their labels other
// than job and instance, written name="value" and comma-joined in the Pushgateway's order.
func scrapeDefrag(t *testing.T, url string) map[string]map[string]float64 {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(pushgwtest.Metrics(t, url)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]float64{}
	for name, f := range fams {
		if !strings.HasPrefix(name, "etcd_defrag_") {
			continue
		}
		if f.GetType() != dto.MetricType_GAUGE || strings.HasSuffix(name, "_total") {
			t.Errorf("pushed %s as a %s: per-run values are gauges without _total", name, f.GetType())
		}
		out[name] = map[string]float64{}
		for _, m := range f.Metric {
			var ls []string
			job := ""
			for _, l := range m.Label {
				switch l.GetName() {
				case "job":
					job = l.GetValue()
				case "instance":
				default:
					ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
				}
			}
			if job != PushJob {
				t.Errorf("%s pushed under job %q, want %q", name, job, PushJob)
			}
			out[name][strings.Join(ls, ",")] = m.GetGauge().GetValue()
		}
	}
	return out
}

// TestPushKeepsLastSuccessAndFailure: a failed run after a successful one leaves the success's
// timestamp in place (and the other way round), so alerts can compare them.
func TestPushKeepsLastSuccessAndFailure(t *testing.T) {
	pg := pushgwtest.Start(t)
	ctx := ctxT(t, time.Minute)
	okRun := &Report{Success: true, DurationSeconds: 3, Members: []*MemberResult{
		{Name: "m0", ID: "a1", State: StateDone, Before: Sizes{DBSize: 300 * MiB}, After: &Sizes{DBSize: 100 * MiB}, DurationSeconds: 1.5},
		{Name: "m1", ID: "b2", State: StateNotNeeded, Before: Sizes{DBSize: 50 * MiB}},
	}}
	t1 := time.Unix(1_700_000_000, 0)
	if err := Push(ctx, pg, "prod", okRun, t1); err != nil {
		t.Fatal(err)
	}
	failed := &Report{Success: false, Error: "boom", Members: []*MemberResult{{Name: "m0", ID: "a1", State: StateFailed}}}
	t2 := t1.Add(time.Hour)
	if err := Push(ctx, pg, "prod", failed, t2); err != nil {
		t.Fatal(err)
	}
	got := scrapeDefrag(t, pg)
	group := `cluster="prod"`
	want := map[string]float64{
		"etcd_defrag_last_success_timestamp_seconds": float64(t1.Unix()),
		"etcd_defrag_last_failure_timestamp_seconds": float64(t2.Unix()),
		"etcd_defrag_last_run_timestamp_seconds":     float64(t2.Unix()),
		"etcd_defrag_members_defragmented":           0,
		"etcd_defrag_reclaimed_bytes":                0,
	}
	for name, v := range want {
		if g, ok := got[name][group]; !ok || g != v {
			t.Errorf("%s{%s} = %v (present %v), want %v; all: %v", name, group, g, ok, v, got[name])
		}
	}
	// The member series come from the successful run: the failed one defragmented no member and
	// pushed none, so they still say what the last defragmentation did.
	member := group + `,member="m0",member_id="a1"`
	if g := got["etcd_defrag_member_db_size_after_bytes"][member]; g != 100*MiB {
		t.Errorf("after bytes of m0 = %v; all: %v", g, got["etcd_defrag_member_db_size_after_bytes"])
	}
	if _, ok := got["etcd_defrag_member_db_size_before_bytes"][group+`,member="m1",member_id="b2"`]; ok {
		t.Error("a member that was not defragmented has a pushed size")
	}
}
