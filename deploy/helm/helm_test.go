package helm

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/etcd-monitor/etcd-monitor/backup"
	"github.com/etcd-monitor/etcd-monitor/internal/cliflags"
	"github.com/etcd-monitor/etcd-monitor/internal/freeport"
	"github.com/etcd-monitor/etcd-monitor/internal/kubeobjects"
	"github.com/etcd-monitor/etcd-monitor/internal/toolbin"
)

const chart = "etcd-monitor"

func helm(t *testing.T) string { return toolbin.Path(t, "helm", "HELM_BIN") }

// render runs helm template on the chart with args (values) and decodes the output strictly.
func render(t *testing.T, args ...string) *kubeobjects.Objects {
	t.Helper()
	out := kubeobjects.Run(t, ".", helm(t), append([]string{"template", "em", chart, "--namespace", "monitoring"}, args...)...)
	return kubeobjects.MustDecode(t, "helm template "+strings.Join(args, " "), out)
}

var flagCache = map[string]map[string]bool{}

func flags(t *testing.T, command ...string) map[string]bool {
	t.Helper()
	key := strings.Join(command, " ")
	if f, ok := flagCache[key]; ok {
		return f
	}
	f := cliflags.Built(t, filepath.Join("..", ".."), append(slices.Clone(command), "--help")...)
	flagCache[key] = f
	return f
}

// TestLint: helm lint passes with the default values, the kubeadm example and the fleet example.
func TestLint(t *testing.T) {
	kubeobjects.Run(t, ".", helm(t), "lint", "--strict", chart)
	kubeobjects.Run(t, ".", helm(t), "lint", "--strict", chart, "-f", filepath.Join(chart, "examples", "kubeadm.yaml"))
	kubeobjects.Run(t, ".", helm(t), "lint", "--strict", chart, "-f", fleetExample)
}

// TestDefaults: the default values render the exporter, its Service, ServiceMonitor and the
// rendered mixin's PrometheusRule, working together, and nothing optional.
func TestDefaults(t *testing.T) {
	o := render(t)
	e := kubeobjects.CheckExporter(t, o, flags(t, "exporter"))
	if e.ServiceMonitor == nil || len(o.PrometheusRules) != 1 {
		t.Fatal("no ServiceMonitor or PrometheusRule by default")
	}
	if len(o.CronJobs)+len(o.ConfigMaps)+len(o.Secrets)+len(o.Claims) != 0 {
		t.Errorf("defaults render optional objects: %d CronJobs, %d ConfigMaps, %d Secrets, %d claims", len(o.CronJobs), len(o.ConfigMaps), len(o.Secrets), len(o.Claims))
	}
	if e.Deployment.Namespace != "monitoring" {
		t.Errorf("namespace %q, want the release's", e.Deployment.Namespace)
	}
	// The Operator's job is the value of the Service label jobLabel names, else the Service name;
	// the release here is "em", so only jobLabel can make it the rules' job.
	job := e.Service.Name
	if l := e.ServiceMonitor.Spec.JobLabel; l != "" {
		job = e.Service.Labels[l]
	}
	rules, err := os.ReadFile(filepath.Join("..", "..", "alerts", "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	jobs := regexp.MustCompile(`job="([^"]+)"`).FindAllSubmatch(rules, -1)
	if len(jobs) == 0 {
		t.Fatal("the rules select no job; the check below would prove nothing")
	}
	for _, j := range jobs {
		// Pushed series keep the job they were pushed under (honor_labels).
		if string(j[1]) != backup.PushJob && string(j[1]) != job {
			t.Errorf("a rule selects job=%q, the ServiceMonitor's job is %q", j[1], job)
		}
	}
}

// TestPrometheusRuleAndDashboardsAreTheRenderedOnes: the chart's copies are alerts/ and
// dashboards/ byte for byte, the PrometheusRule carries the same rules, and every dashboard is a
// ConfigMap with the Grafana sidecar's label holding the file as it is.
func TestPrometheusRuleAndDashboardsAreTheRenderedOnes(t *testing.T) {
	root := filepath.Join("..", "..")
	same := func(copy, orig string) []byte {
		a, err := os.ReadFile(copy)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(orig)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s: run `make mixin`, which copies it", copy, orig)
		}
		return b
	}
	rules := same(filepath.Join(chart, "files", "prometheusrule.yaml"), filepath.Join(root, "alerts", "prometheusrule.yaml"))
	want := kubeobjects.MustDecode(t, "alerts/prometheusrule.yaml", rules).PrometheusRules[0]
	o := render(t, "--set", "dashboards.enabled=true")
	if len(o.PrometheusRules) != 1 || !reflect.DeepEqual(o.PrometheusRules[0].Spec, want.Spec) {
		t.Error("the chart's PrometheusRule does not carry alerts/prometheusrule.yaml's rules")
	}
	dashboards, err := filepath.Glob(filepath.Join(root, "dashboards", "*.json"))
	if err != nil || len(dashboards) == 0 {
		t.Fatalf("no dashboards (%v)", err)
	}
	if len(o.ConfigMaps) != len(dashboards) {
		t.Errorf("%d dashboard ConfigMaps, %d dashboards", len(o.ConfigMaps), len(dashboards))
	}
	for _, d := range dashboards {
		b := same(filepath.Join(chart, "files", "dashboards", filepath.Base(d)), d)
		found := false
		for _, cm := range o.ConfigMaps {
			if v, ok := cm.Data[filepath.Base(d)]; ok {
				found = true
				if v != strings.TrimRight(string(b), "\n") && v != string(b) {
					t.Errorf("ConfigMap %s: %s is not the file", cm.Name, filepath.Base(d))
				}
				if cm.Labels["grafana_dashboard"] != "1" {
					t.Errorf("ConfigMap %s has no grafana_dashboard: \"1\" label for the sidecar", cm.Name)
				}
			}
		}
		if !found {
			t.Errorf("no ConfigMap holds %s", filepath.Base(d))
		}
	}
}

// TestKubeadmPreset: the example values reach every control-plane member over https on 2379 with
// kubeadm's healthcheck client certificate from a Secret (every key mounted is read by a flag), run
// on control-plane nodes, and the CronJobs use the same certificates and flags their commands have.
func TestKubeadmPreset(t *testing.T) {
	o := render(t, "-f", filepath.Join(chart, "examples", "kubeadm.yaml"),
		"--set", "cronJobs.snapshot.enabled=true,cronJobs.defrag.enabled=true")
	e := kubeobjects.CheckExporter(t, o, flags(t, "exporter"))
	pod := e.Deployment.Spec.Template.Spec
	if _, ok := pod.NodeSelector["node-role.kubernetes.io/control-plane"]; !ok {
		t.Errorf("nodeSelector %v does not pick control-plane nodes", pod.NodeSelector)
	}
	if !slices.ContainsFunc(pod.Tolerations, func(tl corev1.Toleration) bool {
		return tl.Key == "node-role.kubernetes.io/control-plane" && tl.Effect == corev1.TaintEffectNoSchedule
	}) {
		t.Errorf("tolerations %v do not tolerate the control-plane taint", pod.Tolerations)
	}
	for _, ep := range strings.Split(e.Flags["etcd.endpoints"], ",") {
		if !strings.HasPrefix(ep, "https://") || !strings.HasSuffix(ep, ":2379") {
			t.Errorf("endpoint %q, want https://<node-ip>:2379", ep)
		}
	}
	var keys []string
	for _, v := range pod.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "etcd-monitor-etcd-client" {
			keys = kubeobjects.SecretKeys(v.Secret, o)
		}
	}
	if want := []string{"ca.crt", "healthcheck-client.crt", "healthcheck-client.key"}; !slices.Equal(keys, want) {
		t.Errorf("the certificate Secret mounts keys %v, want kubeadm's %v", keys, want)
	}
	if len(o.CronJobs) != 2 || len(o.Claims) != 1 {
		t.Fatalf("%d CronJobs and %d claims, want 2 and 1", len(o.CronJobs), len(o.Claims))
	}
	for _, cj := range o.CronJobs {
		spec := cj.Spec.JobTemplate.Spec
		kubeobjects.CheckPod(t, &spec.Template.Spec, o)
		c := spec.Template.Spec.Containers[0]
		command := []string{c.Args[0]}
		if c.Args[0] == "snapshot" {
			command = c.Args[:2]
		}
		args := c.Args[len(command):]
		kubeobjects.AssertFlags(t, strings.Join(command, " "), args, flags(t, command...))
		f := kubeobjects.Args(args)
		if f["etcd.endpoints"] != e.Flags["etcd.endpoints"] || f["etcd.tls.cert-file"] != e.Flags["etcd.tls.cert-file"] {
			t.Errorf("%s reaches etcd otherwise than the exporter: %q", cj.Name, args)
		}
		if f["cluster"] != "etcd" || cj.Spec.ConcurrencyPolicy != "Forbid" || spec.Template.Spec.RestartPolicy != "Never" {
			t.Errorf("%s: --cluster=%q, concurrencyPolicy %s, restartPolicy %s", cj.Name, f["cluster"], cj.Spec.ConcurrencyPolicy, spec.Template.Spec.RestartPolicy)
		}
		if to, ok := f["timeout"]; ok {
			d, err := time.ParseDuration(to)
			if err != nil || spec.ActiveDeadlineSeconds == nil || time.Duration(*spec.ActiveDeadlineSeconds)*time.Second <= d {
				t.Errorf("%s: activeDeadlineSeconds %v does not outlast --timeout=%s (%v)", cj.Name, spec.ActiveDeadlineSeconds, to, err)
			}
		}
	}
}

// TestKubeadmHostPath: certificates read from the node's kubeadm directory, read-only; those
// files are root's 0600, so that pod runs as uid 0, still without privilege escalation or
// capabilities, on a read-only root.
func TestKubeadmHostPath(t *testing.T) {
	o := render(t, "-f", filepath.Join(chart, "examples", "kubeadm.yaml"), "--set", "etcd.tls.source=hostPath")
	d := o.Deployments[0]
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	f := kubeobjects.Args(c.Args)
	var hp *corev1.HostPathVolumeSource
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hp = v.HostPath
		}
	}
	if hp == nil || hp.Path != "/etc/kubernetes/pki/etcd" {
		t.Fatalf("no hostPath volume of /etc/kubernetes/pki/etcd: %+v", pod.Volumes)
	}
	for _, vm := range c.VolumeMounts {
		if vm.Name == "etcd-tls" {
			if !vm.ReadOnly {
				t.Error("the node's certificates are mounted writable")
			}
			for _, flag := range []string{"etcd.tls.ca-file", "etcd.tls.cert-file", "etcd.tls.key-file"} {
				if path.Dir(f[flag]) != vm.MountPath {
					t.Errorf("--%s=%s is not in the mount %s", flag, f[flag], vm.MountPath)
				}
			}
		}
	}
	sc := c.SecurityContext
	if *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Error("the uid 0 container may escalate, writes its root or keeps capabilities")
	}
	if pod.SecurityContext.RunAsUser == nil || *pod.SecurityContext.RunAsUser != 0 {
		t.Error("hostPath: the pod cannot read kubeadm's root-owned 0600 key without uid 0")
	}
}

// TestBasicAuthProbes: with web.basicAuth the exporter, run with the web config the chart renders,
// refuses its probe endpoints without credentials and answers the probes' own headers, so the
// pod stays live and ready; the ServiceMonitor reads the same credentials.
func TestBasicAuthProbes(t *testing.T) {
	o := render(t, "--set", "web.basicAuth.username=prometheus,web.basicAuth.password=s3cr3t")
	e := kubeobjects.CheckExporter(t, o, flags(t, "exporter"))
	if len(o.Secrets) != 1 {
		t.Fatalf("%d Secrets, want the web config's", len(o.Secrets))
	}
	sec := o.Secrets[0]
	dir := t.TempDir()
	webConfig := filepath.Join(dir, "web-config.yml")
	if err := os.WriteFile(webConfig, []byte(sec.StringData["web-config.yml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	ep := e.ServiceMonitor.Spec.Endpoints[0]
	if ba := ep.BasicAuth; ba == nil || ba.Username.Name != sec.Name || sec.StringData[ba.Username.Key] != "prometheus" || sec.StringData[ba.Password.Key] != "s3cr3t" {
		t.Errorf("ServiceMonitor basicAuth %+v does not read the credentials from %s", ep.BasicAuth, sec.Name)
	}

	bin := filepath.Join(dir, "etcd-monitor")
	build := exec.Command("go", "build", "-o", bin, "./cmd/etcd-monitor")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freeport.Take(t, 1)[0])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// etcd is never reached: the probes are the exporter's own and do not ask it.
	cmd := exec.CommandContext(ctx, bin, "--etcd.endpoints=http://127.0.0.1:1", "--web.listen-address="+addr, "--web.config.file="+webConfig)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	get := func(p string, h []corev1.HTTPHeader) (int, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+p, nil)
		if err != nil {
			return 0, err
		}
		for _, hh := range h {
			req.Header.Set(hh.Name, hh.Value)
		}
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	c := e.Container
	var code int
	var err error
	for i := 0; i < 100; i++ {
		if code, err = get("/-/healthy", nil); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("the exporter never answered: %v\n%s", err, logs.String())
	}
	if code != http.StatusUnauthorized {
		t.Errorf("/-/healthy without credentials: %d, want 401 (is basic auth on?)", code)
	}
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
		code, err := get(p.HTTPGet.Path, p.HTTPGet.HTTPHeaders)
		if err != nil || code != http.StatusOK {
			t.Errorf("probe %s with its headers: %d %v, want 200\n%s", p.HTTPGet.Path, code, err, logs.String())
		}
	}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("prometheus:s3cr3t"))
	if h := c.LivenessProbe.HTTPGet.HTTPHeaders; len(h) != 1 || h[0].Value != want {
		t.Errorf("liveness headers %v", h)
	}
}

// TestSchemaRefusesBadValues: a wrong type, an unknown preset or key, a bad kubeadm endpoint, a
// fleet preset without a config or with a field the exporter's parser does not have, a config file
// in no mounted Secret are refused before anything renders, with a message naming the value.
func TestSchemaRefusesBadValues(t *testing.T) {
	for _, c := range []struct {
		set, want string
	}{
		{"web.port=abc", "/web/port"},
		{"preset=fleets", "/preset"},
		{"preset=fleet", "missing property 'clusters'"}, // neither config nor fleet.existingSecret
		{"preset=fleet", "/fleet/existingSecret"},
		{"preset=fleet,config.clusters=abc", "/config/clusters"},
		{"preset=fleet,config.clusters[0].name=a,config.clusters[0].endpoints[0]=h:1,config.clusters[0].pasword_file=/p", "pasword_file"},
		{"preset=fleet,config.clusters[0].name=a,config.clusters[0].endpoints[0]=h:1,fleet.existingSecret=s", "/fleet/existingSecret"},
		{"config.clusters[0].name=a,config.clusters[0].endpoints[0]=h:1", "/config"}, // without preset fleet
		{"preset=fleet,fleet.existingSecret=s,cronJobs.snapshot.enabled=true", "/cronJobs/snapshot/enabled"},
		{"preset=fleet,fleet.existingSecret=s,fleet.secrets[0].secretName=c,fleet.secrets[0].mountPath=certs", "/fleet/secrets/0/mountPath"},
		{"preset=fleet,fleet.existingSecret=s,fleet.secrets[0].secretName=c,fleet.secrets[0].mountPath=/etc/etcd-monitor/fleet", "/fleet/secrets/0/mountPath"},
		{"preset=fleet,fleet.existingSecret=s,fleet.secrets[0].secretName=c,fleet.secrets[0].mountPath=/c,fleet.secrets[1].secretName=d,fleet.secrets[1].mountPath=/c", "mountPath /c is taken"},
		{"preset=fleet,config.clusters[0].name=a,config.clusters[0].endpoints[0]=h:1,config.clusters[0].username=u,config.clusters[0].password_file=/p/pw", "is in no fleet.secrets mountPath"},
		{"preset=fleet,config.clusters[0].name=a,config.clusters[0].endpoints[0]=h:1,config.clusters[0].username=u,config.clusters[0].password_file=/p/pw,fleet.secrets[0].secretName=c,fleet.secrets[0].mountPath=/p,fleet.secrets[1].secretName=d,fleet.secrets[1].mountPath=/q", "holds no file the config names"},
		{"serviceMonitor.enabled=yes", "/serviceMonitor/enabled"},
		{"etcd.tls.source=file", "/etcd/tls/source"},
		{"replicas=2", "replicas"},
		{"cronJobs.snapshot.keep=0", "/cronJobs/snapshot/keep"},
		{"preset=kubeadm", "preset kubeadm: etcd.endpoints"},
	} {
		t.Run(c.set+" "+c.want, func(t *testing.T) {
			out, stderr, err := kubeobjects.RunErr(".", helm(t), "template", "em", chart, "--set", c.set)
			if err == nil {
				t.Fatalf("helm template --set %s rendered:\n%.300s", c.set, out)
			}
			if !strings.Contains(string(stderr), c.want) {
				t.Errorf("helm template --set %s: %s\nwant a message naming %s", c.set, stderr, c.want)
			}
			if n := strings.Count(strings.TrimSpace(string(stderr)), "\n"); n > 6 {
				t.Errorf("%d lines of error for one bad value", n+1)
			}
		})
	}
}
