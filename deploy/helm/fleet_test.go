package helm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"gopkg.in/yaml.v3"

	"github.com/etcd-monitor/etcd-monitor/backup"
	"github.com/etcd-monitor/etcd-monitor/internal/kubeobjects"
	"github.com/etcd-monitor/etcd-monitor/internal/testpki"
	"github.com/etcd-monitor/etcd-monitor/targets"
)

var fleetExample = filepath.Join(chart, "examples", "fleet.yaml")

// rulesJob is the one job the shipped alerts select (besides the Pushgateway's).
func rulesJob(t *testing.T) string {
	t.Helper()
	rules, err := os.ReadFile(filepath.Join("..", "..", "alerts", "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	jobs := map[string]bool{}
	for _, j := range regexp.MustCompile(`job="([^"]+)"`).FindAllSubmatch(rules, -1) {
		if string(j[1]) != backup.PushJob {
			jobs[string(j[1])] = true
		}
	}
	if len(jobs) != 1 {
		t.Fatalf("the rules select the jobs %v, want one", jobs)
	}
	for j := range jobs {
		return j
	}
	return ""
}

func podVolumes(pod *corev1.PodSpec) map[string]corev1.Volume {
	m := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		m[v.Name] = v
	}
	return m
}

// materialise writes the files a config names under root, as the pod would see them from its
// Secret volumes (a CA, a client certificate and key, a password: what each field wants), and
// returns the config with every path (and, for a live run, every endpoint: tests reach only
// loopback) moved there.
func materialise(t *testing.T, config []byte, root string, live bool) []byte {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(config, &doc); err != nil {
		t.Fatalf("config: %v", err)
	}
	ca := testpki.NewCA(t, "fleet-ca")
	leaf := ca.Leaf(t, testpki.LeafOptions{Name: "monitor", Client: true})
	content := map[string][]byte{"ca_file": ca.PEM, "cert_file": leaf.CertPEM, "key_file": leaf.KeyPEM, "password_file": []byte("s3cr3t\n")}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i].Value, n.Content[i+1]
				if b, ok := content[k]; ok && v.Kind == yaml.ScalarNode {
					v.Value = filepath.Join(root, v.Value)
					if err := os.MkdirAll(filepath.Dir(v.Value), 0o700); err != nil {
						t.Fatal(err)
					}
					testpki.WriteFile(t, v.Value, b)
				}
				if k == "endpoints" && live {
					for _, ep := range v.Content {
						scheme, _, _ := strings.Cut(ep.Value, "://")
						ep.Value = scheme + "://127.0.0.1:1" // refused at once: no etcd is asked
					}
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&doc)
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFleetPreset: examples/fleet.yaml renders the exporter on --config.file and nothing of the
// single-cluster flags; the config Secret the chart renders parses with the exporter's own parser
// (every file it names mounted from the Secret the values name, each mounted key named by it);
// the ScrapeConfig reads the Service's /sd into the rules' job while the ServiceMonitor keeps the
// exporter's own metrics in another; a changed config rolls the pod.
func TestFleetPreset(t *testing.T) {
	o := render(t, "-f", fleetExample)
	e := kubeobjects.CheckExporter(t, o, flags(t, "exporter"))
	for name := range e.Flags {
		if strings.HasPrefix(name, "etcd.") || name == "probe.key" {
			t.Errorf("--%s beside --config.file, which the exporter refuses", name)
		}
	}
	if _, ok := e.Flags["web.enable-lifecycle"]; !ok {
		t.Error("no --web.enable-lifecycle: an edited fleet.existingSecret could only be applied by a restart")
	}
	pod := e.Deployment.Spec.Template.Spec
	volumes := podVolumes(&pod)
	secret, config, ok := kubeobjects.FleetConfig(t, e.Container, volumes, o)
	if !ok {
		t.Fatalf("--config.file=%s is not a key of a rendered Secret mounted there", e.Flags["config.file"])
	}
	if len(o.Secrets) != 1 || secret.Name != "em-fleet" {
		t.Errorf("%d Secrets, the config's %s; want only <release>-fleet", len(o.Secrets), secret.Name)
	}
	cfg, err := targets.Parse(materialise(t, config, t.TempDir(), false))
	if err != nil {
		t.Fatalf("the rendered config, as the exporter parses it: %v\n%s", err, config)
	}
	if names := []string{cfg.Clusters[0].Name, cfg.Clusters[len(cfg.Clusters)-1].Name}; len(cfg.Clusters) != 2 || names[0] != "prod-eu-1" || names[1] != "staging" {
		t.Errorf("rendered clusters %+v, want the example's prod-eu-1 and staging", cfg.Clusters)
	}
	// The user's Secret: exactly the four files prod-eu-1's entry names, read-only.
	var keys []string
	for _, v := range pod.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "prod-eu-1-etcd" {
			keys = kubeobjects.SecretKeys(v.Secret, o)
		}
	}
	if want := []string{"ca.crt", "client.crt", "client.key", "password"}; !slices.Equal(keys, want) {
		t.Errorf("Secret prod-eu-1-etcd mounts keys %v, want %v", keys, want)
	}

	if len(o.ScrapeConfigs) != 1 {
		t.Fatalf("%d ScrapeConfigs, want 1", len(o.ScrapeConfigs))
	}
	sc, s := o.ScrapeConfigs[0], e.Service
	if len(sc.Spec.HTTPSDConfigs) != 1 {
		t.Fatalf("ScrapeConfig: %d httpSDConfigs, want 1", len(sc.Spec.HTTPSDConfigs))
	}
	if want := fmt.Sprintf("http://%s.%s.svc:%d/sd", s.Name, s.Namespace, s.Spec.Ports[0].Port); sc.Spec.HTTPSDConfigs[0].URL != want {
		t.Errorf("ScrapeConfig SD URL %s, want the Service's %s", sc.Spec.HTTPSDConfigs[0].URL, want)
	}
	job := rulesJob(t)
	if sc.Namespace != s.Namespace || sc.Spec.JobName == nil || *sc.Spec.JobName != job {
		t.Errorf("ScrapeConfig in %s, job %v; want the Service's namespace and the rules' job %q", sc.Namespace, sc.Spec.JobName, job)
	}
	if sc.Spec.ScrapeTimeout == "" || sc.Spec.ScrapeTimeout != string(e.ServiceMonitor.Spec.Endpoints[0].ScrapeTimeout) {
		t.Errorf("ScrapeConfig scrapeTimeout %q, want serviceMonitor.scrapeTimeout's %q", sc.Spec.ScrapeTimeout, e.ServiceMonitor.Spec.Endpoints[0].ScrapeTimeout)
	}
	for _, r := range e.ServiceMonitor.Spec.Endpoints[0].RelabelConfigs {
		if r.TargetLabel == "job" && (r.Replacement == nil || *r.Replacement == job) {
			t.Errorf("the ServiceMonitor puts the exporter's own metrics into the fleet's job %q", job)
		}
	}

	annotation := func(o *kubeobjects.Objects) string {
		return o.Deployments[0].Spec.Template.Annotations["checksum/fleet-config"]
	}
	sum := annotation(o)
	if sum == "" || annotation(render(t, "-f", fleetExample)) != sum {
		t.Errorf("checksum/fleet-config %q is missing or not stable", sum)
	}
	if annotation(render(t, "-f", fleetExample, "--set", "config.clusters[1].name=staging-2")) == sum {
		t.Error("a changed config leaves the pod template as it was: the pod would keep the old config")
	}
}

// TestFleetExistingSecret: fleet.existingSecret replaces the rendered config: mounted at the
// same --config.file, nothing rendered in its place, no checksum the chart cannot know, and each
// of fleet.secrets mounted whole (the config naming its keys is the user's).
func TestFleetExistingSecret(t *testing.T) {
	o := render(t, "--set", "preset=fleet,fleet.existingSecret=my-fleet,fleet.secrets[0].secretName=certs,fleet.secrets[0].mountPath=/etc/etcd-monitor/certs")
	e := kubeobjects.CheckExporter(t, o, flags(t, "exporter"))
	pod := e.Deployment.Spec.Template.Spec
	if len(o.Secrets) != 0 {
		t.Errorf("%d Secrets rendered beside fleet.existingSecret", len(o.Secrets))
	}
	if _, ok := e.Deployment.Spec.Template.Annotations["checksum/fleet-config"]; ok {
		t.Error("a checksum of a config the chart does not render")
	}
	found := map[string]string{}
	for _, vm := range e.Container.VolumeMounts {
		v := podVolumes(&pod)[vm.Name]
		if v.Secret != nil {
			found[v.Secret.SecretName] = vm.MountPath
			if v.Secret.SecretName == "certs" && len(v.Secret.Items) != 0 {
				t.Errorf("fleet.secrets with an existing config: items %v, want the Secret whole", v.Secret.Items)
			}
		}
	}
	if found["my-fleet"] != filepath.Dir(e.Flags["config.file"]) || found["certs"] != "/etc/etcd-monitor/certs" {
		t.Errorf("Secret mounts %v, --config.file=%s", found, e.Flags["config.file"])
	}
}

// TestFleetBasicAuth: with web.basicAuth the ScrapeConfig sends the credentials to /sd and to
// every /probe, from the same Secret as the ServiceMonitor.
func TestFleetBasicAuth(t *testing.T) {
	o := render(t, "-f", fleetExample, "--set", "web.basicAuth.username=prometheus,web.basicAuth.password=s3cr3t")
	e := kubeobjects.CheckExporter(t, o, flags(t, "exporter"))
	want := e.ServiceMonitor.Spec.Endpoints[0].BasicAuth
	if want == nil || len(o.ScrapeConfigs) != 1 {
		t.Fatal("no ServiceMonitor basicAuth or no ScrapeConfig")
	}
	sc := o.ScrapeConfigs[0]
	if !reflect.DeepEqual(sc.Spec.BasicAuth, want) || !reflect.DeepEqual(sc.Spec.HTTPSDConfigs[0].BasicAuth, want) {
		t.Errorf("ScrapeConfig basicAuth %+v, SD %+v; want the ServiceMonitor's %+v", sc.Spec.BasicAuth, sc.Spec.HTTPSDConfigs[0].BasicAuth, want)
	}
}

// TestFleetExporterRuns: the exporter, started with the arguments the chart renders (the config
// and its files materialised on disk, loopback addresses), starts, is ready, lists the example's
// clusters at /sd as /probe targets, answers /probe?cluster= and reloads on POST /-/reload.
func TestFleetExporterRuns(t *testing.T) {
	o := render(t, "-f", fleetExample)
	d := o.Deployments[0]
	c := d.Spec.Template.Spec.Containers[0]
	_, config, ok := kubeobjects.FleetConfig(t, c, podVolumes(&d.Spec.Template.Spec), o)
	if !ok {
		t.Fatal("no rendered config")
	}
	dir := t.TempDir()
	configFile := filepath.Join(dir, "fleet.yml")
	testpki.WriteFile(t, configFile, materialise(t, config, filepath.Join(dir, "root"), true))

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var args []string
	for _, a := range c.Args {
		switch {
		case strings.HasPrefix(a, "--config.file="):
			a = "--config.file=" + configFile
		case strings.HasPrefix(a, "--web.listen-address="):
			a = "--web.listen-address=" + addr
		}
		args = append(args, a)
	}
	bin := filepath.Join(dir, "etcd-monitor")
	build := exec.Command("go", "build", "-o", bin, "./cmd/etcd-monitor")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	client := &http.Client{Timeout: 10 * time.Second}
	do := func(method, p string) (int, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+p, nil)
		if err != nil {
			return 0, nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	var code int
	for i := 0; i < 100; i++ {
		if code, _, err = do(http.MethodGet, c.ReadinessProbe.HTTPGet.Path); err == nil && code == http.StatusOK {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || code != http.StatusOK {
		t.Fatalf("%s: %d %v\n%s", c.ReadinessProbe.HTTPGet.Path, code, err, logs.String())
	}
	code, body, err := do(http.MethodGet, "/sd")
	if err != nil || code != http.StatusOK {
		t.Fatalf("/sd: %d %v\n%s", code, err, logs.String())
	}
	var groups []struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	if err := json.Unmarshal(body, &groups); err != nil {
		t.Fatalf("/sd: %v\n%s", err, body)
	}
	var clusters []string
	for _, g := range groups {
		if g.Labels["__metrics_path__"] != "/probe" || g.Labels["__param_cluster"] != g.Labels["cluster"] {
			t.Errorf("/sd group %+v is not a /probe?cluster= target", g)
		}
		clusters = append(clusters, g.Labels["cluster"])
	}
	slices.Sort(clusters)
	if !slices.Equal(clusters, []string{"prod-eu-1", "staging"}) {
		t.Errorf("/sd lists %v, want the example's clusters", clusters)
	}
	// The cluster is unreachable: a probe that answers, with etcd_monitor_up 0.
	code, body, err = do(http.MethodGet, "/probe?cluster=staging")
	if err != nil || code != http.StatusOK || !regexp.MustCompile(`(?m)^etcd_monitor_up(\{[^}]*\})? 0$`).Match(body) {
		t.Errorf("/probe?cluster=staging: %d %v, want 200 with etcd_monitor_up 0\n%.500s", code, err, body)
	}
	if code, body, err = do(http.MethodPost, "/-/reload"); err != nil || code != http.StatusOK {
		t.Errorf("POST /-/reload: %d %v %s", code, err, body)
	}
}

// TestFleetSchemaIsTheParsersFields: values.schema.json's config fields are those of the
// exporter's config types, so the schema neither refuses a field the exporter takes nor lets a
// misspelt one through to a pod that exits at start.
func TestFleetSchemaIsTheParsersFields(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chart, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	type node struct {
		Properties map[string]json.RawMessage `json:"properties"`
		Items      json.RawMessage            `json:"items"`
	}
	var schema node
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	get := func(raw json.RawMessage) node {
		var n node
		if err := json.Unmarshal(raw, &n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	cluster := get(get(get(schema.Properties["config"]).Properties["clusters"]).Items)
	tls := get(cluster.Properties["tls"])
	fields := func(v any) []string {
		var names []string
		rt := reflect.TypeOf(v)
		for i := 0; i < rt.NumField(); i++ {
			names = append(names, strings.Split(rt.Field(i).Tag.Get("yaml"), ",")[0])
		}
		slices.Sort(names)
		return names
	}
	keys := func(m map[string]json.RawMessage) []string {
		var names []string
		for k := range m {
			names = append(names, k)
		}
		slices.Sort(names)
		return names
	}
	for _, c := range []struct {
		what         string
		schema, want []string
	}{
		{"config", keys(get(schema.Properties["config"]).Properties), fields(targets.Config{})},
		{"config.clusters[]", keys(cluster.Properties), fields(targets.Cluster{})},
		{"config.clusters[].tls", keys(tls.Properties), fields(targets.TLS{})},
	} {
		if !slices.Equal(c.schema, c.want) {
			t.Errorf("values.schema.json %s has %v, the exporter's parser %v", c.what, c.schema, c.want)
		}
	}
}
