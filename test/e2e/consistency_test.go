//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

// The Certificates and consistency issue's divergence scenario: a follower's bbolt file is
// changed while it is stopped (a value rewritten, still a valid record); etcd's start-up
// corruption check is off by default, so it starts and serves that data. The exporter reports
// it as the one member whose HashKV differs, and EtcdDataInconsistent, naming it, reaches the
// webhook through Alertmanager.
func TestExporterDivergedMember(t *testing.T) {
	root := RepoRoot(t)
	s := StartStack(t, StackOptions{
		Exporter:           true,
		ExporterArgs:       []string{"--consistency.interval=3s"},
		AlertmanagerConfig: filepath.Join(root, "alerts", "alertmanager.yml"),
		Prometheus: PrometheusOptions{
			ScrapeInterval: 2 * time.Second,
			RuleFiles:      []string{filepath.Join(root, "alerts", "etcd-monitor.rules.yml")},
		},
	})
	p := s.Prometheus
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.Etcd.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	defer cli.Close()
	for i := range 10 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := cli.Put(ctx, fmt.Sprintf("/e2e-consistency/%d", i), "value")
		cancel()
		if err != nil {
			t.Fatalf("put: %v", err)
		}
	}
	p.WaitQuery(waitFor, `etcd_monitor_member_data_consistent{job="etcd-monitor"}`, AllEqual(3, 1))

	lead := p.WaitQuery(waitFor, `etcd_monitor_member_is_leader{job="etcd-monitor"} == 1`, func(s []Sample) bool { return len(s) == 1 })
	var victim *Member
	for _, m := range s.Etcd.Members {
		if m.Name != lead[0].Labels["member"] {
			victim = m
			break
		}
	}
	victim.Stop()
	etcdtest.CorruptValue(t, victim.DataDir, "/e2e-consistency/7")
	victim.Restart()
	victim.WaitHealthy(waitFor)

	got := p.WaitQuery(waitFor, `etcd_monitor_member_data_consistent{job="etcd-monitor"} == 0`, func(s []Sample) bool { return len(s) == 1 })
	if got[0].Labels["member"] != victim.Name {
		t.Fatalf("inconsistent member %v, want %s", got[0].Labels, victim.Name)
	}
	p.WaitQuery(waitFor, `etcd_monitor_member_data_consistent{job="etcd-monitor"} == 1`, func(s []Sample) bool { return len(s) == 2 })
	_, a := s.Alertmanager.Webhook.WaitAlertLabels(60*time.Second, "", "EtcdDataInconsistent", "firing", map[string]string{"member": victim.Name})
	if a.Labels["cluster"] != "e2e" || a.Labels["severity"] != "critical" {
		t.Errorf("EtcdDataInconsistent labels = %v", a.Labels)
	}
}
