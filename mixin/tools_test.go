package mixin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/internal/freeport"

	"gopkg.in/yaml.v3"

	"github.com/etcd-monitor/etcd-monitor/internal/toolbin"
)

func tool(t *testing.T, name, env string) string { return toolbin.Path(t, name, env) }

func run(t *testing.T, dir, bin string, args ...string) string {
	t.Helper()
	// promtool's unit tests evaluate every rule over simulated days: about a minute of CPU,
	// several on a loaded 2-core CI machine. The bound is for a hung tool, not a speed goal.
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// writeRendered writes a fresh render under a temporary directory and returns it.
func writeRendered(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, b := range render(t) {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestPromtoolCheckRules(t *testing.T) {
	promtool := tool(t, "promtool", "PROMTOOL")
	dir := writeRendered(t)
	t.Log(run(t, dir, promtool, "check", "rules", rulesFile))
	t.Log(run(t, dir, promtool, "check", "rules", exporterOnlyRulesFile))

	// The PrometheusRule manifest carries the same groups under spec.
	var pr struct {
		Kind string         `yaml:"kind"`
		Spec map[string]any `yaml:"spec"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "alerts", "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &pr); err != nil || pr.Kind != "PrometheusRule" {
		t.Fatalf("prometheusrule.yaml: kind %q, %v", pr.Kind, err)
	}
	spec, err := yaml.Marshal(pr.Spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "spec.yml"), spec, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, dir, promtool, "check", "rules", "spec.yml")
}

// unitTestFile is the part of a promtool unit test file the coverage check reads.
type unitTestFile struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		AlertRuleTests []struct {
			Alertname string           `yaml:"alertname"`
			ExpAlerts []map[string]any `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestPromtoolUnitTests runs mixin/tests/*.yml and requires, for every alert, a case where it
// fires and one where it must not.
func TestPromtoolUnitTests(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("tests", "*.yml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no promtool unit tests in mixin/tests: %v", err)
	}
	fires, quiet := map[string]int{}, map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var u unitTestFile
		if err := yaml.Unmarshal(b, &u); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, rf := range u.RuleFiles {
			if filepath.ToSlash(rf) != "../../"+rulesFile {
				t.Errorf("%s: rule_files must be ../../%s (the committed rules), not %s", f, rulesFile, rf)
			}
		}
		for _, tc := range u.Tests {
			for _, a := range tc.AlertRuleTests {
				if len(a.ExpAlerts) > 0 {
					fires[a.Alertname]++
				} else {
					quiet[a.Alertname]++
				}
			}
		}
	}
	for _, n := range expectedAlerts {
		if fires[n] == 0 || quiet[n] == 0 {
			t.Errorf("alert %s: %d firing and %d not-firing promtool cases; it needs both", n, fires[n], quiet[n])
		}
	}
	promtool := tool(t, "promtool", "PROMTOOL")
	args := []string{"test", "rules"}
	for _, f := range files {
		args = append(args, filepath.Base(f))
	}
	out := run(t, "tests", promtool, args...)
	cases := 0
	for _, n := range fires {
		cases += n
	}
	for _, n := range quiet {
		cases += n
	}
	t.Logf("%d promtool alert cases passed in %d files\n%s", cases, len(files), out)
}

// TestDashboardQueriesParse checks every dashboard and variable query with promtool's parser,
// as the expressions of a throwaway rule file.
func TestDashboardQueriesParse(t *testing.T) {
	promtool := tool(t, "promtool", "PROMTOOL")
	qs := queries(t, render(t))
	var rulesOut []map[string]string
	for i, k := range sortedKeys(qs) {
		if strings.HasPrefix(k, "rule ") {
			continue
		}
		rulesOut = append(rulesOut, map[string]string{"record": fmt.Sprintf("dashboard_query_%d", i), "expr": qs[k]})
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboards", "rules": rulesOut}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "queries.yml"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, dir, promtool, "check", "rules", "--lint=none", "queries.yml")
	t.Logf("%d dashboard queries parse", len(rulesOut))
}

func TestAlertmanagerConfig(t *testing.T) {
	amtool := tool(t, "amtool", "AMTOOL")
	dir := writeRendered(t)
	run(t, dir, amtool, "check-config", "alerts/alertmanager.yml")
	for severity, want := range map[string]string{
		"critical": "email-and-webhook,pagerduty",
		"warning":  "email-and-webhook,slack",
		"info":     "email-and-webhook",
	} {
		got := strings.TrimSpace(run(t, dir, amtool, "config", "routes", "test", "--config.file=alerts/alertmanager.yml",
			"alertname=EtcdMemberDown", "cluster=a", "severity="+severity))
		if got != want {
			t.Errorf("severity %s routes to %q, want %q", severity, got, want)
		}
	}
}

// TestQueriesEvaluate starts a real Prometheus with the rendered rules on an empty TSDB and
// evaluates every rule expression and dashboard query through its HTTP API.
func TestQueriesEvaluate(t *testing.T) {
	prometheus := tool(t, "prometheus", "PROMETHEUS")
	dir := writeRendered(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freeport.Take(t, 1)[0])
	cfg := fmt.Sprintf("global:\n  evaluation_interval: 1s\nrule_files:\n  - %s\n", filepath.Join(dir, rulesFile))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, prometheus,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("prometheus log:\n%s", b)
		}
	})
	base := "http://" + addr
	client := &http.Client{Timeout: 5 * time.Second}
	ready := false
	for i := 0; i < 200 && !ready; i++ { // up to 20 s
		if resp, err := client.Get(base + "/-/ready"); err == nil {
			ready = resp.StatusCode == http.StatusOK
			resp.Body.Close()
		}
		if !ready {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !ready {
		t.Fatal("prometheus did not become ready within 20s")
	}

	qs := queries(t, render(t))
	for _, k := range sortedKeys(qs) {
		resp, err := client.PostForm(base+"/api/v1/query", url.Values{"query": {qs[k]}})
		if err != nil {
			t.Fatal(err)
		}
		var r struct{ Status, ErrorType, Error string }
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil || r.Status != "success" {
			t.Errorf("%s: %v %s %s\n%s", k, err, r.ErrorType, r.Error, qs[k])
		}
	}

	// Every rule group is loaded and, once evaluated, healthy.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get(base + "/api/v1/rules")
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Data struct {
				Groups []struct {
					Name  string
					Rules []struct {
						Name, Health, LastError string
					}
				}
			}
		}
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		pending, n := 0, 0
		var bad []string
		for _, g := range r.Data.Groups {
			for _, rl := range g.Rules {
				n++
				switch rl.Health {
				case "ok":
				case "unknown":
					pending++
				default:
					bad = append(bad, rl.Name+": "+rl.LastError)
				}
			}
		}
		if len(bad) > 0 {
			t.Fatalf("unhealthy rules: %v", bad)
		}
		if pending == 0 && n > 0 {
			t.Logf("%d queries evaluated, %d rules healthy", len(qs), n)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d rules not evaluated within 10s", pending, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
