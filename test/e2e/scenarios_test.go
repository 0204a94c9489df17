//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Scenario 3 of the End-to-end issue: the leader is SIGSTOPped (hung, TCP still accepted).
// Every scrape still completes within the scrape timeout, the hung member is down, the others
// elect a new leader (raft term rises), and after SIGCONT the cluster heals.
func TestExporterHungLeader(t *testing.T) {
	const scrapeTimeout = 2 * time.Second
	s := StartStack(t, StackOptions{
		Exporter:           true,
		AlertmanagerConfig: filepath.Join(RepoRoot(t), "alerts", "alertmanager.yml"),
		Prometheus:         PrometheusOptions{ScrapeInterval: 2 * time.Second, ScrapeTimeout: scrapeTimeout},
	})
	p := s.Prometheus
	p.WaitQuery(waitFor, `etcd_monitor_member_up{job="etcd-monitor"}`, AllEqual(3, 1))
	p.WaitQuery(waitFor, `etcd_monitor_cluster_leaders{job="etcd-monitor"}`, AllEqual(1, 1))

	lead := p.WaitQuery(waitFor, `etcd_monitor_member_is_leader{job="etcd-monitor"} == 1`, func(s []Sample) bool { return len(s) == 1 })
	leaderName := lead[0].Labels["member"]
	var leader *Member
	var survivors []*Member
	for _, m := range s.Etcd.Members {
		if m.Name == leaderName {
			leader = m
		} else {
			survivors = append(survivors, m)
		}
	}
	if leader == nil {
		t.Fatalf("leader %q is not one of the harness members", leaderName)
	}
	term := p.WaitQuery(waitFor, memberQuery("etcd_monitor_member_raft_term", leaderName), func(s []Sample) bool { return len(s) == 1 })
	oldTerm := term[0].Value

	paused := time.Now()
	leader.Pause()
	defer leader.Resume()

	p.WaitQuery(waitFor, memberQuery("etcd_monitor_member_up", leaderName), AllEqual(1, 0))
	survivorTerms := fmt.Sprintf(`etcd_monitor_member_raft_term{job="etcd-monitor",cluster="e2e",member=~%q}`,
		survivors[0].Name+"|"+survivors[1].Name)
	p.WaitQuery(waitFor, survivorTerms, func(s []Sample) bool {
		for _, x := range s {
			if x.Value > oldTerm {
				return true
			}
		}
		return false
	})
	newLead := p.WaitQuery(waitFor, `etcd_monitor_member_is_leader{job="etcd-monitor"} == 1`, func(s []Sample) bool {
		return len(s) == 1 && s[0].Labels["member"] != leaderName
	})
	t.Logf("leader %s (term %v) stopped; new leader %s", leaderName, oldTerm, newLead[0].Labels["member"])
	p.WaitQuery(waitFor, `up{job="etcd-monitor"}`, AllEqual(1, 1))

	// Every scrape since the pause completed, and within the timeout.
	window := fmt.Sprintf("%ds", int(time.Since(paused).Seconds())+1)
	p.WaitQuery(waitFor, `min_over_time(up{job="etcd-monitor"}[`+window+`])`, AllEqual(1, 1))
	d := p.WaitQuery(waitFor, `max_over_time(scrape_duration_seconds{job="etcd-monitor"}[`+window+`])`, func(s []Sample) bool { return len(s) == 1 })
	if d[0].Value >= scrapeTimeout.Seconds() {
		t.Errorf("a scrape took %.3fs while the leader hung, timeout is %v", d[0].Value, scrapeTimeout)
	}
	d10 := p.WaitQuery(waitFor, `max_over_time(scrape_duration_seconds{job="etcd-monitor"}[10s])`, func(s []Sample) bool { return len(s) == 1 })
	if d10[0].Value >= scrapeTimeout.Seconds() {
		t.Errorf("a scrape took %.3fs in the last 10s, timeout is %v", d10[0].Value, scrapeTimeout)
	}

	// SIGCONT: the cluster heals.
	leader.Resume()
	p.WaitQuery(waitFor, `etcd_monitor_member_up{job="etcd-monitor"}`, AllEqual(3, 1))
	p.WaitQuery(waitFor, `etcd_monitor_cluster_leaders{job="etcd-monitor"}`, AllEqual(1, 1))
	p.WaitQuery(waitFor, `etcd_monitor_cluster_has_quorum{job="etcd-monitor"}`, AllEqual(1, 1))
}

// Scenario 5 of the End-to-end issue: a cluster with a 2 MiB quota is filled until etcd raises
// NOSPACE; etcd_monitor_member_alarm{alarm="NOSPACE"} is 1 and EtcdNoSpaceAlarm (no `for`) reaches
// the webhook through Alertmanager.
func TestExporterNoSpaceAlarm(t *testing.T) {
	root := RepoRoot(t)
	s := StartStack(t, StackOptions{
		Etcd:               EtcdOptions{Flags: []string{"--quota-backend-bytes=2097152"}},
		Exporter:           true,
		AlertmanagerConfig: filepath.Join(root, "alerts", "alertmanager.yml"),
		Prometheus: PrometheusOptions{
			ScrapeInterval: 2 * time.Second,
			RuleFiles:      []string{filepath.Join(root, "alerts", "etcd-monitor.rules.yml")},
		},
	})
	p := s.Prometheus
	p.WaitQuery(waitFor, `etcd_monitor_member_up{job="etcd-monitor"}`, AllEqual(3, 1))
	if a, err := p.Query(`etcd_monitor_member_alarm{job="etcd-monitor",alarm="NOSPACE"} == 1`); err != nil || len(a) != 0 {
		t.Fatalf("NOSPACE before filling: %v (%v)", a, err)
	}

	cli, err := clientv3.New(clientv3.Config{Endpoints: s.Etcd.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	defer cli.Close()
	value := strings.Repeat("x", 60*1024)
	full := false
	var puts int
	for puts = 0; puts < 200 && !full; puts++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := cli.Put(ctx, fmt.Sprintf("/e2e-nospace/%04d", puts), value)
		cancel()
		switch {
		case err == nil:
		case strings.Contains(err.Error(), "database space exceeded"):
			full = true
		default:
			t.Fatalf("put %d: %v", puts, err)
		}
	}
	if !full {
		t.Fatalf("%d puts of 60 KB did not exceed a 2 MiB quota", puts)
	}
	t.Logf("NOSPACE after %d puts", puts)

	p.WaitQuery(waitFor, `max(etcd_monitor_member_alarm{job="etcd-monitor",alarm="NOSPACE"})`, AllEqual(1, 1))
	_, a := s.Alertmanager.Webhook.WaitAlert(60*time.Second, "", "EtcdNoSpaceAlarm", "firing")
	if a.Labels["cluster"] != "e2e" || a.Labels["severity"] != "critical" {
		t.Errorf("EtcdNoSpaceAlarm labels = %v", a.Labels)
	}
}
