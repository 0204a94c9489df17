//go:build e2e

package e2e

import (
	"path/filepath"
	"testing"
	"time"
)

// waitFor bounds every wait of a scenario; Prometheus scrapes every second.
const waitFor = 30 * time.Second

// TestHarness proves the harness itself: a 3-member etcd cluster, a Pushgateway, Alertmanager
// (with the shipped routing config) and Prometheus start; Prometheus scrapes every member; an
// always-firing rule travels Prometheus -> Alertmanager -> the webhook; a killed member is seen
// down and comes back after a restart on its own data.
func TestHarness(t *testing.T) {
	env := NewEnv(t)
	rules := env.WriteFile("harness.rules.yml", []byte(`groups:
  - name: harness
    rules:
      - alert: E2EHarnessAlwaysFiring
        expr: vector(1)
        labels:
          severity: critical
          cluster: e2e
        annotations:
          summary: proves that alerts reach the webhook
`))
	s := startStackIn(t, env, StackOptions{
		AlertmanagerConfig: filepath.Join(RepoRoot(t), "alerts", "alertmanager.yml"),
		Prometheus:         PrometheusOptions{RuleFiles: []string{rules}},
	})
	p := s.Prometheus

	p.WaitQuery(waitFor, `up{job="etcd",cluster="e2e"}`, AllEqual(3, 1))
	leaders := p.WaitQuery(waitFor, `etcd_server_has_leader{job="etcd"}`, AllEqual(3, 1))
	for _, m := range s.Etcd.Members {
		found := false
		for _, l := range leaders {
			found = found || l.Labels["instance"] == m.MetricsAddr()
		}
		if !found {
			t.Errorf("no etcd_server_has_leader for %s (%s) in %v", m.Name, m.MetricsAddr(), leaders)
		}
	}
	p.WaitQuery(waitFor, `sum(etcd_server_is_leader{job="etcd"})`, AllEqual(1, 1))
	p.WaitQuery(waitFor, `up{job="pushgateway",cluster="e2e"}`, AllEqual(1, 1))

	// The alert path, with the shipped routing: critical goes to "pagerduty" (and, through the
	// continue route, to the default receiver as well).
	msg, a := s.Alertmanager.Webhook.WaitAlert(waitFor, "", "E2EHarnessAlwaysFiring", "firing")
	t.Logf("webhook: receiver %q got %s %v", msg.Receiver, a.Labels["alertname"], a.Labels)

	// Kill one member: Prometheus sees it down, the others keep their leader; restart it on its
	// own data and it is back.
	m := s.Etcd.Members[2]
	m.Kill()
	p.WaitQuery(waitFor, `up{job="etcd",instance="`+m.MetricsAddr()+`"}`, AllEqual(1, 0))
	p.WaitQuery(waitFor, `etcd_server_has_leader{job="etcd"} == 1`, func(s []Sample) bool { return len(s) == 2 })
	m.Restart()
	m.WaitHealthy(waitFor)
	p.WaitQuery(waitFor, `up{job="etcd"}`, AllEqual(3, 1))

	// Pause and resume: a paused member is seen down (its scrape times out) and recovers.
	m.Pause()
	p.WaitQuery(waitFor, `up{job="etcd",instance="`+m.MetricsAddr()+`"}`, AllEqual(1, 0))
	m.Resume()
	m.WaitHealthy(waitFor)
	p.WaitQuery(waitFor, `up{job="etcd"}`, AllEqual(3, 1))
}
