package mixin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"gopkg.in/yaml.v3"
)

// repoRoot is where alerts/, dashboards/ and docs/ live.
const repoRoot = ".."

const rulesFile = "alerts/etcd-monitor.rules.yml"

// expectedAlerts is the alert list of the Mixin issue; a missing or extra alert fails the tests.
var expectedAlerts = []string{
	"EtcdMonitorExporterDown", "EtcdMonitorCollectorFailing",
	"EtcdUnreachable", "EtcdMemberDown", "EtcdQuorumAtRisk", "EtcdQuorumLost", "EtcdNoLeader",
	"EtcdSplitBrain", "EtcdMemberPartitioned", "EtcdMemberApplyLagging", "EtcdFrequentLeaderChanges",
	"EtcdNoSpaceAlarm", "EtcdCorruptAlarm", "EtcdDatabaseQuotaUsageHigh", "EtcdDatabaseGrowingFast",
	"EtcdDatabaseHighFragmentation", "EtcdProbeLatencyHigh", "EtcdMixedVersions",
	"EtcdHighNumberOfFailedProposals", "EtcdHighFsyncDurations", "EtcdHighCommitDurations",
	"EtcdPeerRoundTripHigh", "EtcdHighNumberOfFailedGRPCRequests", "EtcdGRPCRequestsSlow",
	"EtcdCertificateExpiringSoon", "EtcdCertificateExpired", "EtcdCertificateNotVerified", "EtcdCertificateCheckFailing",
	"EtcdDataInconsistent", "EtcdConsistencyCheckStale",
	"EtcdAvailabilityErrorBudgetBurn", "EtcdLatencyErrorBudgetBurn",
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

var (
	renderOnce  sync.Once
	renderFiles map[string][]byte
	renderErr   error
)

// render returns the default rendering, evaluated once per test binary.
func render(t *testing.T) map[string][]byte {
	t.Helper()
	renderOnce.Do(func() { renderFiles, renderErr = Render("") })
	if renderErr != nil {
		t.Fatal(renderErr)
	}
	return renderFiles
}

func rules(t *testing.T, files map[string][]byte) (alerts, records []rule) {
	t.Helper()
	var rf ruleFile
	if err := yaml.Unmarshal(files[rulesFile], &rf); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				alerts = append(alerts, r)
			} else {
				records = append(records, r)
			}
		}
	}
	return alerts, records
}

// TestRenderedFilesUpToDate fails when alerts/ or dashboards/ differ from a fresh render.
func TestRenderedFilesUpToDate(t *testing.T) {
	files := render(t)
	for _, name := range Names(files) {
		got, err := os.ReadFile(filepath.Join(repoRoot, name))
		if err != nil {
			t.Errorf("%s: %v (run `make mixin`)", name, err)
			continue
		}
		if !bytes.Equal(got, files[name]) {
			t.Errorf("%s differs from a fresh render of mixin/: run `make mixin` and commit the result", name)
		}
	}
	// A dashboard removed from the mixin must not linger.
	entries, err := os.ReadDir(filepath.Join(repoRoot, "dashboards"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, ok := files["dashboards/"+e.Name()]; !ok && strings.HasSuffix(e.Name(), ".json") {
			t.Errorf("dashboards/%s is not rendered by the mixin: remove it", e.Name())
		}
	}
}

func TestOverridesReachConfig(t *testing.T) {
	files, err := Render(`{ memberDownFor: '7s', clusterLabel: 'job' }`)
	if err != nil {
		t.Fatal(err)
	}
	alerts, _ := rules(t, files)
	found := false
	for _, a := range alerts {
		if a.Alert == "EtcdMemberDown" {
			found = a.For == "7s"
		}
	}
	if !found {
		t.Error("override memberDownFor did not reach EtcdMemberDown")
	}
	if !bytes.Contains(files["dashboards/etcd-cluster-overview.json"], []byte(`job=\"$cluster\"`)) {
		t.Error("clusterLabel override did not reach the dashboards")
	}
	if _, err := Render(`{ nosuch: `); err == nil {
		t.Error("a broken override was accepted")
	}
}

// runbookAnchors returns GitHub's anchors of the level-2 headings of docs/runbooks.md and the
// text of each section.
func runbookAnchors(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", "runbooks.md"))
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{}
	var cur string
	for _, line := range strings.Split(string(b), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			cur = githubAnchor(h)
			sections[cur] = ""
			continue
		}
		if cur != "" {
			sections[cur] += line + "\n"
		}
	}
	return sections
}

func githubAnchor(heading string) string {
	s := strings.ToLower(strings.TrimSpace(heading))
	s = regexp.MustCompile(`[^a-z0-9 _-]`).ReplaceAllString(s, "")
	return strings.ReplaceAll(s, " ", "-")
}

func TestAlertsAreComplete(t *testing.T) {
	files := render(t)
	alerts, records := rules(t, files)
	sections := runbookAnchors(t)
	const base = "https://github.com/etcd-monitor/etcd-monitor/blob/main/docs/runbooks.md#"

	names := map[string]bool{}
	for _, a := range alerts {
		names[a.Alert] = true
		switch a.Labels["severity"] {
		case "critical", "warning", "info":
		default:
			t.Errorf("%s: severity %q", a.Alert, a.Labels["severity"])
		}
		for _, k := range []string{"summary", "description", "runbook_url"} {
			if a.Annotations[k] == "" {
				t.Errorf("%s: no %s annotation", a.Alert, k)
			}
		}
		d := a.Annotations["description"]
		if !strings.Contains(d, "{{ $labels.cluster }}") {
			t.Errorf("%s: description does not name the cluster: %q", a.Alert, d)
		}
		// Alerts about one member name it (exporter alerts by member, etcd's own by instance).
		memberLevel := strings.Contains(a.Expr, "etcd_monitor_member_") && !strings.Contains(a.Expr, "by (cluster)") ||
			strings.Contains(a.Expr, "cluster_member:") || strings.Contains(a.Expr, "cluster_member_probe:") || strings.Contains(a.Expr, "cluster_instance:") ||
			strings.Contains(a.Expr, "etcd_server_") || strings.Contains(a.Expr, "grpc_server_")
		if memberLevel && !strings.Contains(d, "{{ $labels.member }}") && !strings.Contains(d, "{{ $labels.instance }}") {
			t.Errorf("%s: description does not name the member: %q", a.Alert, d)
		}
		anchor, ok := strings.CutPrefix(a.Annotations["runbook_url"], base)
		if !ok {
			t.Errorf("%s: runbook_url %q is not under %s", a.Alert, a.Annotations["runbook_url"], base)
			continue
		}
		sec, ok := sections[anchor]
		if !ok {
			t.Errorf("%s: docs/runbooks.md has no section #%s", a.Alert, anchor)
			continue
		}
		for _, part := range []string{"**Meaning**", "**Confirm**", "**Fix**"} {
			if !strings.Contains(sec, part) {
				t.Errorf("docs/runbooks.md#%s: no %s part", anchor, part)
			}
		}
	}
	for _, n := range expectedAlerts {
		if !names[n] {
			t.Errorf("alert %s is missing", n)
		}
		delete(names, n)
	}
	for n := range names {
		t.Errorf("alert %s is not in the expected list", n)
	}
	if len(records) == 0 {
		t.Error("no recording rules")
	}
	for _, r := range records {
		if !regexp.MustCompile(`^[a-z_]+:[a-z0-9_]+:[a-z0-9_]+$`).MatchString(r.Record) {
			t.Errorf("recording rule %s is not named level:metric:operations", r.Record)
		}
	}
	t.Logf("%d alerting rules (%d names), %d recording rules", len(alerts), len(expectedAlerts), len(records))
}

// grafanaDashboard is the part of the dashboard JSON the layout checks need.
type grafanaDashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Multi      bool            `json:"multi"`
			Datasource *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	GridPos    struct{ X, Y, W, H int } `json:"gridPos"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr       string `json:"expr"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
}

func dashboards(t *testing.T, files map[string][]byte) map[string]grafanaDashboard {
	t.Helper()
	out := map[string]grafanaDashboard{}
	for name, b := range files {
		if !strings.HasPrefix(name, "dashboards/") {
			continue
		}
		var d grafanaDashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = d
	}
	return out
}

func TestDashboards(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	files := render(t)
	uids := map[string]string{}
	panels := 0
	for name, d := range dashboards(t, files) {
		// The mixin renders the classic dashboard JSON that Grafana imports; dashboardv2 is the
		// schema of the v2 resource API, another format.
		//lint:ignore SA1019 the rendered files are classic dashboards, checked against their own schema
		var strict dashboard.Dashboard
		// UnmarshalJSONStrict returns a typed, possibly empty, cog.BuildErrors.
		if err := strict.UnmarshalJSONStrict(files[name]); err != nil && !isEmptyBuildErrors(err) {
			t.Errorf("%s: Grafana schema: %v", name, err)
		}
		if prev, dup := uids[d.UID]; dup || d.UID == "" {
			t.Errorf("%s: uid %q empty or shared with %s", name, d.UID, prev)
		}
		uids[d.UID] = name
		vars := map[string]string{}
		// A dashboard over many clusters (etcd / Fleet) selects them with a regex.
		scope := `cluster="$cluster"`
		for _, v := range d.Templating.List {
			vars[v.Name] = v.Type
			if v.Name == "cluster" && v.Multi {
				scope = `cluster=~"$cluster"`
			}
			if v.Datasource != nil && v.Datasource.UID != "${datasource}" {
				t.Errorf("%s: variable %s uses datasource %q", name, v.Name, v.Datasource.UID)
			}
		}
		if vars["datasource"] != "datasource" || vars["cluster"] != "query" {
			t.Errorf("%s: needs a datasource and a cluster variable, has %v", name, vars)
		}
		ids := map[int]bool{}
		for i, p := range d.Panels {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d repeated", name, p.ID)
			}
			ids[p.ID] = true
			g := p.GridPos
			if g.W <= 0 || g.H <= 0 || g.X+g.W > 24 {
				t.Errorf("%s: panel %q has gridPos %+v", name, p.Title, g)
			}
			for _, q := range d.Panels[:i] {
				h := q.GridPos
				if g.X < h.X+h.W && h.X < g.X+g.W && g.Y < h.Y+h.H && h.Y < g.Y+g.H {
					t.Errorf("%s: panels %q and %q overlap", name, q.Title, p.Title)
				}
			}
			if p.Type == "row" {
				continue
			}
			panels++
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("%s: panel %q does not use the datasource variable", name, p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", name, p.Title)
			}
			for _, tg := range p.Targets {
				if !strings.Contains(tg.Expr, scope) {
					t.Errorf("%s: panel %q query does not use the cluster variable: %s", name, p.Title, tg.Expr)
				}
				if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
					t.Errorf("%s: panel %q query does not use the datasource variable", name, p.Title)
				}
			}
		}
	}
	t.Logf("%d dashboards, %d panels", len(uids), panels)
}

// queries returns every PromQL expression of the rendered files, variables substituted, keyed
// by where it comes from.
func queries(t *testing.T, files map[string][]byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	alerts, records := rules(t, files)
	for _, r := range append(alerts, records...) {
		out[fmt.Sprintf("rule %s%s %s", r.Alert, r.Record, r.Labels)] = r.Expr
	}
	labelValues := regexp.MustCompile(`^label_values\((.*), *\w+\)$`)
	for name, d := range dashboards(t, files) {
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			var q struct{ Query string }
			if err := json.Unmarshal(v.Query, &q); err != nil {
				t.Fatalf("%s: variable %s: %v", name, v.Name, err)
			}
			m := labelValues.FindStringSubmatch(q.Query)
			if m == nil {
				t.Fatalf("%s: variable %s: unexpected query %q", name, v.Name, q.Query)
			}
			out[fmt.Sprintf("%s variable %s", name, v.Name)] = substitute(m[1])
		}
		for _, p := range d.Panels {
			for i, tg := range p.Targets {
				out[fmt.Sprintf("%s panel %q query %d", name, p.Title, i)] = substitute(tg.Expr)
			}
		}
	}
	return out
}

// substitute replaces Grafana's variables the way Grafana would before sending a query.
func substitute(expr string) string {
	r := strings.NewReplacer("$__rate_interval", "1m", "$__interval", "30s", "$__range", "1h")
	expr = r.Replace(expr)
	return regexp.MustCompile(`\$\{?(\w+)\}?`).ReplaceAllString(expr, "test")
}

func isEmptyBuildErrors(err error) bool {
	be, ok := err.(cog.BuildErrors)
	return ok && len(be) == 0
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

const exporterOnlyRulesFile = "alerts/etcd-monitor-exporter-only.rules.yml"

// etcdOwnAlerts are the alerts that only etcd's own /metrics can raise.
var etcdOwnAlerts = map[string]bool{
	"EtcdHighNumberOfFailedProposals": true, "EtcdHighFsyncDurations": true, "EtcdHighCommitDurations": true,
	"EtcdPeerRoundTripHigh": true, "EtcdHighNumberOfFailedGRPCRequests": true, "EtcdGRPCRequestsSlow": true,
}

// etcdFamily matches a query on etcd's own metrics, or on etcd-only dashboard variables.
var etcdFamily = regexp.MustCompile(`\b(etcd_(server|disk|network|mvcc|debugging|snap|cluster)_|grpc_server_)|\$instance\b|source: etcd`)

// TestExporterOnlyProfile checks the exporter-only rendering: every alert that etcd-monitor's own
// series can raise, and nothing (alert, recording rule, dashboard query or variable) that reads
// etcd's /metrics.
func TestExporterOnlyProfile(t *testing.T) {
	files := render(t)
	var rf ruleFile
	if err := yaml.Unmarshal(files[exporterOnlyRulesFile], &rf); err != nil {
		t.Fatalf("%s: %v", exporterOnlyRulesFile, err)
	}
	names := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			names[r.Alert] = true
			if etcdFamily.MatchString(r.Expr) || r.Labels["source"] == "etcd" {
				t.Errorf("%s: rule %s%s needs etcd's own metrics: %s", exporterOnlyRulesFile, r.Alert, r.Record, r.Expr)
			}
		}
	}
	for _, n := range expectedAlerts {
		if names[n] == etcdOwnAlerts[n] {
			t.Errorf("%s: alert %s present %v, want %v", exporterOnlyRulesFile, n, names[n], !etcdOwnAlerts[n])
		}
	}
	dashboards := 0
	for name, b := range files {
		if !strings.HasPrefix(name, "dashboards/exporter-only/") {
			continue
		}
		dashboards++
		if m := etcdFamily.Find(b); m != nil {
			t.Errorf("%s reads etcd's own metrics (%s)", name, m)
		}
		if _, ok := files["dashboards/"+strings.TrimPrefix(name, "dashboards/exporter-only/")]; !ok {
			t.Errorf("%s has no full counterpart", name)
		}
	}
	// Internals is all etcd metrics; the others keep what etcd-monitor shows.
	if dashboards != 5 || files["dashboards/exporter-only/etcd-internals.json"] != nil {
		t.Errorf("%d exporter-only dashboards, want overview, member, benchmarks, fleet and SLO", dashboards)
	}
}
