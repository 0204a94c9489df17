//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// Grafana's built-in interval variables, as Grafana would fill them for this stack (1 s scrapes):
// any window holding two samples gives rate() a value.
var grafanaIntervals = strings.NewReplacer(
	"$__rate_interval", "15s",
	"${__rate_interval}", "15s",
	"$__interval", "15s",
	"${__interval}", "15s",
	"$__range", "1h",
	"${__range}", "1h",
)

// noDataHere lists the dashboard queries (by a substring of the query) that cannot return a
// series on this stack, with the reason. The test fails when one of them does return data, so the
// list never outgrows what is true.
var noDataHere = map[string]string{
	"etcd_monitor_certificate_": "the stack's etcd serves plain text: no certificate to report",
}

type dashboardJSON struct {
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Multi bool            `json:"multi"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []dashboardPanel `json:"panels"`
}

type dashboardPanel struct {
	Title   string `json:"title"`
	Type    string `json:"type"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"` // a collapsed row holds its panels
}

func (p dashboardPanel) walk(f func(dashboardPanel)) {
	f(p)
	for _, c := range p.Panels {
		c.walk(f)
	}
}

var labelValuesRE = regexp.MustCompile(`^label_values\((.*),\s*(\w+)\)$`)

// substituteVars replaces $name and ${name} by the chosen values (longest names first so $member
// never eats $members).
func substituteVars(expr string, vars map[string]string) string {
	names := make([]string, 0, len(vars))
	for n := range vars {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return len(names[i]) > len(names[j]) })
	expr = grafanaIntervals.Replace(expr)
	for _, n := range names {
		expr = strings.ReplaceAll(expr, "${"+n+"}", vars[n])
		expr = strings.ReplaceAll(expr, "$"+n, vars[n])
	}
	return expr
}

// Scenario 9 of the End-to-end issue: with the healthy stack running (every member's own metrics,
// etcd-monitor and the Pushgateway scraped, the shipped recording rules loaded) and one
// `etcd-monitor benchmark` run pushed, every variable and every panel query of every dashboard
// returns at least one series from Prometheus, with the variables substituted as Grafana would.
func TestDashboardsHaveData(t *testing.T) {
	root := RepoRoot(t)
	s := StartStack(t, StackOptions{
		Exporter:           true,
		AlertmanagerConfig: filepath.Join(root, "alerts", "alertmanager.yml"),
		Prometheus:         PrometheusOptions{RuleFiles: []string{filepath.Join(root, "alerts", "etcd-monitor.rules.yml")}},
	})
	p := s.Prometheus
	p.WaitQuery(waitFor, `etcd_monitor_member_up{job="etcd-monitor"}`, AllEqual(3, 1))

	// One small benchmark run, pushed to the Pushgateway by the real binary.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	bench := exec.CommandContext(ctx, Binary(t, BinExporter), "benchmark",
		"--etcd.endpoints="+strings.Join(s.Etcd.Endpoints(), ","),
		"--workload=put", "--total=200", "--clients=4", "--conns=2",
		"--pushgateway.url="+s.Pushgateway.URL, "--run.name=e2e")
	out, err := bench.CombinedOutput()
	if err != nil {
		t.Fatalf("benchmark: %v\n%s", err, out)
	}
	s.Env.WriteFile("benchmark.out", out)
	p.WaitQuery(waitFor, `etcd_benchmark_operations{job="etcd_benchmark",cluster="e2e"}`, func(s []Sample) bool { return len(s) > 0 })

	files, err := filepath.Glob(filepath.Join(root, "dashboards", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in %s/dashboards (%v)", root, err)
	}
	type query struct{ where, expr string }
	var queries []query
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboardJSON
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		name := filepath.Base(f)
		// Variables in order: each may use the ones before it, as in Grafana.
		vars := map[string]string{}
		for _, v := range d.Templating.List {
			switch v.Type {
			case "datasource":
				continue
			case "query":
			default:
				t.Fatalf("%s: variable %s of type %q: this test knows query variables only", name, v.Name, v.Type)
			}
			var q string
			if err := json.Unmarshal(v.Query, &q); err != nil {
				var obj struct{ Query string }
				if err := json.Unmarshal(v.Query, &obj); err != nil {
					t.Fatalf("%s: variable %s: %v", name, v.Name, err)
				}
				q = obj.Query
			}
			m := labelValuesRE.FindStringSubmatch(strings.TrimSpace(q))
			if m == nil {
				t.Fatalf("%s: variable %s: not label_values(query, label): %q", name, v.Name, q)
			}
			expr, label := substituteVars(m[1], vars), m[2]
			var values []string
			p.WaitQuery(waitFor, expr, func(s []Sample) bool {
				seen := map[string]bool{}
				values = values[:0]
				for _, x := range s {
					if l := x.Labels[label]; l != "" && !seen[l] {
						seen[l] = true
						values = append(values, l)
					}
				}
				return len(values) > 0
			})
			sort.Strings(values)
			switch {
			case v.Name == "cluster":
				if len(values) != 1 || values[0] != ClusterLabel {
					t.Errorf("%s: variable cluster = %v, want [%s]", name, values, ClusterLabel)
				}
				vars[v.Name] = ClusterLabel
			case v.Multi:
				// Grafana's Prometheus formatting of several values: a regex alternation.
				vars[v.Name] = "(" + strings.Join(values, "|") + ")"
			default:
				vars[v.Name] = values[0]
			}
			t.Logf("%s: $%s = %s (of %v)", name, v.Name, vars[v.Name], values)
		}
		for _, top := range d.Panels {
			top.walk(func(pn dashboardPanel) {
				for i, tg := range pn.Targets {
					if strings.TrimSpace(tg.Expr) == "" {
						continue
					}
					queries = append(queries, query{fmt.Sprintf("%s panel %q query %d", name, pn.Title, i), substituteVars(tg.Expr, vars)})
				}
			})
		}
	}
	if len(queries) < 20 {
		t.Fatalf("only %d panel queries found: is the dashboard format what this test expects?", len(queries))
	}
	for _, q := range queries {
		if strings.Contains(q.expr, "$") {
			t.Errorf("%s: variable left after substitution: %s", q.where, q.expr)
		}
	}

	// Rates need two samples in their window and recording rules an evaluation: poll every query
	// that has no series yet, all together, until each has one or the time is up.
	exempt := func(expr string) (string, bool) {
		for sub, why := range noDataHere {
			if strings.Contains(expr, sub) {
				return why, true
			}
		}
		return "", false
	}
	pending := map[int]string{}
	for i, q := range queries {
		if _, ok := exempt(q.expr); !ok {
			pending[i] = "not evaluated"
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for round := 0; len(pending) > 0 && time.Now().Before(deadline) && round < 300; round++ {
		if round > 0 {
			time.Sleep(time.Second)
		}
		for i := range pending {
			res, err := p.Query(queries[i].expr)
			switch {
			case err != nil:
				pending[i] = err.Error()
			case len(res) == 0:
				pending[i] = "no series"
			default:
				delete(pending, i)
			}
		}
	}
	idx := make([]int, 0, len(pending))
	for i := range pending {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		t.Errorf("%s: %s\n\t%s", queries[i].where, pending[i], queries[i].expr)
	}
	exempted := 0
	for _, q := range queries {
		why, ok := exempt(q.expr)
		if !ok {
			continue
		}
		exempted++
		if res, err := p.Query(q.expr); err == nil && len(res) > 0 {
			t.Errorf("%s is listed as having no data here (%s) but returns %d series: drop it from noDataHere", q.where, why, len(res))
		}
	}
	t.Logf("%d dashboard queries in %d dashboards: %d returned series, %d exempted, %d without data",
		len(queries), len(files), len(queries)-exempted-len(pending), exempted, len(pending))
}
