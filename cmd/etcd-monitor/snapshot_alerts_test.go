package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.etcd.io/etcd/server/v3/embed"
	"gopkg.in/yaml.v3"

	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/internal/pushgwtest"
	"github.com/etcd-monitor/etcd-monitor/internal/toolbin"
)

// TestPushedSeriesFireTheBackupAlerts feeds what a real `snapshot save` (one success, then one
// failure) pushed to a real Pushgateway, with the labels Prometheus keeps when it scrapes the
// Pushgateway with honor_labels, to the committed backup alerts under promtool. The hand-written
// cases of mixin/tests/backup.yml assume these names, labels and values; this proves they are
// the pushed ones: EtcdBackupFailing fires for the pushed cluster and only for it, EtcdBackupMissing
// fires for a monitored cluster without backups and not for the pushed one, and a verified save
// fires neither EtcdBackupUnverified nor EtcdBackupMismatch.
func TestPushedSeriesFireTheBackupAlerts(t *testing.T) {
	promtool := toolbin.Path(t, "promtool", "PROMTOOL")
	pg := pushgwtest.Start(t)
	cl := etcdtest.Start(t, 1, func(_ int, cfg *embed.Config) { cfg.UnsafeNoFsync = true })
	eps := "--etcd.endpoints=" + cl.Endpoints()[0]
	dir := t.TempDir()
	if code := run([]string{"snapshot", "save", eps, "--dir=" + dir, "--cluster=prod", "--pushgateway.url=" + pg}); code != 0 {
		t.Fatalf("save exited %d", code)
	}
	if code := run([]string{"snapshot", "save", eps, "--dir=" + dir, "--cluster=prod", "--pushgateway.url=" + pg, "--member=nobody"}); code != 1 {
		t.Fatalf("failing save exited %d, want 1", code)
	}

	type series struct {
		Series string `yaml:"series"`
		Values string `yaml:"values"`
	}
	var input []series
	var failure float64
	names := map[string]bool{}
	for name, f := range pushgwtest.Families(t, pg) {
		if !strings.HasPrefix(name, "etcd_backup_") {
			continue
		}
		for _, m := range f.Metric {
			var labels []string
			for _, l := range m.Label {
				// Prometheus drops empty labels (the Pushgateway's instance="").
				if l.GetValue() != "" {
					labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
				}
			}
			sort.Strings(labels)
			v := m.GetGauge().GetValue()
			input = append(input, series{fmt.Sprintf("%s{%s}", name, strings.Join(labels, ", ")), strconv.FormatFloat(v, 'f', -1, 64) + "x100"})
			names[name] = true
			if name == "etcd_backup_last_failure_timestamp_seconds" {
				failure = v
			}
		}
	}
	for _, n := range []string{"etcd_backup_last_success_timestamp_seconds", "etcd_backup_last_failure_timestamp_seconds", "etcd_backup_duration_seconds", "etcd_backup_verification"} {
		if !names[n] {
			t.Fatalf("the saves pushed no %s (pushed %v)", n, names)
		}
	}
	// The exporter's series of the pushed cluster and of one that has no backups.
	for _, c := range []string{"prod", "nobackups"} {
		input = append(input, series{fmt.Sprintf(`etcd_monitor_up{cluster=%q, instance="em:9379", job="etcd-monitor"}`, c), "1x100"})
	}
	sort.Slice(input, func(i, j int) bool { return input[i].Series < input[j].Series })

	const runbooks = "https://github.com/etcd-monitor/etcd-monitor/blob/main/docs/runbooks.md#"
	// Prometheus' humanizeTimestamp: milliseconds, UTC.
	failedAt := model.TimeFromUnixNano(int64(failure * 1e9)).Time().UTC().String()
	type alert struct {
		Labels      map[string]string `yaml:"exp_labels"`
		Annotations map[string]string `yaml:"exp_annotations"`
	}
	type ruleTest struct {
		Alertname string  `yaml:"alertname"`
		EvalTime  string  `yaml:"eval_time"`
		ExpAlerts []alert `yaml:"exp_alerts"`
	}
	tests := []ruleTest{
		{"EtcdBackupFailing", "5m", []alert{}},
		{"EtcdBackupFailing", "11m", []alert{{
			Labels: map[string]string{"severity": "warning", "cluster": "prod"},
			Annotations: map[string]string{
				"summary":     "etcd backups are failing.",
				"description": "The last `etcd-monitor snapshot save` of cluster prod failed (at " + failedAt + ") and no save has succeeded since.",
				"runbook_url": runbooks + "etcdbackupfailing",
			},
		}}},
		{"EtcdBackupMissing", "61m", []alert{{
			Labels: map[string]string{"severity": "warning", "cluster": "nobackups"},
			Annotations: map[string]string{
				"summary":     "Nothing reports backups of an etcd cluster.",
				"description": "Cluster nobackups is monitored, but no backup series exist for it: neither `etcd-monitor snapshot save` pushes (etcd_backup_*) nor the exporter's backup collector (etcd_monitor_backup_*).",
				"runbook_url": runbooks + "etcdbackupmissing",
			},
		}}},
		{"EtcdBackupUnverified", "61m", []alert{}},
		{"EtcdBackupMismatch", "61m", []alert{}},
	}
	file := map[string]any{
		"rule_files":          []string{filepath.Join(repoRootForTest(t), "alerts", "etcd-monitor.rules.yml")},
		"evaluation_interval": "1m",
		"tests": []map[string]any{{
			"interval":        "1m",
			"input_series":    input,
			"alert_rule_test": tests,
		}},
	}
	b, err := yaml.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	tdir := t.TempDir()
	if err := os.WriteFile(filepath.Join(tdir, "pushed.yml"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, promtool, "test", "rules", filepath.Join(tdir, "pushed.yml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules on the pushed series: %v\n%s\ninput:\n%s", err, out, b)
	}
}

// repoRootForTest is the checkout this package is in (two levels up from cmd/etcd-monitor).
func repoRootForTest(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}
