//go:build e2e

package e2e

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/mixin"
)

// The availability SLO end to end: a real outage (two of three members stopped) burns the budget
// and the fast-burn page reaches Alertmanager's webhook; once the members are back the page
// resolves in Prometheus. The windows are scaled down through _config (1m and 10s instead of 1h
// and 5m), as the other e2e alerts shorten their `for`.
func TestSLOFastBurnFromRealOutage(t *testing.T) {
	env := NewEnv(t)
	files, err := mixin.Render(`{
		sloSampleWindow: '4s', sloCriticalFor: '2s', sloWarningFor: '2s',
		sloBurnRates: [
			{ severity: 'critical', long: '1m', short: '10s', rate: 14.4 },
			{ severity: 'warning', long: '3m', short: '30s', rate: 3 },
		],
	}`)
	if err != nil {
		t.Fatalf("rendering mixin: %v", err)
	}
	rules := env.WriteFile("etcd-monitor.rules.yml", files["alerts/etcd-monitor.rules.yml"])
	s := startStackIn(t, env, StackOptions{
		Exporter:           true,
		AlertmanagerConfig: filepath.Join(RepoRoot(t), "alerts", "alertmanager.yml"),
		Prometheus:         PrometheusOptions{ScrapeInterval: 2 * time.Second, RuleFiles: []string{rules}},
	})
	p := s.Prometheus
	assertHealthyCluster(t, p)
	// Healthy: every evaluation good, nothing burning.
	p.WaitQuery(waitFor, `cluster:etcd_monitor_slo_availability_good:ratio{cluster="e2e"}`, AllEqual(1, 1))
	p.WaitQuery(waitFor, `cluster:etcd_monitor_slo_availability_errors:ratio_10s{cluster="e2e"}`, AllEqual(1, 0))
	if a := sloAlerts(t, p); len(a) != 0 {
		t.Fatalf("burn alerts on a healthy cluster: %v", a)
	}

	s.Etcd.Members[1].Pause()
	s.Etcd.Members[2].Pause()
	p.WaitQuery(waitFor, `cluster:etcd_monitor_slo_availability_good:ratio{cluster="e2e"}`, AllEqual(1, 0))
	_, a := s.Alertmanager.Webhook.WaitAlertLabels(60*time.Second, "", "EtcdAvailabilityErrorBudgetBurn", "firing", map[string]string{"severity": "critical"})
	if a.Labels["cluster"] != "e2e" {
		t.Errorf("EtcdAvailabilityErrorBudgetBurn labels = %v", a.Labels)
	}

	s.Etcd.Members[1].Resume()
	s.Etcd.Members[2].Resume()
	p.WaitQuery(waitFor, `cluster:etcd_monitor_slo_availability_good:ratio{cluster="e2e"}`, AllEqual(1, 1))
	Eventually(t, 60*time.Second, "the critical burn alert resolves", func() (bool, string) {
		for _, a := range sloAlerts(t, p) {
			if a.Labels["severity"] == "critical" {
				return false, a.State
			}
		}
		return true, ""
	})
}

func sloAlerts(t *testing.T, p *Prometheus) []Alert {
	t.Helper()
	all, err := p.Alerts()
	if err != nil {
		t.Fatal(err)
	}
	var out []Alert
	for _, a := range all {
		if a.Labels["alertname"] == "EtcdAvailabilityErrorBudgetBurn" {
			out = append(out, a)
		}
	}
	return out
}
