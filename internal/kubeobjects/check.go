package kubeobjects

import (
	"bytes"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	yaml3 "gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/etcd-monitor/etcd-monitor/targets"
)

// Exporter is the exporter's Deployment, its Service and (when rendered) its ServiceMonitor.
type Exporter struct {
	Deployment     *appsv1.Deployment
	Container      corev1.Container
	Service        *corev1.Service
	ServiceMonitor *monitoringv1.ServiceMonitor // nil when none was rendered
	Flags          map[string]string            // the container's --name=value arguments
}

// Args splits --name=value arguments into a map; a value-less --name maps to "".
func Args(args []string) map[string]string {
	m := map[string]string{}
	for _, a := range args {
		name, v, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		m[name] = v
	}
	return m
}

func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// CheckExporter checks what makes the exporter's objects work together, whichever tool rendered
// them: the selectors match, the ports line up from --web.listen-address to the probes, the Service
// and the ServiceMonitor, the probes are the exporter's own endpoints, every flag is one the binary
// (known: its flags) accepts, the pod runs unprivileged, and every mounted Secret key is used.
func CheckExporter(t testing.TB, o *Objects, known map[string]bool) *Exporter {
	t.Helper()
	if len(o.Deployments) != 1 || len(o.Services) != 1 || len(o.ServiceMonitors) > 1 {
		t.Fatalf("%d Deployments, %d Services, %d ServiceMonitors; want 1, 1 and at most 1",
			len(o.Deployments), len(o.Services), len(o.ServiceMonitors))
	}
	d, s := o.Deployments[0], o.Services[0]
	e := &Exporter{Deployment: d, Service: s}
	if len(o.ServiceMonitors) == 1 {
		e.ServiceMonitor = o.ServiceMonitors[0]
	}
	pod := d.Spec.Template
	if d.Spec.Selector == nil || len(d.Spec.Selector.MatchLabels) == 0 || !subset(d.Spec.Selector.MatchLabels, pod.Labels) {
		t.Errorf("Deployment selector %v does not match its pod labels %v", d.Spec.Selector, pod.Labels)
	}
	if len(s.Spec.Selector) == 0 || !subset(s.Spec.Selector, pod.Labels) {
		t.Errorf("Service selector %v does not match the pod labels %v", s.Spec.Selector, pod.Labels)
	}
	if s.Namespace != d.Namespace {
		t.Errorf("Service in namespace %q, Deployment in %q", s.Namespace, d.Namespace)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("Deployment: %d containers, want 1", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	e.Container = c
	e.Flags = Args(c.Args)
	AssertFlags(t, "etcd-monitor", c.Args, known)

	listen, ok := e.Flags["web.listen-address"]
	if !ok {
		t.Fatalf("no --web.listen-address in %q: the ports below would rely on the binary's default", c.Args)
	}
	_, p, err := net.SplitHostPort(listen)
	if err != nil {
		t.Fatalf("--web.listen-address=%s: %v", listen, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("--web.listen-address=%s: %v", listen, err)
	}
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != int32(port) || c.Ports[0].Name == "" {
		t.Fatalf("container ports %+v, want one named port %d (--web.listen-address)", c.Ports, port)
	}
	cp := c.Ports[0]
	resolves := func(ip intstr.IntOrString) bool {
		if ip.Type == intstr.String {
			return ip.StrVal == cp.Name
		}
		return ip.IntVal == cp.ContainerPort
	}
	// Readiness is the exporter's own (it does not ask etcd), so an etcd outage never takes the
	// exporter out of its Service: the outage must stay visible as etcd_monitor_up 0.
	for _, pc := range []struct {
		name, path string
		p          *corev1.Probe
	}{{"readiness", "/-/ready", c.ReadinessProbe}, {"liveness", "/-/healthy", c.LivenessProbe}} {
		if pc.p == nil || pc.p.HTTPGet == nil {
			t.Errorf("container: no %s httpGet probe", pc.name)
			continue
		}
		if !resolves(pc.p.HTTPGet.Port) || pc.p.HTTPGet.Path != pc.path {
			t.Errorf("%s probe %s on port %v, want %s on %s", pc.name, pc.p.HTTPGet.Path, pc.p.HTTPGet.Port.String(), pc.path, cp.Name)
		}
	}
	if len(s.Spec.Ports) != 1 || !resolves(s.Spec.Ports[0].TargetPort) || s.Spec.Ports[0].Name == "" {
		t.Fatalf("Service ports %+v, want one named port targeting %s", s.Spec.Ports, cp.Name)
	}
	if sm := e.ServiceMonitor; sm != nil {
		if len(sm.Spec.Selector.MatchLabels) == 0 || !subset(sm.Spec.Selector.MatchLabels, s.Labels) {
			t.Errorf("ServiceMonitor selector %v does not match the Service labels %v", sm.Spec.Selector.MatchLabels, s.Labels)
		}
		if sm.Namespace != s.Namespace && !slices.Contains(sm.Spec.NamespaceSelector.MatchNames, s.Namespace) {
			t.Errorf("ServiceMonitor in %q selects no Service in %q", sm.Namespace, s.Namespace)
		}
		if len(sm.Spec.Endpoints) != 1 {
			t.Fatalf("ServiceMonitor: %d endpoints, want 1", len(sm.Spec.Endpoints))
		}
		ep := sm.Spec.Endpoints[0]
		if ep.Port != s.Spec.Ports[0].Name {
			t.Errorf("ServiceMonitor endpoint port %q, want the Service port name %q", ep.Port, s.Spec.Ports[0].Name)
		}
		wantPath := "/metrics"
		if p, ok := e.Flags["web.telemetry-path"]; ok {
			wantPath = p
		}
		if ep.Path != wantPath {
			t.Errorf("ServiceMonitor path %q, the exporter serves %q", ep.Path, wantPath)
		}
		sets := func(label string) bool {
			for _, r := range ep.RelabelConfigs {
				if r.TargetLabel == label && r.Replacement != nil && *r.Replacement != "" &&
					(r.Action == "" || strings.EqualFold(r.Action, "replace")) {
					return true
				}
			}
			return false
		}
		if _, fleet := e.Flags["config.file"]; fleet {
			// With --config.file, /metrics is the exporter's own: a cluster label would make it a
			// cluster of every dashboard, and the Service's job would put its up into the
			// fleet's (the caller checks the job it gets).
			if sets("cluster") {
				t.Error("ServiceMonitor sets a `cluster` label on the exporter's own metrics (--config.file: the clusters are at /probe)")
			}
			if !sets("job") {
				t.Error("ServiceMonitor keeps the Service's job for the exporter's own metrics; with --config.file that job is the fleet's")
			}
		} else if !sets("cluster") {
			t.Error("ServiceMonitor sets no `cluster` label; every alert and dashboard groups by it")
		}
	}
	CheckPod(t, &pod.Spec, o)
	return e
}

// CheckPod: the pod runs as non-root without a service account token, each container with a
// read-only root, no privilege escalation, no capabilities and resource requests; every mount
// names a volume, and every key of a mounted Secret (its items, or the keys of the Secret when it
// was rendered alongside) is a file some --flag of that container reads.
func CheckPod(t testing.TB, spec *corev1.PodSpec, o *Objects) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("the pod may run as root (no securityContext.runAsNonRoot: true)")
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("the pod mounts a service account token it does not need")
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	for _, c := range spec.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("container %s: the root file system is writable, it may escalate privileges or it keeps capabilities", c.Name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			t.Errorf("container %s: no cpu and memory requests", c.Name)
		}
		if c.Resources.Limits.Memory().IsZero() {
			t.Errorf("container %s: no memory limit", c.Name)
		}
		values := map[string]bool{}
		for _, v := range Args(c.Args) {
			values[v] = true
		}
		// With --config.file, the files the config names are read too, and each must be mounted.
		fleetFiles := configFiles(t, c, volumes, o)
		for _, f := range fleetFiles {
			values[f] = true
		}
		for _, vm := range c.VolumeMounts {
			v, ok := volumes[vm.Name]
			if !ok {
				t.Errorf("container %s mounts volume %s, which the pod does not have", c.Name, vm.Name)
				continue
			}
			if v.Secret == nil {
				continue
			}
			if !vm.ReadOnly {
				t.Errorf("container %s mounts Secret %s writable", c.Name, v.Secret.SecretName)
			}
			keys := SecretKeys(v.Secret, o)
			for _, k := range keys {
				if !values[path.Join(vm.MountPath, k)] {
					t.Errorf("container %s: key %s of Secret %s, mounted at %s, is read by no flag (%q) nor the config file", c.Name, k, v.Secret.SecretName, vm.MountPath, c.Args)
				}
			}
		}
		for _, f := range fleetFiles {
			if !mounted(f, c, volumes, o) {
				t.Errorf("container %s: the config file names %s, which no Secret mount holds", c.Name, f)
			}
		}
	}
}

// mounted reports whether file is a key of a Secret mounted at its directory (any key when the
// Secret's keys are not known: one the user creates, mounted whole).
func mounted(file string, c corev1.Container, volumes map[string]corev1.Volume, o *Objects) bool {
	for _, vm := range c.VolumeMounts {
		v := volumes[vm.Name]
		if v.Secret == nil || vm.MountPath != path.Dir(file) {
			continue
		}
		keys := SecretKeys(v.Secret, o)
		if len(keys) == 0 || slices.Contains(keys, path.Base(file)) {
			return true
		}
	}
	return false
}

// FleetConfig is the content of the container's --config.file when it is a key of a Secret
// rendered in o and mounted at the file's directory; ok is false when there is no --config.file
// or its Secret is not rendered (one the user creates).
func FleetConfig(t testing.TB, c corev1.Container, volumes map[string]corev1.Volume, o *Objects) (secret *corev1.Secret, content []byte, ok bool) {
	t.Helper()
	file, ok := Args(c.Args)["config.file"]
	if !ok {
		return nil, nil, false
	}
	for _, vm := range c.VolumeMounts {
		v := volumes[vm.Name]
		if v.Secret == nil || vm.MountPath != path.Dir(file) {
			continue
		}
		for _, s := range o.Secrets {
			if s.Name != v.Secret.SecretName {
				continue
			}
			if b, ok := s.Data[path.Base(file)]; ok {
				return s, b, true
			}
			if v, ok := s.StringData[path.Base(file)]; ok {
				return s, []byte(v), true
			}
			t.Errorf("--config.file=%s: Secret %s has no key %s", file, s.Name, path.Base(file))
		}
	}
	return nil, nil, false
}

// configFiles are the files the container's config file names, decoded strictly into the
// exporter's own type (an unknown field fails here as it would at start); none when the config is
// not rendered.
func configFiles(t testing.TB, c corev1.Container, volumes map[string]corev1.Volume, o *Objects) []string {
	t.Helper()
	_, b, ok := FleetConfig(t, c, volumes, o)
	if !ok {
		return nil
	}
	dec := yaml3.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var cfg targets.Config
	if err := dec.Decode(&cfg); err != nil {
		t.Errorf("container %s: its config file: %v", c.Name, err)
		return nil
	}
	var files []string
	for _, cl := range cfg.Clusters {
		for _, f := range []string{cl.TLS.CAFile, cl.TLS.CertFile, cl.TLS.KeyFile, cl.PasswordFile} {
			if f != "" {
				files = append(files, f)
			}
		}
	}
	return files
}

// SecretKeys are the file names a Secret volume holds: its items, else the keys of the Secret
// rendered in o, else none known (a Secret the user creates; the caller checks its instructions).
func SecretKeys(v *corev1.SecretVolumeSource, o *Objects) []string {
	var keys []string
	if len(v.Items) > 0 {
		for _, it := range v.Items {
			keys = append(keys, it.Path)
		}
		return keys
	}
	for _, s := range o.Secrets {
		if s.Name == v.SecretName {
			for k := range s.StringData {
				keys = append(keys, k)
			}
			for k := range s.Data {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	return keys
}

// AssertFlags: every argument is a --flag that the command (its flags: known) accepts.
func AssertFlags(t testing.TB, command string, args []string, known map[string]bool) {
	t.Helper()
	for _, a := range args {
		if !strings.HasPrefix(a, "--") {
			t.Errorf("%s: argument %q is not a --flag=value", command, a)
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !known[name] {
			t.Errorf("%s has no flag --%s", command, name)
		}
	}
}
