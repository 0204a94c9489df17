//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/mixin"
)

// The Truth issue's learner case on real processes: 3 voting members and a learner added with
// `etcdctl member add --learner`. Only voters make a quorum, so:
//   - the learner SIGSTOPped: EtcdMemberDown fires for it and no quorum alert is ever pending;
//   - a voter SIGSTOPped (hung): EtcdQuorumAtRisk fires, although 3 members (the learner
//     included) still answer, more than the quorum of 2; EtcdQuorumLost does not.
//
// Throughout, the learner has a read_serializable probe series (1) and no read_linearizable one:
// a learner refuses linearizable reads by design.
func TestLearnerQuorumAlerts(t *testing.T) {
	env := NewEnv(t)
	files, err := mixin.Render(`{ quorumAtRiskFor: '3s', quorumLostFor: '3s', memberDownFor: '3s' }`)
	if err != nil {
		t.Fatalf("rendering mixin: %v", err)
	}
	rules := env.WriteFile("etcd-monitor.rules.yml", files["alerts/etcd-monitor.rules.yml"])

	c := env.StartEtcd(EtcdOptions{})
	learner := addLearner(t, env, c, "etcd3")

	x := env.StartExporter("--etcd.endpoints=" + strings.Join(c.Endpoints(), ","))
	p := env.StartPrometheus(PrometheusOptions{
		ScrapeInterval: 2 * time.Second,
		Exporters:      []string{x.Addr},
		RuleFiles:      []string{rules},
	})
	start := time.Now()

	p.WaitQuery(waitFor, `etcd_monitor_member_up{job="etcd-monitor"}`, AllEqual(4, 1))
	p.WaitQuery(waitFor, `etcd_monitor_member_info{job="etcd-monitor",is_learner="true"}`, func(s []Sample) bool {
		return len(s) == 1 && s[0].Labels["member"] == learner.Name
	})
	for q, want := range map[string]float64{
		"etcd_monitor_cluster_members":           4,
		"etcd_monitor_cluster_learners":          1,
		"etcd_monitor_cluster_members_up":        4,
		"etcd_monitor_cluster_voting_members_up": 3,
		"etcd_monitor_cluster_quorum":            2,
		"etcd_monitor_cluster_has_quorum":        1,
	} {
		p.WaitQuery(waitFor, q+`{job="etcd-monitor"}`, AllEqual(1, want))
	}
	// Both probes on each voter, only the serializable one on the learner.
	p.WaitQuery(waitFor, `etcd_monitor_member_probe_success{job="etcd-monitor"}`, AllEqual(7, 1))
	assertLearnerProbes(t, p, learner.Name)

	// The learner hung: a member is down, no quorum is at risk.
	learner.Pause()
	t.Cleanup(learner.Resume)
	waitAlert(t, p, "EtcdMemberDown", map[string]string{"member": learner.Name})
	p.WaitQuery(waitFor, `etcd_monitor_cluster_voting_members_up{job="etcd-monitor"}`, AllEqual(1, 3))
	assertNoQuorumAlert(t, p, start)
	learner.Resume()
	p.WaitQuery(waitFor, `etcd_monitor_member_up{job="etcd-monitor"}`, AllEqual(4, 1))

	// A follower voter hung (a leader would add an election; the alert is the same).
	lead := p.WaitQuery(waitFor, `etcd_monitor_member_is_leader{job="etcd-monitor"} == 1`, func(s []Sample) bool { return len(s) == 1 })
	var voter *Member
	for _, m := range c.Members {
		if m.Name != lead[0].Labels["member"] {
			voter = m
			break
		}
	}
	voter.Pause()
	t.Cleanup(voter.Resume)
	p.WaitQuery(waitFor, `etcd_monitor_cluster_members_up{job="etcd-monitor"}`, AllEqual(1, 3))
	p.WaitQuery(waitFor, `etcd_monitor_cluster_voting_members_up{job="etcd-monitor"}`, AllEqual(1, 2))
	a := waitAlert(t, p, "EtcdQuorumAtRisk", map[string]string{"cluster": ClusterLabel, "severity": "critical"})
	if want := "voting members up (2;"; !strings.Contains(a.Annotations["description"], want) {
		t.Errorf("EtcdQuorumAtRisk description %q does not contain %q", a.Annotations["description"], want)
	}
	if s, err := p.Query(`ALERTS{alertname="EtcdQuorumLost"}`); err != nil || len(s) != 0 {
		t.Errorf("EtcdQuorumLost with 2 of 3 voters up: %v (%v)", s, err)
	}
	// The runbook's query for the voters that are down names exactly the hung one.
	p.WaitQuery(waitFor, `etcd_monitor_member_up{job="etcd-monitor"} == 0 unless on (member_id) etcd_monitor_member_info{job="etcd-monitor",is_learner="true"}`,
		func(s []Sample) bool { return len(s) == 1 && s[0].Labels["member"] == voter.Name })
	assertLearnerProbes(t, p, learner.Name)
}

// addLearner adds a member with `etcdctl member add --learner` and starts it; it returns once the
// learner answers a serializable health check. etcd refuses reconfiguration ("unhealthy
// cluster") until every member has been connected for a few seconds, so the add is retried.
func addLearner(t *testing.T, env *Env, c *Cluster, name string) *Member {
	t.Helper()
	ports := FreePorts(t, 3)
	m := &Member{
		Index:      len(c.Members),
		ClientURL:  fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		PeerURL:    fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		MetricsURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2]),
		DataDir:    filepath.Join(env.Subdir(name), "data"),
	}
	etcdctl := Binary(t, BinEtcdctl)
	Eventually(t, 20*time.Second, "etcdctl member add --learner", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, etcdctl, "--endpoints="+strings.Join(c.Endpoints(), ","),
			"member", "add", name, "--learner", "--peer-urls="+m.PeerURL).CombinedOutput()
		if err == nil {
			return true, ""
		}
		if !strings.Contains(string(out), "unhealthy cluster") {
			t.Fatalf("etcdctl member add --learner: %v\n%s", err, out)
		}
		return false, strings.TrimSpace(string(out))
	})
	initial := []string{name + "=" + m.PeerURL}
	for _, v := range c.Members {
		initial = append(initial, v.Name+"="+v.PeerURL)
	}
	m.Process = env.Start(name, Binary(t, BinEtcd),
		"--name="+name,
		"--data-dir="+m.DataDir,
		"--listen-client-urls="+m.ClientURL,
		"--advertise-client-urls="+m.ClientURL,
		"--listen-peer-urls="+m.PeerURL,
		"--initial-advertise-peer-urls="+m.PeerURL,
		"--listen-metrics-urls="+m.MetricsURL,
		"--initial-cluster="+strings.Join(initial, ","),
		"--initial-cluster-state=existing",
	)
	// A serializable check asks only the learner's own state, not the leader's: what a learner that
	// is still catching up can answer.
	Eventually(t, startTimeout, name+" serializable health", func() (bool, string) {
		if exited, err := m.Exited(); exited {
			t.Fatalf("e2e: %s exited: %v (log: %s)", name, err, m.LogPath())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		code, body, err := httpGet(ctx, m.MetricsURL+"/health?serializable=true")
		if err != nil {
			return false, err.Error()
		}
		return code == http.StatusOK && strings.Contains(string(body), `"health":"true"`), fmt.Sprintf("HTTP %d: %s", code, body)
	})
	return m
}

// assertLearnerProbes: the learner's serializable probe succeeds and it has no linearizable series.
func assertLearnerProbes(t *testing.T, p *Prometheus, learner string) {
	t.Helper()
	s := p.WaitQuery(waitFor, memberQuery("etcd_monitor_member_probe_success", learner), func(s []Sample) bool { return len(s) == 1 })
	if s[0].Labels["probe"] != "read_serializable" || s[0].Value != 1 {
		t.Errorf("learner %s probes = %v, want only read_serializable 1", learner, s)
	}
	if s, err := p.Query(fmt.Sprintf(`etcd_monitor_member_probe_success{job="etcd-monitor",member=%q,probe="read_linearizable"}`, learner)); err != nil || len(s) != 0 {
		t.Errorf("learner %s read_linearizable series: %v (%v), want none", learner, s, err)
	}
}

// waitAlert waits until Prometheus reports the alert firing with every label in labels.
func waitAlert(t *testing.T, p *Prometheus, name string, labels map[string]string) Alert {
	t.Helper()
	var got Alert
	Eventually(t, waitFor, name+" firing", func() (bool, string) {
		as, err := p.Alerts()
		if err != nil {
			return false, err.Error()
		}
		var seen []string
	next:
		for _, a := range as {
			seen = append(seen, a.Labels["alertname"]+":"+a.State)
			if a.Labels["alertname"] != name || a.State != "firing" {
				continue
			}
			for k, v := range labels {
				if a.Labels[k] != v {
					continue next
				}
			}
			got = a
			return true, ""
		}
		return false, fmt.Sprint(seen)
	})
	return got
}

// assertNoQuorumAlert fails if a quorum alert was pending or firing at any evaluation since start.
func assertNoQuorumAlert(t *testing.T, p *Prometheus, start time.Time) {
	t.Helper()
	q := fmt.Sprintf(`count_over_time(ALERTS{alertname=~"EtcdQuorumAtRisk|EtcdQuorumLost"}[%ds])`, int(time.Since(start).Seconds())+1)
	if s, err := p.Query(q); err != nil || len(s) != 0 {
		t.Errorf("a quorum alert while only the learner was down: %v (%v)", s, err)
	}
}
