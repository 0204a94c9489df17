package kubernetes

import (
	"bytes"
	"fmt"
	"path"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/kubeobjects"
	"github.com/etcd-monitor/etcd-monitor/targets"
)

// TestFleetExample: the fleet overlay, built by kustomize and decoded strictly, runs the exporter
// on a config file from its Secret, every file the config names is a key of that Secret under the
// same mount, the ScrapeConfig reads the Service's /sd into the job the shipped alerts select, and
// the ServiceMonitor keeps the exporter's own metrics out of that job and of every cluster.
func TestFleetExample(t *testing.T) {
	o := build(t, "fleet")
	if len(o.Deployments) != 1 || len(o.Services) != 1 || len(o.Secrets) != 1 || len(o.ScrapeConfigs) != 1 {
		t.Fatalf("fleet: %d Deployments, %d Services, %d Secrets, %d ScrapeConfigs; want one each",
			len(o.Deployments), len(o.Services), len(o.Secrets), len(o.ScrapeConfigs))
	}
	// Selectors, ports, probes, and every file the config names mounted and read; with
	// --config.file the ServiceMonitor's /metrics is the exporter's own, in a job of its own.
	e := kubeobjects.CheckExporter(t, o, exporterFlags(t))
	if e.ServiceMonitor == nil {
		t.Fatal("fleet: no ServiceMonitor for the exporter's own metrics")
	}
	for _, r := range e.ServiceMonitor.Spec.Endpoints[0].RelabelConfigs {
		if r.TargetLabel == "job" && (r.Replacement == nil || *r.Replacement == "etcd-monitor") {
			t.Error("fleet: the ServiceMonitor puts the exporter's own metrics into the fleet's job etcd-monitor")
		}
	}
	d, s, secret, sc := o.Deployments[0], o.Services[0], o.Secrets[0], o.ScrapeConfigs[0]
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("fleet: %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	kubeobjects.AssertFlags(t, "etcd-monitor", c.Args, exporterFlags(t))
	flags := kubeobjects.Args(c.Args)
	for name := range flags {
		if strings.HasPrefix(name, "etcd.") {
			t.Errorf("fleet: --%s beside --config.file, which the exporter refuses", name)
		}
	}
	_, port, _ := strings.Cut(flags["web.listen-address"], ":")
	if len(c.Ports) != 1 || strconv.Itoa(int(c.Ports[0].ContainerPort)) != port {
		t.Errorf("fleet: --web.listen-address %q, container ports %v", flags["web.listen-address"], c.Ports)
	}

	// Each file must be in the Secret, mounted from it.
	mounts := map[string]string{} // mount path -> secret name
	volumes := map[string]string{}
	for _, v := range pod.Volumes {
		if v.Secret != nil {
			volumes[v.Name] = v.Secret.SecretName
		}
	}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = volumes[m.Name]
	}
	inSecret := func(file string) error {
		if mounts[path.Dir(file)] != secret.Name {
			return fmt.Errorf("%s is not in the mount of Secret %s", file, secret.Name)
		}
		if _, ok := secret.StringData[path.Base(file)]; !ok {
			return fmt.Errorf("%s: the Secret has no key %s", file, path.Base(file))
		}
		return nil
	}
	configFile := flags["config.file"]
	if configFile == "" {
		t.Fatal("fleet: no --config.file")
	}
	if err := inSecret(configFile); err != nil {
		t.Fatal(err)
	}
	// The config, strictly decoded as the exporter does (its files are placeholders here).
	dec := yaml.NewDecoder(bytes.NewReader([]byte(secret.StringData[path.Base(configFile)])))
	dec.KnownFields(true)
	var cfg targets.Config
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("fleet config: %v", err)
	}
	if len(cfg.Clusters) < 2 {
		t.Errorf("fleet config: %d clusters, want an example of several", len(cfg.Clusters))
	}
	for _, cl := range cfg.Clusters {
		if _, err := etcdconn.ParseEndpoints(strings.Join(cl.Endpoints, ",")); err != nil {
			t.Errorf("cluster %s: %v", cl.Name, err)
		}
		for _, f := range []string{cl.TLS.CAFile, cl.TLS.CertFile, cl.TLS.KeyFile, cl.PasswordFile} {
			if f == "" {
				continue
			}
			if err := inSecret(f); err != nil {
				t.Errorf("cluster %s: %v", cl.Name, err)
			}
		}
	}

	if len(sc.Spec.HTTPSDConfigs) != 1 {
		t.Fatalf("ScrapeConfig: %d httpSDConfigs, want 1", len(sc.Spec.HTTPSDConfigs))
	}
	if len(s.Spec.Ports) == 0 {
		t.Fatal("fleet: the Service has no port")
	}
	if want := fmt.Sprintf("http://%s.%s.svc:%d/sd", s.Name, s.Namespace, s.Spec.Ports[0].Port); sc.Spec.HTTPSDConfigs[0].URL != want {
		t.Errorf("ScrapeConfig SD URL %s, want the Service's %s", sc.Spec.HTTPSDConfigs[0].URL, want)
	}
	if sc.Spec.JobName == nil || *sc.Spec.JobName != "etcd-monitor" {
		t.Errorf("ScrapeConfig job %v: the shipped alerts select job=\"etcd-monitor\"", sc.Spec.JobName)
	}
	assertJobMatchesRules(t, "etcd-monitor")
}
