package kubernetes

import (
	"bytes"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/targets"
)

// TestFleetExample: the overlay runs the exporter on a config file from its Secret, every file the
// config names is a key of that Secret under the same mount, and the ScrapeConfig reads the
// Service's /sd into the job the shipped alerts select.
func TestFleetExample(t *testing.T) {
	var base, patch deployment
	var baseK, k kustomization
	var s service
	decode(t, "deployment.yaml", &base)
	decode(t, "service.yaml", &s)
	decode(t, "kustomization.yaml", &baseK)
	decode(t, filepath.Join("fleet", "deployment-patch.yaml"), &patch)
	decode(t, filepath.Join("fleet", "kustomization.yaml"), &k)
	var secret struct {
		Kind       string            `yaml:"kind"`
		Metadata   meta              `yaml:"metadata"`
		StringData map[string]string `yaml:"stringData"`
	}
	decode(t, filepath.Join("fleet", "secret.yaml"), &secret)
	var sc struct {
		Kind string `yaml:"kind"`
		Spec struct {
			JobName       string `yaml:"jobName"`
			HTTPSDConfigs []struct {
				URL string `yaml:"url"`
			} `yaml:"httpSDConfigs"`
		} `yaml:"spec"`
	}
	decode(t, filepath.Join("fleet", "scrapeconfig.yaml"), &sc)

	if !slices.Contains(k.Resources, "..") {
		t.Errorf("fleet overlay resources %v do not include the base ..", k.Resources)
	}
	pcs := patch.Spec.Template.Spec.Containers
	if patch.Metadata.Name != base.Metadata.Name || len(pcs) != 1 || pcs[0].Name != base.Spec.Template.Spec.Containers[0].Name {
		t.Fatalf("the patch does not target the base's Deployment and container")
	}
	c := pcs[0]
	if got, want := listenPort(t, c.Args), base.Spec.Template.Spec.Containers[0].Ports[0].ContainerPort; got != want {
		t.Errorf("fleet: --web.listen-address port %d, base containerPort %d", got, want)
	}
	assertFlagsExist(t, c.Args)
	var configFile string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--config.file="); ok {
			configFile = v
		}
		if strings.HasPrefix(a, "--etcd.") {
			t.Errorf("fleet: %s beside --config.file, which the exporter refuses", a)
		}
	}
	// Each file must be in the Secret, mounted from it.
	mounts := map[string]string{} // mount path -> secret name
	volumes := map[string]string{}
	for _, v := range patch.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			volumes[v.Name] = v.Secret.SecretName
		}
	}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = volumes[m.Name]
	}
	inSecret := func(file string) error {
		if mounts[path.Dir(file)] != secret.Metadata.Name {
			return fmt.Errorf("%s is not in the mount of Secret %s", file, secret.Metadata.Name)
		}
		if _, ok := secret.StringData[path.Base(file)]; !ok {
			return fmt.Errorf("%s: the Secret has no key %s", file, path.Base(file))
		}
		return nil
	}
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

	if sc.Kind != "ScrapeConfig" || len(sc.Spec.HTTPSDConfigs) != 1 {
		t.Fatalf("scrapeconfig.yaml: kind %s, %d httpSDConfigs", sc.Kind, len(sc.Spec.HTTPSDConfigs))
	}
	if want := fmt.Sprintf("http://%s.%s.svc:%d/sd", s.Metadata.Name, baseK.Namespace, s.Spec.Ports[0].Port); sc.Spec.HTTPSDConfigs[0].URL != want {
		t.Errorf("ScrapeConfig SD URL %s, want the Service's %s", sc.Spec.HTTPSDConfigs[0].URL, want)
	}
	if sc.Spec.JobName != s.Metadata.Name {
		t.Errorf("ScrapeConfig job %q: the shipped alerts select job=%q", sc.Spec.JobName, s.Metadata.Name)
	}
}
