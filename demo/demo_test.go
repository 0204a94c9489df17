package demo

import (
	"bufio"
	"context"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"

	"github.com/etcd-monitor/etcd-monitor/internal/cliflags"
)

// repoRoot is the module root: this package lives in <root>/demo.
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}

func loadCompose(t *testing.T, root string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root), cli.WithResolvedPaths(true))
	if err != nil {
		t.Fatalf("compose options: %v", err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("loading docker-compose.yml: %v", err)
	}
	return p
}

// demoEnv reads demo/demo.env, the settings scripts/demo.sh sources.
func demoEnv(t *testing.T, root string) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "demo", "demo.env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("demo.env: not KEY=value: %q", line)
		}
		env[k] = strings.Trim(v, `"`)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return env
}

func envPort(t *testing.T, env map[string]string, key string, i int) string {
	t.Helper()
	f := strings.Fields(env[key])
	if i >= len(f) {
		t.Fatalf("demo.env: %s=%q has no port %d", key, env[key], i)
	}
	if _, err := strconv.Atoi(f[i]); err != nil {
		t.Fatalf("demo.env: %s: %v", key, err)
	}
	return f[i]
}

// flagValue returns the value of --name=value in args.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// hostPath maps a path inside a service's container to the repository file a bind mount puts
// there; "" when no bind mount covers it.
func hostPath(svc types.ServiceConfig, p string) string {
	best, bestLen := "", -1
	for _, v := range svc.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		if p == v.Target || strings.HasPrefix(p, v.Target+"/") {
			if len(v.Target) > bestLen {
				best, bestLen = filepath.Join(v.Source, strings.TrimPrefix(p, v.Target)), len(v.Target)
			}
		}
	}
	return best
}

func mustExist(t *testing.T, p, what string) {
	t.Helper()
	if _, err := os.Stat(p); err != nil {
		t.Errorf("%s: %v", what, err)
	}
}

func readYAML(t *testing.T, p string, into any) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
}

// containerPort is the port a service listens on inside its container, read from its command
// the way the service itself reads it.
func containerPort(t *testing.T, name string, svc types.ServiceConfig) string {
	t.Helper()
	flag := "web.listen-address"
	if strings.HasPrefix(name, "etcd-") && name != "etcd-monitor" {
		flag = "listen-client-urls"
	}
	if name == "grafana" {
		return "3000" // Grafana's default; the compose file does not change it
	}
	v, ok := flagValue(svc.Command, flag)
	if !ok {
		t.Fatalf("service %s: no --%s in its command %q", name, flag, svc.Command)
	}
	if u, err := url.Parse(v); err == nil && u.Port() != "" && u.Scheme != "" {
		return u.Port()
	}
	_, port, ok := strings.Cut(v, ":")
	if !ok {
		t.Fatalf("service %s: --%s=%s has no port", name, flag, v)
	}
	return port
}

var wantServices = []string{"alertmanager", "benchmark", "etcd-0", "etcd-1", "etcd-2", "etcd-monitor",
	"grafana", "logreceiver", "prometheus", "pushgateway"}

func TestComposeServicesAndPorts(t *testing.T) {
	root := repoRoot(t)
	p := loadCompose(t, root)
	env := demoEnv(t, root)

	if got := p.ServiceNames(); !slices.Equal(sorted(got), wantServices) {
		t.Fatalf("services: got %v, want %v", sorted(got), wantServices)
	}

	// Host ports are the local demo's, published on loopback only; the container port is the one
	// the service listens on.
	wantPublished := map[string]string{
		"etcd-0":       envPort(t, env, "DEMO_ETCD_CLIENT_PORTS", 0),
		"etcd-1":       envPort(t, env, "DEMO_ETCD_CLIENT_PORTS", 1),
		"etcd-2":       envPort(t, env, "DEMO_ETCD_CLIENT_PORTS", 2),
		"etcd-monitor": envPort(t, env, "DEMO_EXPORTER_PORT", 0),
		"prometheus":   envPort(t, env, "DEMO_PROMETHEUS_PORT", 0),
		"alertmanager": envPort(t, env, "DEMO_ALERTMANAGER_PORT", 0),
		"pushgateway":  envPort(t, env, "DEMO_PUSHGATEWAY_PORT", 0),
		"logreceiver":  envPort(t, env, "DEMO_LOGRECEIVER_PORT", 0),
		"grafana":      "3000",
	}
	for name, svc := range p.Services {
		want, published := wantPublished[name]
		if !published {
			if len(svc.Ports) != 0 {
				t.Errorf("service %s publishes %v; it should publish nothing", name, svc.Ports)
			}
			continue
		}
		if len(svc.Ports) != 1 {
			t.Errorf("service %s: %d published ports, want 1", name, len(svc.Ports))
			continue
		}
		port := svc.Ports[0]
		if port.HostIP != "127.0.0.1" {
			t.Errorf("service %s: published on %q, want 127.0.0.1 only", name, port.HostIP)
		}
		if port.Published != want {
			t.Errorf("service %s: host port %s, want %s (demo/demo.env)", name, port.Published, want)
		}
		if got := strconv.Itoa(int(port.Target)); got != containerPort(t, name, svc) {
			t.Errorf("service %s: publishes container port %s but listens on %s", name, got, containerPort(t, name, svc))
		}
	}
}

// TestComposeImagesPinned: every image carries a version, the same one tools/ builds for `make
// demo`, and the services built here name a Dockerfile stage that exists.
func TestComposeImagesPinned(t *testing.T) {
	root := repoRoot(t)
	p := loadCompose(t, root)

	toolVersion := func(dir, module string) string {
		b, err := os.ReadFile(filepath.Join(root, "tools", dir, "go.mod"))
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?` + regexp.QuoteMeta(module) + `\s+(v\S+)\s*$`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("tools/%s/go.mod does not require %s", dir, module)
		}
		return string(m[1])
	}
	// Prometheus' Go module v0.MMM.P is release v3.(MMM-300).P.
	promModule := toolVersion("prometheus", "github.com/prometheus/prometheus")
	promRelease, err := prometheusRelease(promModule)
	if err != nil {
		t.Fatal(err)
	}
	wantImages := map[string]string{
		"etcd-0":       "gcr.io/etcd-development/etcd:" + toolVersion("etcd", "go.etcd.io/etcd/server/v3"),
		"prometheus":   "prom/prometheus:" + promRelease,
		"alertmanager": "prom/alertmanager:" + toolVersion("alertmanager", "github.com/prometheus/alertmanager"),
		"pushgateway":  "prom/pushgateway:" + toolVersion("pushgateway", "github.com/prometheus/pushgateway"),
	}
	wantImages["etcd-1"], wantImages["etcd-2"] = wantImages["etcd-0"], wantImages["etcd-0"]
	for name, want := range wantImages {
		if got := p.Services[name].Image; got != want {
			t.Errorf("service %s: image %q, want %q (the version tools/ builds for make demo)", name, got, want)
		}
	}

	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for name, svc := range p.Services {
		img := svc.Image
		if i := strings.LastIndex(img, ":"); i < 0 || strings.Contains(img[i:], "/") || img[i+1:] == "latest" {
			t.Errorf("service %s: image %q is not pinned to a version", name, img)
		}
		if svc.Build == nil {
			continue
		}
		if svc.Build.Context != root {
			t.Errorf("service %s: build context %s, want the repository root", name, svc.Build.Context)
		}
		mustExist(t, filepath.Join(svc.Build.Context, svc.Build.Dockerfile), "service "+name+" Dockerfile")
		if tgt := svc.Build.Target; tgt != "" &&
			!regexp.MustCompile(`(?mi)^FROM\s+\S+\s+AS\s+`+regexp.QuoteMeta(tgt)+`\s*$`).Match(dockerfile) {
			t.Errorf("service %s: Dockerfile has no stage %q", name, tgt)
		}
	}
	// The benchmark runs the image the etcd-monitor service builds.
	if p.Services["benchmark"].Image != p.Services["etcd-monitor"].Image {
		t.Errorf("benchmark image %q, want etcd-monitor's %q", p.Services["benchmark"].Image, p.Services["etcd-monitor"].Image)
	}
}

// prometheusRelease maps Prometheus' Go module version v0.3MM.P to its release v3.MM.P.
func prometheusRelease(module string) (string, error) {
	m := regexp.MustCompile(`^v0\.3(\d\d)\.(\d+)$`).FindStringSubmatch(module)
	if m == nil {
		return "", fmt.Errorf("prometheus module version %s is not v0.3MM.P", module)
	}
	minor, _ := strconv.Atoi(m[1])
	return fmt.Sprintf("v3.%d.%s", minor, m[2]), nil
}

// TestComposeMounts: every bind mount's source exists in the repository, every named volume is
// declared, and the config files the services load are the ones `make demo` loads.
func TestComposeMounts(t *testing.T) {
	root := repoRoot(t)
	p := loadCompose(t, root)
	for name, svc := range p.Services {
		for _, v := range svc.Volumes {
			switch v.Type {
			case types.VolumeTypeBind:
				if rel, err := filepath.Rel(root, v.Source); err != nil || strings.HasPrefix(rel, "..") {
					t.Errorf("service %s: bind mount %s is outside the repository", name, v.Source)
				}
				mustExist(t, v.Source, "service "+name+" bind mount")
				if !v.ReadOnly {
					t.Errorf("service %s: bind mount %s is writable; the demo only reads repository files", name, v.Source)
				}
			case types.VolumeTypeVolume:
				if _, ok := p.Volumes[v.Source]; !ok {
					t.Errorf("service %s: volume %q is not declared", name, v.Source)
				}
			default:
				t.Errorf("service %s: unexpected volume type %s", name, v.Type)
			}
		}
	}

	// The same files as scripts/demo.sh.
	script, err := os.ReadFile(filepath.Join(root, "scripts", "demo.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ svc, flag, repoFile string }{
		{"prometheus", "config.file", "demo/prometheus.yml"},
		{"alertmanager", "config.file", "demo/alertmanager.yml"},
	} {
		svc := p.Services[c.svc]
		cfg, ok := flagValue(svc.Command, c.flag)
		if !ok {
			t.Errorf("service %s: no --%s", c.svc, c.flag)
			continue
		}
		if got, want := hostPath(svc, cfg), filepath.Join(root, c.repoFile); got != want {
			t.Errorf("service %s: --%s=%s is %q on the host, want %s", c.svc, c.flag, cfg, got, want)
		}
		if !strings.Contains(string(script), `"$ROOT/`+c.repoFile+`"`) {
			t.Errorf("scripts/demo.sh does not load %s; the two stacks must share it", c.repoFile)
		}
	}
}

// TestComposePrometheusConfig: the rule file and every file_sd file demo/prometheus.yml names
// exist in both stacks, and the compose targets name services on the ports they listen on.
func TestComposePrometheusConfig(t *testing.T) {
	root := repoRoot(t)
	p := loadCompose(t, root)
	svc := p.Services["prometheus"]
	cfgPath, _ := flagValue(svc.Command, "config.file")
	cfgDir := path.Dir(cfgPath)

	var cfg struct {
		RuleFiles []string `yaml:"rule_files"`
		Alerting  struct {
			Alertmanagers []struct {
				FileSD []struct {
					Files []string `yaml:"files"`
				} `yaml:"file_sd_configs"`
			} `yaml:"alertmanagers"`
		} `yaml:"alerting"`
		ScrapeConfigs []struct {
			JobName string `yaml:"job_name"`
			FileSD  []struct {
				Files []string `yaml:"files"`
			} `yaml:"file_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, filepath.Join(root, "demo", "prometheus.yml"), &cfg)

	if len(cfg.RuleFiles) != 1 {
		t.Fatalf("rule_files: %v, want the one shipped rule file", cfg.RuleFiles)
	}
	rules := hostPath(svc, path.Join(cfgDir, cfg.RuleFiles[0]))
	if rules != filepath.Join(root, "alerts", "etcd-monitor.rules.yml") {
		t.Errorf("compose: rule file %s is %q on the host, want alerts/etcd-monitor.rules.yml", cfg.RuleFiles[0], rules)
	}

	script, err := os.ReadFile(filepath.Join(root, "scripts", "demo.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), `"$STATE/prometheus/`+cfg.RuleFiles[0]+`"`) {
		t.Errorf("scripts/demo.sh does not link %s next to prometheus.yml", cfg.RuleFiles[0])
	}

	// job -> the compose service its targets must name.
	wantTargets := map[string][]string{
		"etcd-monitor": {"etcd-monitor"},
		"etcd":         {"etcd-0", "etcd-1", "etcd-2"},
		"pushgateway":  {"pushgateway"},
		"alertmanager": {"alertmanager"},
	}
	check := func(job, file string) {
		host := hostPath(svc, path.Join(cfgDir, file))
		if host == "" {
			t.Errorf("compose: %s (job %s) is not mounted", file, job)
			return
		}
		var groups []struct {
			Targets []string `yaml:"targets"`
		}
		readYAML(t, host, &groups)
		var got []string
		for _, g := range groups {
			for _, tgt := range g.Targets {
				name, port, _ := strings.Cut(tgt, ":")
				target, ok := p.Services[name]
				if !ok {
					t.Errorf("%s: target %s is not a compose service", host, tgt)
					continue
				}
				if want := containerPort(t, name, target); port != want {
					t.Errorf("%s: target %s, but %s listens on %s", host, tgt, name, want)
				}
				got = append(got, name)
			}
		}
		if !slices.Equal(sorted(got), wantTargets[job]) {
			t.Errorf("%s: targets %v, want %v", host, got, wantTargets[job])
		}
		// make demo writes the same file with 127.0.0.1 ports.
		if !strings.Contains(string(script), `"$STATE/prometheus/`+file+`"`) {
			t.Errorf("scripts/demo.sh does not write %s", file)
		}
	}
	var jobs []string
	for _, sc := range cfg.ScrapeConfigs {
		jobs = append(jobs, sc.JobName)
		for _, sd := range sc.FileSD {
			for _, f := range sd.Files {
				check(sc.JobName, f)
			}
		}
	}
	if !slices.Equal(sorted(jobs), []string{"etcd", "etcd-monitor", "pushgateway"}) {
		t.Errorf("scrape jobs %v, want etcd, etcd-monitor, pushgateway", jobs)
	}
	if len(cfg.Alerting.Alertmanagers) != 1 {
		t.Fatalf("alerting: %d alertmanagers, want 1", len(cfg.Alerting.Alertmanagers))
	}
	for _, sd := range cfg.Alerting.Alertmanagers[0].FileSD {
		for _, f := range sd.Files {
			check("alertmanager", f)
		}
	}
}

// TestComposeAlertmanagerConfig: the demo's routing is the shipped one, and its webhook URL
// file exists in both stacks and points at the log receiver.
func TestComposeAlertmanagerConfig(t *testing.T) {
	root := repoRoot(t)
	p := loadCompose(t, root)

	type amConfig struct {
		Route        any `yaml:"route"`
		InhibitRules any `yaml:"inhibit_rules"`
		Receivers    []struct {
			Name     string `yaml:"name"`
			Webhooks []struct {
				URLFile string `yaml:"url_file"`
			} `yaml:"webhook_configs"`
		} `yaml:"receivers"`
	}
	var demo, shipped amConfig
	readYAML(t, filepath.Join(root, "demo", "alertmanager.yml"), &demo)
	readYAML(t, filepath.Join(root, "alerts", "alertmanager.yml"), &shipped)
	if !reflect.DeepEqual(demo.Route, shipped.Route) {
		t.Errorf("demo/alertmanager.yml route differs from alerts/alertmanager.yml (make mixin); copy it again")
	}
	if !reflect.DeepEqual(demo.InhibitRules, shipped.InhibitRules) {
		t.Errorf("demo/alertmanager.yml inhibit_rules differ from alerts/alertmanager.yml (make mixin); copy them again")
	}
	names := func(c amConfig) []string {
		var n []string
		for _, r := range c.Receivers {
			n = append(n, r.Name)
		}
		return sorted(n)
	}
	if !slices.Equal(names(demo), names(shipped)) {
		t.Errorf("receivers %v, want the shipped %v", names(demo), names(shipped))
	}

	svc := p.Services["alertmanager"]
	if svc.WorkingDir == "" {
		t.Fatal("alertmanager: no working_dir; url_file is relative to it")
	}
	lr := p.Services["logreceiver"]
	for _, r := range demo.Receivers {
		if len(r.Webhooks) != 1 {
			t.Errorf("receiver %s: %d webhooks, want 1 (the log receiver)", r.Name, len(r.Webhooks))
			continue
		}
		f := r.Webhooks[0].URLFile
		host := hostPath(svc, path.Join(svc.WorkingDir, f))
		if host == "" {
			t.Errorf("receiver %s: url_file %s is not mounted", r.Name, f)
			continue
		}
		b, err := os.ReadFile(host)
		if err != nil {
			t.Errorf("receiver %s: %v", r.Name, err)
			continue
		}
		u, err := url.Parse(strings.TrimSpace(string(b)))
		if err != nil {
			t.Errorf("%s: %v", host, err)
			continue
		}
		if u.Hostname() != "logreceiver" || u.Port() != containerPort(t, "logreceiver", lr) {
			t.Errorf("%s: %s, want the logreceiver service on its port", host, u)
		}
	}
}

// TestComposeCommands: the members form one cluster, the exporter and the benchmark reach every
// member, and the benchmark runs exactly what `make demo` runs.
func TestComposeCommands(t *testing.T) {
	root := repoRoot(t)
	p := loadCompose(t, root)
	env := demoEnv(t, root)

	var peers, clients []string
	for i := range 3 {
		name := "etcd-" + strconv.Itoa(i)
		cmd := p.Services[name].Command
		if v, _ := flagValue(cmd, "name"); v != name {
			t.Errorf("%s: --name=%s", name, v)
		}
		if v, _ := flagValue(cmd, "quota-backend-bytes"); v != env["DEMO_ETCD_QUOTA_BYTES"] {
			t.Errorf("%s: --quota-backend-bytes=%s, want demo.env's %s", name, v, env["DEMO_ETCD_QUOTA_BYTES"])
		}
		adv, _ := flagValue(cmd, "initial-advertise-peer-urls")
		peers = append(peers, name+"="+adv)
		client, _ := flagValue(cmd, "advertise-client-urls")
		u, err := url.Parse(client)
		if err != nil || u.Hostname() != name || u.Port() != containerPort(t, name, p.Services[name]) {
			t.Errorf("%s: --advertise-client-urls=%s does not name the service and its port", name, client)
		}
		clients = append(clients, name+":"+containerPort(t, name, p.Services[name]))
	}
	for i := range 3 {
		name := "etcd-" + strconv.Itoa(i)
		if v, _ := flagValue(p.Services[name].Command, "initial-cluster"); v != strings.Join(peers, ",") {
			t.Errorf("%s: --initial-cluster=%s, want %s", name, v, strings.Join(peers, ","))
		}
	}
	endpoints := strings.Join(clients, ",")
	for _, name := range []string{"etcd-monitor", "benchmark"} {
		if v, _ := flagValue(p.Services[name].Command, "etcd.endpoints"); v != endpoints {
			t.Errorf("%s: --etcd.endpoints=%s, want %s", name, v, endpoints)
		}
	}

	bench := p.Services["benchmark"].Command
	if len(bench) == 0 || bench[0] != "benchmark" {
		t.Fatalf("benchmark service command %q does not start with the benchmark subcommand", bench)
	}
	var got []string
	for _, a := range bench[1:] {
		if !strings.HasPrefix(a, "--etcd.endpoints=") && !strings.HasPrefix(a, "--pushgateway.url=") {
			got = append(got, a)
		}
	}
	if want := strings.Fields(env["DEMO_BENCHMARK_ARGS"]); !slices.Equal(got, want) {
		t.Errorf("benchmark service runs %q, make demo runs %q (demo/demo.env)", got, want)
	}
	pg, _ := flagValue(bench, "pushgateway.url")
	if u, err := url.Parse(pg); err != nil || u.Hostname() != "pushgateway" ||
		u.Port() != containerPort(t, "pushgateway", p.Services["pushgateway"]) {
		t.Errorf("benchmark: --pushgateway.url=%s does not name the pushgateway service and its port", pg)
	}

	// Every flag given to etcd-monitor exists in the binary built from this checkout.
	flags := exporterFlags(t, root)
	for _, name := range []string{"etcd-monitor", "benchmark"} {
		for _, a := range p.Services[name].Command {
			if !strings.HasPrefix(a, "--") {
				continue
			}
			f, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			if !flags[f] {
				t.Errorf("service %s: etcd-monitor has no flag --%s", name, f)
			}
		}
	}
}

// TestComposeGrafana: the provisioned datasource is the compose Prometheus and the dashboards
// folder and home dashboard are the rendered dashboards/.
func TestComposeGrafana(t *testing.T) {
	root := repoRoot(t)
	p := loadCompose(t, root)
	svc := p.Services["grafana"]

	prov := hostPath(svc, "/etc/grafana/provisioning")
	if prov == "" {
		t.Fatal("grafana: /etc/grafana/provisioning is not mounted")
	}
	var ds struct {
		Datasources []struct {
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(prov, "datasources", "prometheus.yml"), &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" {
		t.Fatalf("grafana datasources %+v, want one prometheus", ds.Datasources)
	}
	u, err := url.Parse(ds.Datasources[0].URL)
	if err != nil || u.Hostname() != "prometheus" || u.Port() != containerPort(t, "prometheus", p.Services["prometheus"]) {
		t.Errorf("grafana datasource %s does not name the prometheus service and its port", ds.Datasources[0].URL)
	}

	var dash struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(prov, "dashboards", "etcd-monitor.yml"), &dash)
	if len(dash.Providers) != 1 {
		t.Fatalf("grafana dashboard providers: %d, want 1", len(dash.Providers))
	}
	if got := hostPath(svc, dash.Providers[0].Options.Path); got != filepath.Join(root, "dashboards") {
		t.Errorf("grafana dashboards path %s is %q on the host, want dashboards/", dash.Providers[0].Options.Path, got)
	}
	home := svc.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
	if home == nil {
		t.Fatal("grafana: no home dashboard")
	}
	if h := hostPath(svc, *home); h == "" {
		t.Errorf("grafana home dashboard %s is not mounted", *home)
	} else {
		mustExist(t, h, "grafana home dashboard")
	}
}

// exporterFlags builds etcd-monitor from this checkout and lists every flag of every command.
func exporterFlags(t *testing.T, root string) map[string]bool {
	t.Helper()
	flags := cliflags.Built(t, root, "--help-long")
	for _, f := range []string{"web.listen-address", "pushgateway.url"} {
		if !flags[f] {
			t.Fatalf("etcd-monitor --help-long lists no --%s", f)
		}
	}
	return flags
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

// TestDockerfile: no engine builds it here, so check what the compose stack relies on: a static
// build of packages that exist and are not ignored, a non-root final image exposing the port the
// etcd-monitor service listens on.
func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	p := loadCompose(t, root)
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	ignored := map[string]bool{}
	for _, l := range strings.Split(string(ignore), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			ignored[strings.Trim(l, "/")] = true
		}
	}

	if !regexp.MustCompile(`(?m)^ENV CGO_ENABLED=0$`).MatchString(df) {
		t.Error("Dockerfile does not build with CGO_ENABLED=0; the distroless static image has no libc")
	}
	builds := regexp.MustCompile(`-o /out/(\S+) (\./\S+)`).FindAllStringSubmatch(df, -1)
	if len(builds) != 2 {
		t.Fatalf("Dockerfile builds %v, want etcd-monitor and logreceiver", builds)
	}
	for _, m := range builds {
		pkg := strings.TrimPrefix(m[2], "./")
		mustExist(t, filepath.Join(root, pkg), "Dockerfile package "+m[2])
		if top, _, _ := strings.Cut(pkg, "/"); ignored[top] || ignored[pkg] {
			t.Errorf(".dockerignore excludes %s, which the Dockerfile builds", m[2])
		}
	}
	for _, must := range []string{"go.mod", "go.sum", "cmd", "demo"} {
		if ignored[must] {
			t.Errorf(".dockerignore excludes %s, which the build needs", must)
		}
	}

	// Stages: FROM lines split the file; the last is the default image compose builds.
	stages := regexp.MustCompile(`(?m)^FROM `).Split(df, -1)[1:]
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a build stage and small final images", len(stages))
	}
	final := stages[len(stages)-1]
	for i, st := range stages[1:] {
		base := strings.Fields(st)[0]
		if !strings.HasPrefix(base, "gcr.io/distroless/static") && base != "scratch" {
			t.Errorf("stage %d runs on %s, want a distroless static or scratch base", i+2, base)
		}
		user := regexp.MustCompile(`(?m)^USER (\S+)$`).FindStringSubmatch(st)
		if user == nil || strings.HasPrefix(user[1], "0") || strings.HasPrefix(user[1], "root") {
			t.Errorf("stage %d (%s) does not run as a non-root USER", i+2, base)
		}
	}
	expose := regexp.MustCompile(`(?m)^EXPOSE (\d+)$`).FindStringSubmatch(final)
	if want := containerPort(t, "etcd-monitor", p.Services["etcd-monitor"]); expose == nil || expose[1] != want {
		t.Errorf("final image EXPOSE %v, want the exporter's port %s", expose, want)
	}
	if !strings.Contains(final, `ENTRYPOINT ["/bin/etcd-monitor"]`) {
		t.Error("final image's entrypoint is not /bin/etcd-monitor")
	}
	if p.Services["etcd-monitor"].Build.Target != "" {
		t.Errorf("etcd-monitor builds stage %q, want the default (final) stage", p.Services["etcd-monitor"].Build.Target)
	}
}

// TestDemoMinimumVersionsDocumented: the minimum version scripts/demo.sh enforces for each
// installed tool is the one docs/demo.md documents, and each documented tool is enforced.
func TestDemoMinimumVersionsDocumented(t *testing.T) {
	root := repoRoot(t)
	script, err := os.ReadFile(filepath.Join(root, "scripts", "demo.sh"))
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile(`(?s)declare -A MIN_VERSION=\((.*?)\n\)`).FindSubmatch(script)
	if block == nil {
		t.Fatal("scripts/demo.sh has no MIN_VERSION table")
	}
	enforced := map[string]string{}
	for _, m := range regexp.MustCompile(`\[([a-z]+)\]=(\d+\.\d+\.\d+)`).FindAllStringSubmatch(string(block[1]), -1) {
		enforced[m[1]] = m[2]
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "demo.md"))
	if err != nil {
		t.Fatal(err)
	}
	// The table's rows: | tool | minimum | checked with | what needs it |
	documented := map[string]string{}
	names := map[string][]string{"Prometheus": {"prometheus"}, "Pushgateway": {"pushgateway"},
		"Alertmanager": {"alertmanager"}, "etcd, etcdctl": {"etcd", "etcdctl"}}
	for _, m := range regexp.MustCompile(`(?m)^\| ([A-Za-z, ]+) \| (\d+\.\d+\.\d+) \|`).FindAllStringSubmatch(string(doc), -1) {
		for _, n := range names[m[1]] {
			documented[n] = m[2]
		}
	}
	if len(enforced) == 0 || !reflect.DeepEqual(enforced, documented) {
		t.Errorf("minimum versions: scripts/demo.sh enforces %v, docs/demo.md documents %v", enforced, documented)
	}
}
