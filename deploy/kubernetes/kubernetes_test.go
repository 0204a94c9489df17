package kubernetes

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/etcd-monitor/etcd-monitor/internal/cliflags"
)

// Just enough of the Kubernetes types to follow the references between the manifests.
type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type meta struct {
	Name      string            `yaml:"name"`
	Namespace string            `yaml:"namespace"`
	Labels    map[string]string `yaml:"labels"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type deployment struct {
	Kind     string `yaml:"kind"`
	Metadata meta   `yaml:"metadata"`
	Spec     struct {
		Selector labelSelector `yaml:"selector"`
		Template struct {
			Metadata meta `yaml:"metadata"`
			Spec     struct {
				Containers []container `yaml:"containers"`
				Volumes    []struct {
					Name   string `yaml:"name"`
					Secret *struct {
						SecretName string `yaml:"secretName"`
					} `yaml:"secret"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type service struct {
	Kind     string `yaml:"kind"`
	Metadata meta   `yaml:"metadata"`
	Spec     struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type serviceMonitor struct {
	Kind     string `yaml:"kind"`
	Metadata meta   `yaml:"metadata"`
	Spec     struct {
		Selector  labelSelector `yaml:"selector"`
		Endpoints []struct {
			Port        string `yaml:"port"`
			Path        string `yaml:"path"`
			Relabelings []struct {
				Action      string `yaml:"action"`
				TargetLabel string `yaml:"targetLabel"`
				Replacement string `yaml:"replacement"`
			} `yaml:"relabelings"`
		} `yaml:"endpoints"`
	} `yaml:"spec"`
}

type kustomization struct {
	Kind      string   `yaml:"kind"`
	Namespace string   `yaml:"namespace"`
	Resources []string `yaml:"resources"`
	Patches   []struct {
		Path string `yaml:"path"`
	} `yaml:"patches"`
	Images []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
	} `yaml:"images"`
}

// decode reads the single YAML document of file (relative to this directory) into v.
func decode(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		t.Fatalf("%s: more than one document (%v)", file, err)
	}
}

// TestManifestsParse: every YAML file here is one Kubernetes object (or kustomization) with a
// kind, apiVersion and name, and the kustomizations list exactly the files beside them.
func TestManifestsParse(t *testing.T) {
	for _, dir := range []string{".", "kubeadm", "fleet"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var k kustomization
		decode(t, filepath.Join(dir, "kustomization.yaml"), &k)
		listed := map[string]bool{}
		for _, r := range k.Resources {
			st, err := os.Stat(filepath.Join(dir, r))
			if err != nil {
				t.Errorf("%s/kustomization.yaml: resource %s: %v", dir, r, err)
				continue
			}
			if st.IsDir() {
				if _, err := os.Stat(filepath.Join(dir, r, "kustomization.yaml")); err != nil {
					t.Errorf("%s/kustomization.yaml: resource %s is a directory without a kustomization", dir, r)
				}
			}
			listed[filepath.Clean(filepath.Join(dir, r))] = true
		}
		for _, p := range k.Patches {
			if _, err := os.Stat(filepath.Join(dir, p.Path)); err != nil {
				t.Errorf("%s/kustomization.yaml: patch %s: %v", dir, p.Path, err)
			}
			listed[filepath.Clean(filepath.Join(dir, p.Path))] = true
		}
		for _, f := range files {
			if filepath.Base(f) == "kustomization.yaml" {
				continue
			}
			var obj struct {
				APIVersion string `yaml:"apiVersion"`
				Kind       string `yaml:"kind"`
				Metadata   meta   `yaml:"metadata"`
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := yaml.Unmarshal(b, &obj); err != nil {
				t.Errorf("%s: %v", f, err)
				continue
			}
			if obj.APIVersion == "" || obj.Kind == "" || obj.Metadata.Name == "" {
				t.Errorf("%s: apiVersion %q, kind %q, name %q: all are required", f, obj.APIVersion, obj.Kind, obj.Metadata.Name)
			}
			if !listed[filepath.Clean(f)] {
				t.Errorf("%s is not listed in %s/kustomization.yaml", f, dir)
			}
		}
	}
}

// TestPrometheusRuleIsTheRenderedOne: the manifest is alerts/prometheusrule.yaml, byte for byte.
func TestPrometheusRuleIsTheRenderedOne(t *testing.T) {
	here, err := os.ReadFile("prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := os.ReadFile(filepath.Join("..", "..", "alerts", "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(here, rendered) {
		t.Fatal("deploy/kubernetes/prometheusrule.yaml differs from alerts/prometheusrule.yaml; after `make mixin`: cp alerts/prometheusrule.yaml deploy/kubernetes/")
	}
}

func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// listenPort is the port of --web.listen-address in args.
func listenPort(t *testing.T, args []string) int {
	t.Helper()
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--web.listen-address="); ok {
			_, p, err := net.SplitHostPort(v)
			if err != nil {
				t.Fatalf("--web.listen-address=%s: %v", v, err)
			}
			n, err := strconv.Atoi(p)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no --web.listen-address in %q", args)
	return 0
}

// TestManifestsReferenceEachOther: selectors match labels, the ports line up by name and number
// from the flag to the ServiceMonitor, the job name and cluster label are what the rules use.
func TestManifestsReferenceEachOther(t *testing.T) {
	var d deployment
	var s service
	var sm serviceMonitor
	var k kustomization
	decode(t, "deployment.yaml", &d)
	decode(t, "service.yaml", &s)
	decode(t, "servicemonitor.yaml", &sm)
	decode(t, "kustomization.yaml", &k)

	podLabels := d.Spec.Template.Metadata.Labels
	if len(d.Spec.Selector.MatchLabels) == 0 || !subset(d.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("Deployment selector %v does not match its pod labels %v", d.Spec.Selector.MatchLabels, podLabels)
	}
	if len(s.Spec.Selector) == 0 || !subset(s.Spec.Selector, podLabels) {
		t.Errorf("Service selector %v does not match the pod labels %v", s.Spec.Selector, podLabels)
	}
	if len(sm.Spec.Selector.MatchLabels) == 0 || !subset(sm.Spec.Selector.MatchLabels, s.Metadata.Labels) {
		t.Errorf("ServiceMonitor selector %v does not match the Service labels %v", sm.Spec.Selector.MatchLabels, s.Metadata.Labels)
	}

	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("Deployment: %d containers, want 1", len(d.Spec.Template.Spec.Containers))
	}
	c := d.Spec.Template.Spec.Containers[0]
	if len(c.Ports) != 1 {
		t.Fatalf("container: %d ports, want 1", len(c.Ports))
	}
	if got, want := c.Ports[0].ContainerPort, listenPort(t, c.Args); got != want {
		t.Errorf("containerPort %d, but --web.listen-address listens on %d", got, want)
	}
	// Readiness is the exporter's own (it does not ask etcd), so an etcd outage never takes the
	// exporter out of its Service: the outage must stay visible as etcd_monitor_up 0.
	for _, pc := range []struct {
		name, path string
		p          *probe
	}{{"readiness", "/-/ready", c.ReadinessProbe}, {"liveness", "/-/healthy", c.LivenessProbe}} {
		if pc.p == nil {
			t.Errorf("container: no %s probe", pc.name)
			continue
		}
		if pc.p.HTTPGet.Port != c.Ports[0].Name || pc.p.HTTPGet.Path != pc.path {
			t.Errorf("%s probe %s on port %v, want %s on %s", pc.name, pc.p.HTTPGet.Path, pc.p.HTTPGet.Port, pc.path, c.Ports[0].Name)
		}
	}
	if len(s.Spec.Ports) != 1 {
		t.Fatalf("Service: %d ports, want 1", len(s.Spec.Ports))
	}
	if s.Spec.Ports[0].TargetPort != c.Ports[0].Name {
		t.Errorf("Service targetPort %v, want the container port name %s", s.Spec.Ports[0].TargetPort, c.Ports[0].Name)
	}
	if len(sm.Spec.Endpoints) != 1 {
		t.Fatalf("ServiceMonitor: %d endpoints, want 1", len(sm.Spec.Endpoints))
	}
	ep := sm.Spec.Endpoints[0]
	if ep.Port != s.Spec.Ports[0].Name {
		t.Errorf("ServiceMonitor endpoint port %q, want the Service port name %q", ep.Port, s.Spec.Ports[0].Name)
	}
	if ep.Path != "/metrics" {
		t.Errorf("ServiceMonitor path %q, want /metrics", ep.Path)
	}
	cluster := false
	for _, r := range ep.Relabelings {
		cluster = cluster || (r.TargetLabel == "cluster" && r.Replacement != "" && (r.Action == "" || r.Action == "replace"))
	}
	if !cluster {
		t.Error("ServiceMonitor sets no `cluster` label; every alert and dashboard groups by it")
	}

	// The Operator names the job after the Service: it must be the job the rules select.
	rules, err := os.ReadFile("prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	jobs := regexp.MustCompile(`job="([^"]+)"`).FindAllSubmatch(rules, -1)
	if len(jobs) == 0 {
		t.Fatal("prometheusrule.yaml selects no job; the check below would prove nothing")
	}
	for _, j := range jobs {
		if string(j[1]) != s.Metadata.Name {
			t.Errorf("a rule selects job=%q but the Service (the job name) is %q", j[1], s.Metadata.Name)
		}
	}

	if len(k.Images) != 1 || k.Images[0].Name != c.Image {
		t.Errorf("kustomization images %+v do not set the container's image %q", k.Images, c.Image)
	}
	for _, im := range k.Images {
		if im.NewTag == "" || im.NewTag == "latest" {
			t.Errorf("kustomization image %s: tag %q, want a version", im.Name, im.NewTag)
		}
	}
	if k.Namespace == "" {
		t.Error("kustomization sets no namespace")
	}
	assertFlagsExist(t, c.Args)
}

// TestKubeadmExample: the overlay patches the base's Deployment and container, reaches every
// member over https on 2379, and its --etcd.tls.* files are the keys of the Secret the
// instructions create from kubeadm's files, mounted where the flags look.
func TestKubeadmExample(t *testing.T) {
	var base, patch deployment
	var baseK, k kustomization
	decode(t, "deployment.yaml", &base)
	decode(t, filepath.Join("kubeadm", "deployment-patch.yaml"), &patch)
	decode(t, "kustomization.yaml", &baseK)
	decode(t, filepath.Join("kubeadm", "kustomization.yaml"), &k)

	if !slices.Contains(k.Resources, "..") {
		t.Errorf("kubeadm overlay resources %v do not include the base ..", k.Resources)
	}
	if patch.Kind != "Deployment" || patch.Metadata.Name != base.Metadata.Name {
		t.Fatalf("patch targets %s/%s, want Deployment/%s", patch.Kind, patch.Metadata.Name, base.Metadata.Name)
	}
	pcs := patch.Spec.Template.Spec.Containers
	if len(pcs) != 1 || pcs[0].Name != base.Spec.Template.Spec.Containers[0].Name {
		t.Fatalf("patch containers %+v, want the base's %s", pcs, base.Spec.Template.Spec.Containers[0].Name)
	}
	c := pcs[0]
	// args replace the base's list: the listen port must stay the one the ports name.
	if got, want := listenPort(t, c.Args), base.Spec.Template.Spec.Containers[0].Ports[0].ContainerPort; got != want {
		t.Errorf("kubeadm: --web.listen-address port %d, base containerPort %d", got, want)
	}
	assertFlagsExist(t, c.Args)

	flags := map[string]string{}
	for _, a := range c.Args {
		if name, v, ok := strings.Cut(strings.TrimPrefix(a, "--"), "="); ok {
			flags[name] = v
		}
	}
	eps := strings.Split(flags["etcd.endpoints"], ",")
	if len(eps) < 1 || eps[0] == "" {
		t.Fatal("kubeadm: no --etcd.endpoints")
	}
	for _, e := range eps {
		u, err := url.Parse(e)
		if err != nil || u.Scheme != "https" || u.Port() != "2379" || net.ParseIP(u.Hostname()) == nil {
			t.Errorf("kubeadm: endpoint %q, want https://<node-ip>:2379", e)
		}
	}

	// The instructions in kubeadm/kustomization.yaml: the namespace, Secret name and files.
	instr, err := os.ReadFile(filepath.Join("kubeadm", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`kubectl -n (\S+) create secret generic (\S+)`).FindSubmatch(instr)
	if m == nil {
		t.Fatal("kubeadm/kustomization.yaml does not say how to create the Secret")
	}
	if string(m[1]) != baseK.Namespace {
		t.Errorf("the Secret is created in namespace %s, the manifests go to %s", m[1], baseK.Namespace)
	}
	secretName := string(m[2])
	var secretKeys []string
	for _, f := range regexp.MustCompile(`--from-file=(\S+)`).FindAllSubmatch(instr, -1) {
		p := string(f[1])
		if path.Dir(p) != "/etc/kubernetes/pki/etcd" {
			t.Errorf("Secret file %s is not in kubeadm's /etc/kubernetes/pki/etcd", p)
		}
		secretKeys = append(secretKeys, path.Base(p))
	}
	slices.Sort(secretKeys)
	if want := []string{"ca.crt", "healthcheck-client.crt", "healthcheck-client.key"}; !slices.Equal(secretKeys, want) {
		t.Errorf("Secret keys %v, want kubeadm's %v", secretKeys, want)
	}

	volumes := map[string]string{} // volume name -> secret name
	for _, v := range patch.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			volumes[v.Name] = v.Secret.SecretName
		}
	}
	for _, flag := range []string{"etcd.tls.ca-file", "etcd.tls.cert-file", "etcd.tls.key-file"} {
		file, ok := flags[flag]
		if !ok {
			t.Errorf("kubeadm: no --%s", flag)
			continue
		}
		mounted := false
		for _, vm := range c.VolumeMounts {
			if path.Dir(file) == vm.MountPath && volumes[vm.Name] == secretName {
				mounted = true
				if !vm.ReadOnly {
					t.Errorf("kubeadm: the certificates are mounted writable at %s", vm.MountPath)
				}
			}
		}
		if !mounted {
			t.Errorf("kubeadm: --%s=%s is not in a mount of Secret %s", flag, file, secretName)
		}
		if !slices.Contains(secretKeys, path.Base(file)) {
			t.Errorf("kubeadm: --%s=%s names no key of Secret %s (%v)", flag, file, secretName, secretKeys)
		}
	}
}

// assertFlagsExist: every --flag in args is one etcd-monitor, built from this checkout, accepts.
func assertFlagsExist(t *testing.T, args []string) {
	t.Helper()
	known := exporterFlags(t)
	for _, a := range args {
		if !strings.HasPrefix(a, "--") {
			t.Errorf("argument %q is not a --flag=value", a)
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !known[name] {
			t.Errorf("etcd-monitor has no flag --%s", name)
		}
	}
}

var flagCache map[string]bool

// exporterFlags builds etcd-monitor and lists the flags of its exporter command (the default).
func exporterFlags(t *testing.T) map[string]bool {
	t.Helper()
	if flagCache == nil {
		flagCache = cliflags.Built(t, filepath.Join("..", ".."), "exporter", "--help")
	}
	return flagCache
}
