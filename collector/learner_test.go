package collector

import (
	"strings"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

// TestLearner runs 3 voters and a started learner (MemberAddAsLearner). A learner refuses
// linearizable reads by design, so it has no read_linearizable series while its serializable read
// succeeds; voting_members_up counts the voters only, members_up everyone.
func TestLearner(t *testing.T) {
	c := etcdtest.Start(t, 3)
	learner, _ := c.Add(t, true)
	learner.Start(t)
	e, _ := newExporter(t, etcdconn.Config{Endpoints: c.Endpoints()[:3]})
	g := registryFor(e, 3*time.Second)

	v := waitFor(t, g, "the learner up", func(v map[string]float64) bool {
		return v[`etcd_monitor_member_up{member="m3"}`] == 1 && v["etcd_monitor_cluster_learners{}"] == 1
	})
	for k, want := range map[string]float64{
		"etcd_monitor_cluster_members{}":                                           4,
		"etcd_monitor_cluster_learners{}":                                          1,
		"etcd_monitor_cluster_members_up{}":                                        4,
		"etcd_monitor_cluster_voting_members_up{}":                                 3,
		"etcd_monitor_cluster_quorum{}":                                            2,
		"etcd_monitor_cluster_has_quorum{}":                                        1,
		`etcd_monitor_member_probe_success{member="m3",probe="read_serializable"}`: 1,
		`etcd_monitor_member_probe_success{member="m0",probe="read_linearizable"}`: 1,
		`etcd_monitor_member_info{is_learner="true",member="m3"}`:                  1,
	} {
		if got, ok := v[k]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, want)
		}
	}
	for k := range v {
		if strings.Contains(k, `member="m3"`) && strings.Contains(k, "read_linearizable") {
			t.Errorf("the learner has a linearizable probe series: %s = %v", k, v[k])
		}
	}
	if _, ok := v[`etcd_monitor_member_probe_duration_seconds{member="m3",probe="read_serializable"}`]; !ok {
		t.Errorf("the learner's serializable read has no duration")
	}

	// A voter down: quorum is judged on the voters alone.
	c.Members[2].Stop()
	v = waitFor(t, g, "m2 down", func(v map[string]float64) bool {
		_, ok := v[`etcd_monitor_member_up{member="m2"}`]
		return ok && v[`etcd_monitor_member_up{member="m2"}`] == 0
	})
	for k, want := range map[string]float64{
		"etcd_monitor_cluster_members_up{}":                                        3,
		"etcd_monitor_cluster_voting_members_up{}":                                 2,
		"etcd_monitor_cluster_quorum{}":                                            2,
		`etcd_monitor_member_probe_success{member="m3",probe="read_serializable"}`: 1,
	} {
		if got, ok := v[k]; !ok || got != want {
			t.Errorf("voter down: %s = %v (present %v), want %v", k, got, ok, want)
		}
	}
}
