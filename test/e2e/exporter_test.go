//go:build e2e

package e2e

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/mixin"
)

// exporterStack starts 3 etcd members, etcd-monitor, and the monitoring stack loading the mixin's
// rules rendered with short `for` durations.
func exporterStack(t *testing.T) *Stack {
	t.Helper()
	env := NewEnv(t)
	files, err := mixin.Render(`{ quorumLostFor: '3s', quorumAtRiskFor: '3s', memberDownFor: '3s', noLeaderFor: '3s', unreachableFor: '3s' }`)
	if err != nil {
		t.Fatalf("rendering mixin: %v", err)
	}
	rules := env.WriteFile("etcd-monitor.rules.yml", files["alerts/etcd-monitor.rules.yml"])
	return startStackIn(t, env, StackOptions{
		Exporter:           true,
		AlertmanagerConfig: filepath.Join(RepoRoot(t), "alerts", "alertmanager.yml"),
		Prometheus:         PrometheusOptions{ScrapeInterval: 2 * time.Second, RuleFiles: []string{rules}},
	})
}

func memberQuery(metric, member string) string {
	return fmt.Sprintf(`%s{job="etcd-monitor",cluster="e2e",member=%q}`, metric, member)
}

// assertHealthyCluster is scenario 1 of the End-to-end issue, read from Prometheus: a healthy
// 3-member cluster has every member up, exactly one member leading, one leader ID reported, the
// quorum, and both probes of every member succeeding.
func assertHealthyCluster(t *testing.T, p *Prometheus) {
	t.Helper()
	p.WaitQuery(waitFor, `etcd_monitor_member_up{job="etcd-monitor"}`, AllEqual(3, 1))
	p.WaitQuery(waitFor, `etcd_monitor_member_is_leader{job="etcd-monitor"} == 1`, func(s []Sample) bool { return len(s) == 1 })
	p.WaitQuery(waitFor, `sum(etcd_monitor_member_is_leader{job="etcd-monitor"})`, AllEqual(1, 1))
	p.WaitQuery(waitFor, `etcd_monitor_cluster_leaders{job="etcd-monitor"}`, AllEqual(1, 1))
	p.WaitQuery(waitFor, `etcd_monitor_cluster_has_quorum{job="etcd-monitor"}`, AllEqual(1, 1))
	p.WaitQuery(waitFor, `etcd_monitor_member_probe_success{job="etcd-monitor"}`, AllEqual(6, 1))
}

// Scenarios 1, 2 and 4 of the End-to-end issue, read from Prometheus.
func TestExporterHealthyKilledAndQuorumLoss(t *testing.T) {
	s := exporterStack(t)
	p := s.Prometheus

	// 1. Healthy: every member up, exactly one leader, quorum, probes succeed.
	assertHealthyCluster(t, p)

	// The exporter adds nothing to the raft log: over several scrapes of an idle cluster the
	// raft index stays put.
	idx := p.WaitQuery(waitFor, `etcd_monitor_member_raft_index{job="etcd-monitor"}`, func(s []Sample) bool { return len(s) == 3 })
	Eventually(t, 10*time.Second, "5 more scrapes", func() (bool, string) {
		c, err := p.Query(`count_over_time(etcd_monitor_member_raft_index{job="etcd-monitor"}[12s])`)
		if err != nil || len(c) != 3 {
			return false, fmt.Sprint(c, err)
		}
		for _, x := range c {
			if x.Value < 5 {
				return false, fmt.Sprint(c)
			}
		}
		return true, ""
	})
	for _, x := range idx {
		q := fmt.Sprintf(`changes(etcd_monitor_member_raft_index{job="etcd-monitor",member=%q}[12s])`, x.Labels["member"])
		p.WaitQuery(waitFor, q, AllEqual(1, 0))
	}

	// 2. One member SIGKILLed: it is down, quorum holds; after a restart it is back.
	m := s.Etcd.Members[2]
	m.Kill()
	p.WaitQuery(waitFor, memberQuery("etcd_monitor_member_up", m.Name), AllEqual(1, 0))
	p.WaitQuery(waitFor, `etcd_monitor_cluster_has_quorum{job="etcd-monitor"}`, AllEqual(1, 1))
	m.Restart()
	p.WaitQuery(waitFor, memberQuery("etcd_monitor_member_up", m.Name), AllEqual(1, 1))

	// 4. Two of three stopped: no quorum, the survivor's linearizable probe fails, all three
	// members still listed, and the quorum alert reaches the webhook through Alertmanager.
	s.Etcd.Members[1].Pause()
	s.Etcd.Members[2].Pause()
	defer s.Etcd.Members[1].Resume()
	defer s.Etcd.Members[2].Resume()
	survivor := s.Etcd.Members[0].Name
	p.WaitQuery(waitFor, `etcd_monitor_cluster_has_quorum{job="etcd-monitor"}`, AllEqual(1, 0))
	p.WaitQuery(waitFor, fmt.Sprintf(`etcd_monitor_member_probe_success{job="etcd-monitor",member=%q,probe="read_linearizable"}`, survivor), AllEqual(1, 0))
	p.WaitQuery(waitFor, `etcd_monitor_cluster_members{job="etcd-monitor"}`, AllEqual(1, 3))
	p.WaitQuery(waitFor, `up{job="etcd-monitor"}`, AllEqual(1, 1))
	_, a := s.Alertmanager.Webhook.WaitAlert(60*time.Second, "", "EtcdQuorumLost", "firing")
	if a.Labels["cluster"] != "e2e" || a.Labels["severity"] != "critical" {
		t.Errorf("EtcdQuorumLost labels = %v", a.Labels)
	}
	// Every scrape stayed within Prometheus' timeout while two members hung.
	d := p.WaitQuery(waitFor, `max_over_time(scrape_duration_seconds{job="etcd-monitor"}[10s])`, func(s []Sample) bool { return len(s) == 1 })
	if d[0].Value >= 2 {
		t.Errorf("scrape took %ss, timeout is 2s", strconv.FormatFloat(d[0].Value, 'f', 3, 64))
	}
}

// Scenario 8 of the End-to-end issue: scenario 1, unchanged, against etcd 3.5 servers; and
// those servers, which do not report their quota, have no quota series.
func TestExporterAgainstEtcd35(t *testing.T) {
	s := StartStack(t, StackOptions{
		Etcd:               EtcdOptions{Binary: BinEtcd35},
		Exporter:           true,
		AlertmanagerConfig: filepath.Join(RepoRoot(t), "alerts", "alertmanager.yml"),
		Prometheus:         PrometheusOptions{ScrapeInterval: 2 * time.Second},
	})
	p := s.Prometheus
	assertHealthyCluster(t, p)
	versions := p.WaitQuery(waitFor, `etcd_monitor_member_version_info{job="etcd-monitor"}`, func(s []Sample) bool { return len(s) == 3 })
	for _, i := range versions {
		if v := i.Labels["version"]; len(v) < 4 || v[:4] != "3.5." {
			t.Errorf("member %s version %q, want 3.5.x", i.Labels["member"], v)
		}
	}
	if q, err := p.Query(`etcd_monitor_member_db_quota_bytes{job="etcd-monitor"}`); err != nil || len(q) != 0 {
		t.Errorf("db_quota_bytes from etcd 3.5 = %v (%v), want absent", q, err)
	}
}
