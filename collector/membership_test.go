package collector

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// series gathers once and returns the series of the named family with every label, sorted.
func series(t *testing.T, g prometheus.Gatherer, name string) []string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var out []string
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var parts []string
			for _, lp := range m.GetLabel() {
				parts = append(parts, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			out = append(out, fmt.Sprintf("%s{%s} %v", name, strings.Join(parts, ","), m.GetGauge().GetValue()))
		}
	}
	slices.Sort(out)
	return out
}

// waitFor scrapes until cond holds (bounded: 30 s) and returns the last scrape's values.
func waitFor(t *testing.T, g prometheus.Gatherer, what string, cond func(map[string]float64) bool) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v := values(t, g)
		if cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen within 30s: %v", what, v)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestMemberInfoStableAcrossOutage: a member going down and coming back does not change its
// member_info series (it used to flip version="3.6.16" to version="" and back, ending the series
// and starting new ones); the version is a series of its own that is absent while the member is down.
func TestMemberInfoStableAcrossOutage(t *testing.T) {
	c := etcdtest.Start(t, 3)
	e, _ := newExporter(t, etcdconn.Config{Endpoints: c.Endpoints()})
	g := registryFor(e, 3*time.Second)
	m2 := c.Members[2]

	info := series(t, g, "etcd_monitor_member_info")
	if len(info) != 3 {
		t.Fatalf("member_info: %v, want 3 series", info)
	}
	up := `etcd_monitor_member_up{member="m2"}`
	version := `etcd_monitor_member_version_info{member="m2",version="3.6.16"}`
	if v := values(t, g); v[version] != 1 {
		t.Fatalf("%s = %v while up, want 1", version, v[version])
	}

	m2.Stop()
	v := waitFor(t, g, "m2 down", func(v map[string]float64) bool { _, ok := v[up]; return ok && v[up] == 0 })
	if got := series(t, g, "etcd_monitor_member_info"); !slices.Equal(got, info) {
		t.Errorf("member_info changed while m2 is down:\n%v\nwas\n%v", got, info)
	}
	for k := range v {
		if strings.HasPrefix(k, `etcd_monitor_member_version_info{member="m2"`) {
			t.Errorf("%s present while m2 is down", k)
		}
	}
	if v[`etcd_monitor_member_version_info{member="m0",version="3.6.16"}`] != 1 {
		t.Errorf("m0's version missing: %v", v)
	}

	m2.Restart(t)
	waitFor(t, g, "m2 back with its version", func(v map[string]float64) bool { return v[up] == 1 && v[version] == 1 })
	if got := series(t, g, "etcd_monitor_member_info"); !slices.Equal(got, info) {
		t.Errorf("member_info changed after m2 came back:\n%v\nwas\n%v", got, info)
	}
}

// TestAddedMemberSeriesBeforeAndAfterStart pins what README says an added, unstarted member looks
// like: etcd lists it without a name or client URL, so its series carry member="" until it starts.
func TestAddedMemberSeriesBeforeAndAfterStart(t *testing.T) {
	c := etcdtest.Start(t, 3)
	e, _ := newExporter(t, etcdconn.Config{Endpoints: c.Endpoints()})
	g := registryFor(e, 3*time.Second)
	m3, id := c.Add(t, false)
	sel := fmt.Sprintf(`member=%q,member_id=%q`, "", snapshot.IDString(id))

	v := values(t, g)
	info := series(t, g, "etcd_monitor_member_info")
	wantInfo := fmt.Sprintf(`etcd_monitor_member_info{client_urls="",is_learner="false",%s,peer_urls=%q} 1`, sel, m3.PeerURL())
	if !slices.Contains(info, wantInfo) {
		t.Errorf("unstarted member: member_info %v lacks %s", info, wantInfo)
	}
	for k, want := range map[string]float64{
		"etcd_monitor_cluster_members{}":    4,
		"etcd_monitor_cluster_members_up{}": 3,
		"etcd_monitor_cluster_quorum{}":     3,
		"etcd_monitor_cluster_has_quorum{}": 1,
	} {
		if v[k] != want {
			t.Errorf("unstarted member: %s = %v, want %v", k, v[k], want)
		}
	}
	unstarted := map[string]float64{
		"etcd_monitor_member_up":                                     0,
		"etcd_monitor_member_probe_success{probe=read_linearizable}": 0,
		"etcd_monitor_member_probe_success{probe=read_serializable}": 0,
		"etcd_monitor_member_alarm{alarm=NOSPACE}":                   0,
		"etcd_monitor_member_alarm{alarm=CORRUPT}":                   0,
	}
	for _, name := range []string{"etcd_monitor_member_up", "etcd_monitor_member_probe_success", "etcd_monitor_member_alarm", "etcd_monitor_member_version_info", "etcd_monitor_member_is_leader", "etcd_monitor_member_raft_index"} {
		for _, s := range series(t, g, name) {
			if !strings.Contains(s, sel) {
				continue
			}
			key := name
			for _, l := range []string{"probe", "alarm"} {
				if i := strings.Index(s, l+`="`); i >= 0 {
					val := s[i+len(l)+2:]
					key += "{" + l + "=" + val[:strings.IndexByte(val, '"')] + "}"
				}
			}
			want, ok := unstarted[key]
			if !ok {
				t.Errorf("unstarted member has an unexpected series %s", s)
				continue
			}
			if !strings.HasSuffix(s, fmt.Sprintf(" %v", want)) {
				t.Errorf("unstarted member: %s, want %v", s, want)
			}
			delete(unstarted, key)
		}
	}
	for k := range unstarted {
		t.Errorf("unstarted member lacks %s", k)
	}

	m3.Start(t)
	v = waitFor(t, g, "m3 started and up", func(v map[string]float64) bool { return v[`etcd_monitor_member_up{member="m3"}`] == 1 })
	if v[`etcd_monitor_member_version_info{member="m3",version="3.6.16"}`] != 1 || v[`etcd_monitor_member_info{is_learner="false",member="m3"}`] != 1 {
		t.Errorf("started member: %v", v)
	}
	for _, s := range series(t, g, "etcd_monitor_member_info") {
		if strings.Contains(s, `member=""`) {
			t.Errorf("started member still has its unnamed series: %s", s)
		}
	}
	if v["etcd_monitor_cluster_members_up{}"] != 4 {
		t.Errorf("members_up = %v, want 4", v["etcd_monitor_cluster_members_up{}"])
	}
}
