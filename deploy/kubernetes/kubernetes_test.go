package kubernetes

import (
	"bytes"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/etcd-monitor/etcd-monitor/backup"
	"github.com/etcd-monitor/etcd-monitor/internal/cliflags"
	"github.com/etcd-monitor/etcd-monitor/internal/kubeobjects"
	"github.com/etcd-monitor/etcd-monitor/internal/toolbin"
)

// build runs the pinned kustomize (make tools) on a kustomization under deploy/, as
// `kubectl apply -k` would, and decodes its output strictly into the upstream types.
func build(t *testing.T, dir string) *kubeobjects.Objects {
	t.Helper()
	kustomize := toolbin.Path(t, "kustomize", "KUSTOMIZE_BIN")
	out := kubeobjects.Run(t, ".", kustomize, "build", dir)
	return kubeobjects.MustDecode(t, "kustomize build "+dir, out)
}

// kustomizations are the directories under deploy/ that hold a kustomization.yaml.
func kustomizations(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Name() == "kustomization.yaml" {
			rel, err := filepath.Rel(".", filepath.Dir(p))
			if err != nil {
				return err
			}
			dirs = append(dirs, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatal("no kustomization under deploy/")
	}
	return dirs
}

type kustomization struct {
	Namespace string   `json:"namespace"`
	Resources []string `json:"resources"`
	Patches   []struct {
		Path string `json:"path"`
	} `json:"patches"`
}

// TestEveryKustomizationBuilds: kustomize itself builds every kustomization under deploy/ (a
// base above its overlay, a missing file, a patch that matches nothing fail here), every object
// decodes strictly into its upstream type, and no YAML file beside a kustomization is left out
// of it (kustomize would ignore it silently).
func TestEveryKustomizationBuilds(t *testing.T) {
	for _, dir := range kustomizations(t) {
		name, _ := filepath.Rel("..", dir)
		t.Run("deploy/"+filepath.ToSlash(name), func(t *testing.T) {
			build(t, dir)
			b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			var k kustomization
			if err := yaml.Unmarshal(b, &k); err != nil {
				t.Fatal(err)
			}
			listed := map[string]bool{}
			for _, r := range k.Resources {
				listed[filepath.Clean(filepath.Join(dir, r))] = true
			}
			for _, p := range k.Patches {
				listed[filepath.Clean(filepath.Join(dir, p.Path))] = true
			}
			files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				if filepath.Base(f) != "kustomization.yaml" && !listed[filepath.Clean(f)] {
					t.Errorf("%s is not listed in %s/kustomization.yaml", f, dir)
				}
			}
		})
	}
}

// TestPrometheusRuleIsTheRenderedOne: the base's manifest is alerts/prometheusrule.yaml, byte for
// byte, and what kustomize builds from it carries the same rules.
func TestPrometheusRuleIsTheRenderedOne(t *testing.T) {
	here, err := os.ReadFile(filepath.Join("base", "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := os.ReadFile(filepath.Join("..", "..", "alerts", "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(here, rendered) {
		t.Fatal("deploy/kubernetes/base/prometheusrule.yaml differs from alerts/prometheusrule.yaml; run `make mixin`, which copies it")
	}
	want := kubeobjects.MustDecode(t, "alerts/prometheusrule.yaml", rendered).PrometheusRules
	got := build(t, "base").PrometheusRules
	if len(got) != 1 || len(want) != 1 || !reflect.DeepEqual(got[0].Spec, want[0].Spec) {
		t.Fatal("kustomize build base: the PrometheusRule's rules are not alerts/prometheusrule.yaml's")
	}
}

// TestBase: what `kubectl apply -k deploy/kubernetes/base` creates works together (selectors,
// ports from the flag to the ServiceMonitor, probes, flags the binary accepts), in the namespace
// the kustomization names, with the job name the rules select.
func TestBase(t *testing.T) {
	o := build(t, "base")
	e := kubeobjects.CheckExporter(t, o, exporterFlags(t))
	if e.ServiceMonitor == nil || len(o.PrometheusRules) != 1 {
		t.Fatal("the base renders no ServiceMonitor or no PrometheusRule")
	}
	if e.Deployment.Namespace != "monitoring" {
		t.Errorf("namespace %q, the docs say monitoring", e.Deployment.Namespace)
	}
	if img := e.Container.Image; !strings.HasPrefix(img, "etcd-monitor:") || strings.HasSuffix(img, ":latest") {
		t.Errorf("image %q, want etcd-monitor:<version> (kustomization images)", img)
	}
	assertJobMatchesRules(t, e.Service.Name)
}

// assertJobMatchesRules: the Operator names the job after the Service, which must be the job the
// rules select.
func assertJobMatchesRules(t *testing.T, service string) {
	t.Helper()
	rules, err := os.ReadFile(filepath.Join("..", "..", "alerts", "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	jobs := regexp.MustCompile(`job="([^"]+)"`).FindAllSubmatch(rules, -1)
	if len(jobs) == 0 {
		t.Fatal("prometheusrule.yaml selects no job; the check below would prove nothing")
	}
	for _, j := range jobs {
		// Series pushed to the Pushgateway keep the job the command pushed them under
		// (honor_labels); only the exporter's job is the Service's name.
		if string(j[1]) == backup.PushJob {
			continue
		}
		if string(j[1]) != service {
			t.Errorf("a rule selects job=%q but the Service (the job name) is %q", j[1], service)
		}
	}
}

// TestKubeadmOverlay: the overlay reaches every member over https on 2379 with kubeadm's
// healthcheck client certificate, read from the Secret its instructions create (same namespace,
// same name, exactly the keys the flags read, mounted read-only where the flags look).
func TestKubeadmOverlay(t *testing.T) {
	o := build(t, "kubeadm")
	e := kubeobjects.CheckExporter(t, o, exporterFlags(t))
	eps := strings.Split(e.Flags["etcd.endpoints"], ",")
	for _, ep := range eps {
		if !regexp.MustCompile(`^https://\d+\.\d+\.\d+\.\d+:2379$`).MatchString(ep) {
			t.Errorf("kubeadm: endpoint %q, want https://<node-ip>:2379", ep)
		}
	}

	instr, err := os.ReadFile(filepath.Join("kubeadm", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`kubectl -n (\S+) create secret generic (\S+)`).FindSubmatch(instr)
	if m == nil {
		t.Fatal("kubeadm/kustomization.yaml does not say how to create the Secret")
	}
	if string(m[1]) != e.Deployment.Namespace {
		t.Errorf("the Secret is created in namespace %s, the Deployment runs in %s", m[1], e.Deployment.Namespace)
	}
	var created []string
	for _, f := range regexp.MustCompile(`--from-file=(\S+)`).FindAllSubmatch(instr, -1) {
		p := string(f[1])
		if path.Dir(p) != "/etc/kubernetes/pki/etcd" {
			t.Errorf("Secret file %s is not in kubeadm's /etc/kubernetes/pki/etcd", p)
		}
		created = append(created, path.Base(p))
	}
	slices.Sort(created)

	var mounted []string
	for _, v := range e.Deployment.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == string(m[2]) {
			for _, it := range v.Secret.Items {
				mounted = append(mounted, it.Key)
			}
		}
	}
	slices.Sort(mounted)
	if len(mounted) == 0 || !slices.Equal(mounted, created) {
		t.Errorf("the Deployment mounts keys %v of Secret %s, the instructions create %v", mounted, m[2], created)
	}
	for _, flag := range []string{"etcd.tls.ca-file", "etcd.tls.cert-file", "etcd.tls.key-file"} {
		if !slices.Contains(created, path.Base(e.Flags[flag])) {
			t.Errorf("kubeadm: --%s=%q names no key of Secret %s (%v)", flag, e.Flags[flag], m[2], created)
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
