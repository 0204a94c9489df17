package kubernetes

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/etcd-monitor/etcd-monitor/internal/cliflags"
)

// The CronJob, as far as the examples use it. Decoded with KnownFields: a field these types do
// not have (a typo, a field at the wrong level) fails the test instead of being ignored, as the
// API server would ignore it.
type cronJob struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   meta   `yaml:"metadata"`
	Spec       struct {
		Schedule                   string `yaml:"schedule"`
		ConcurrencyPolicy          string `yaml:"concurrencyPolicy"`
		StartingDeadlineSeconds    int    `yaml:"startingDeadlineSeconds"`
		SuccessfulJobsHistoryLimit int    `yaml:"successfulJobsHistoryLimit"`
		FailedJobsHistoryLimit     int    `yaml:"failedJobsHistoryLimit"`
		JobTemplate                struct {
			Metadata meta `yaml:"metadata"`
			Spec     struct {
				BackoffLimit          *int `yaml:"backoffLimit"`
				ActiveDeadlineSeconds int  `yaml:"activeDeadlineSeconds"`
				Template              struct {
					Metadata meta    `yaml:"metadata"`
					Spec     podSpec `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		} `yaml:"jobTemplate"`
	} `yaml:"spec"`
}

type podSpec struct {
	RestartPolicy                string `yaml:"restartPolicy"`
	AutomountServiceAccountToken *bool  `yaml:"automountServiceAccountToken"`
	SecurityContext              struct {
		RunAsNonRoot   bool `yaml:"runAsNonRoot"`
		RunAsUser      int  `yaml:"runAsUser"`
		RunAsGroup     int  `yaml:"runAsGroup"`
		FSGroup        *int `yaml:"fsGroup"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	Containers []struct {
		Name         string   `yaml:"name"`
		Image        string   `yaml:"image"`
		Args         []string `yaml:"args"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
			ReadOnly  bool   `yaml:"readOnly"`
		} `yaml:"volumeMounts"`
		Resources struct {
			Requests map[string]string `yaml:"requests"`
			Limits   map[string]string `yaml:"limits"`
		} `yaml:"resources"`
		SecurityContext struct {
			AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
			ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
			Capabilities             struct {
				Drop []string `yaml:"drop"`
			} `yaml:"capabilities"`
		} `yaml:"securityContext"`
	} `yaml:"containers"`
	Volumes []struct {
		Name                  string `yaml:"name"`
		PersistentVolumeClaim *struct {
			ClaimName string `yaml:"claimName"`
		} `yaml:"persistentVolumeClaim"`
	} `yaml:"volumes"`
}

type persistentVolumeClaim struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   meta   `yaml:"metadata"`
	Spec       struct {
		AccessModes []string `yaml:"accessModes"`
		Resources   struct {
			Requests map[string]string `yaml:"requests"`
		} `yaml:"resources"`
	} `yaml:"spec"`
}

func decodeStrict(t *testing.T, file string, v any) {
	t.Helper()
	var raw yaml.Node
	decode(t, file, &raw) // one document
	b, err := yaml.Marshal(&raw)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// TestCronJobExamples: the snapshot and defrag CronJobs run the commands they name with flags
// those commands accept (checked against the built binary), push under the cluster name the
// ServiceMonitor gives the exporter's series (or the backup alerts would not match), never
// overlap, outlive their own --timeout, and the snapshot job writes into the claim beside it.
func TestCronJobExamples(t *testing.T) {
	var k, baseK kustomization
	decode(t, filepath.Join("cronjobs", "kustomization.yaml"), &k)
	decode(t, "kustomization.yaml", &baseK)
	var sm serviceMonitor
	decode(t, "servicemonitor.yaml", &sm)
	clusterLabel := ""
	for _, r := range sm.Spec.Endpoints[0].Relabelings {
		if r.TargetLabel == "cluster" {
			clusterLabel = r.Replacement
		}
	}
	if k.Namespace != baseK.Namespace {
		t.Errorf("cronjobs namespace %q, the base's %q: the Pushgateway and the exporter are there", k.Namespace, baseK.Namespace)
	}
	var pvc persistentVolumeClaim
	decodeStrict(t, filepath.Join("cronjobs", "backup-pvc.yaml"), &pvc)
	if pvc.Kind != "PersistentVolumeClaim" || pvc.Spec.Resources.Requests["storage"] == "" || len(pvc.Spec.AccessModes) == 0 {
		t.Errorf("backup-pvc.yaml: %+v", pvc)
	}

	for _, c := range []struct {
		file    string
		command []string
		mounts  bool // writes into a claim through --dir
	}{
		{"snapshot-cronjob.yaml", []string{"snapshot", "save"}, true},
		{"defrag-cronjob.yaml", []string{"defrag"}, false},
	} {
		t.Run(c.file, func(t *testing.T) {
			var cj cronJob
			decodeStrict(t, filepath.Join("cronjobs", c.file), &cj)
			if cj.APIVersion != "batch/v1" || cj.Kind != "CronJob" {
				t.Fatalf("%s/%s, want batch/v1 CronJob", cj.APIVersion, cj.Kind)
			}
			if f := strings.Fields(cj.Spec.Schedule); len(f) != 5 {
				t.Errorf("schedule %q is not five cron fields", cj.Spec.Schedule)
			}
			// Two saves or two defrags at once would race (a second defrag breaks "one member at a time").
			if cj.Spec.ConcurrencyPolicy != "Forbid" {
				t.Errorf("concurrencyPolicy %q, want Forbid", cj.Spec.ConcurrencyPolicy)
			}
			job := cj.Spec.JobTemplate.Spec
			if job.BackoffLimit == nil {
				t.Error("no backoffLimit: Kubernetes would retry 6 times")
			}
			pod := job.Template.Spec
			// Never: each attempt is a pod that pushes its own outcome (OnFailure would restart in place).
			if pod.RestartPolicy != "Never" {
				t.Errorf("restartPolicy %q, want Never", pod.RestartPolicy)
			}
			if !pod.SecurityContext.RunAsNonRoot || pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
				t.Error("the pod runs as root or mounts a service account token it does not need")
			}
			if len(pod.Containers) != 1 {
				t.Fatalf("%d containers, want 1", len(pod.Containers))
			}
			ctr := pod.Containers[0]
			if len(k.Images) != 1 || k.Images[0].Name != ctr.Image || k.Images[0].NewTag == "" {
				t.Errorf("kustomization images %+v do not set the container's image %q", k.Images, ctr.Image)
			}
			if !ctr.SecurityContext.ReadOnlyRootFilesystem || !slices.Contains(ctr.SecurityContext.Capabilities.Drop, "ALL") {
				t.Error("the container's root file system is writable or it keeps capabilities")
			}
			if !slices.Equal(ctr.Args[:min(len(c.command), len(ctr.Args))], c.command) {
				t.Fatalf("args %q do not start with the command %q", ctr.Args, c.command)
			}
			flagArgs := ctr.Args[len(c.command):]
			assertCommandFlags(t, c.command, flagArgs)
			flags := map[string]string{}
			for _, a := range flagArgs {
				name, v, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
				flags[name] = v
			}
			if flags["cluster"] != clusterLabel || clusterLabel == "" {
				t.Errorf("--cluster=%q, but the ServiceMonitor labels the exporter's series cluster=%q", flags["cluster"], clusterLabel)
			}
			if flags["pushgateway.url"] == "" {
				t.Error("no --pushgateway.url: the outcome reaches no alert")
			}
			// The command's deadline must end it before Kubernetes kills it, so that it cleans up
			// and pushes its failure.
			if to, ok := flags["timeout"]; ok {
				d, err := time.ParseDuration(to)
				if err != nil {
					t.Fatalf("--timeout=%s: %v", to, err)
				}
				if time.Duration(job.ActiveDeadlineSeconds)*time.Second <= d {
					t.Errorf("activeDeadlineSeconds %d does not outlast --timeout=%s", job.ActiveDeadlineSeconds, to)
				}
			}
			if !c.mounts {
				return
			}
			dir := flags["dir"]
			mounted := false
			for _, vm := range ctr.VolumeMounts {
				if vm.MountPath != dir || vm.ReadOnly {
					continue
				}
				for _, v := range pod.Volumes {
					if v.Name == vm.Name && v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == pvc.Metadata.Name {
						mounted = true
					}
				}
			}
			if !mounted {
				t.Errorf("--dir=%s is not a writable mount of claim %s", dir, pvc.Metadata.Name)
			}
			if pod.SecurityContext.FSGroup == nil {
				t.Error("no fsGroup: the non-root container cannot write into a fresh claim")
			}
		})
	}
}

var commandFlags = map[string]map[string]bool{}

// assertCommandFlags: every argument is a --flag=value that `etcd-monitor <command>`, built from
// this checkout, accepts.
func assertCommandFlags(t *testing.T, command, args []string) {
	t.Helper()
	key := strings.Join(command, " ")
	known, ok := commandFlags[key]
	if !ok {
		known = cliflags.Built(t, filepath.Join("..", ".."), append(slices.Clone(command), "--help")...)
		commandFlags[key] = known
	}
	for _, a := range args {
		if !strings.HasPrefix(a, "--") || !strings.Contains(a, "=") {
			t.Errorf("argument %q is not a --flag=value", a)
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !known[name] {
			t.Errorf("etcd-monitor %s has no flag --%s", key, name)
		}
	}
}
