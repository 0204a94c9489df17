package kubernetes

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/internal/cliflags"
	"github.com/etcd-monitor/etcd-monitor/internal/kubeobjects"
)

// TestCronJobExamples: the snapshot and defrag CronJobs run the commands they name with flags
// those commands accept (checked against the built binary), push under the cluster name the
// ServiceMonitor gives the exporter's series (or the backup alerts would not match), never
// overlap, outlive their own --timeout, and the snapshot job writes into the claim beside it.
func TestCronJobExamples(t *testing.T) {
	o := build(t, "cronjobs")
	base := build(t, "base")
	clusterLabel := ""
	for _, r := range base.ServiceMonitors[0].Spec.Endpoints[0].RelabelConfigs {
		if r.TargetLabel == "cluster" && r.Replacement != nil {
			clusterLabel = *r.Replacement
		}
	}
	if len(o.Claims) != 1 {
		t.Fatalf("%d PersistentVolumeClaims, want 1", len(o.Claims))
	}
	pvc := o.Claims[0]
	if pvc.Spec.Resources.Requests.Storage().IsZero() || len(pvc.Spec.AccessModes) == 0 {
		t.Errorf("claim %s: no size or access mode", pvc.Name)
	}
	if pvc.Namespace != base.Deployments[0].Namespace {
		t.Errorf("cronjobs namespace %q, the base's %q: the Pushgateway and the exporter are there", pvc.Namespace, base.Deployments[0].Namespace)
	}
	commands := map[string][]string{"etcd-snapshot": {"snapshot", "save"}, "etcd-defrag": {"defrag"}}
	if len(o.CronJobs) != len(commands) {
		t.Fatalf("%d CronJobs, want %d", len(o.CronJobs), len(commands))
	}
	for _, cj := range o.CronJobs {
		t.Run(cj.Name, func(t *testing.T) {
			command, ok := commands[cj.Name]
			if !ok {
				t.Fatalf("unexpected CronJob %s", cj.Name)
			}
			if cj.Namespace != pvc.Namespace {
				t.Errorf("namespace %q, the claim's %q", cj.Namespace, pvc.Namespace)
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
			kubeobjects.CheckPod(t, &pod, o)
			if len(pod.Containers) != 1 {
				t.Fatalf("%d containers, want 1", len(pod.Containers))
			}
			ctr := pod.Containers[0]
			if !strings.HasPrefix(ctr.Image, "etcd-monitor:") || strings.HasSuffix(ctr.Image, ":latest") {
				t.Errorf("image %q, want etcd-monitor:<version> (kustomization images)", ctr.Image)
			}
			if !slices.Equal(ctr.Args[:min(len(command), len(ctr.Args))], command) {
				t.Fatalf("args %q do not start with the command %q", ctr.Args, command)
			}
			flagArgs := ctr.Args[len(command):]
			kubeobjects.AssertFlags(t, "etcd-monitor "+strings.Join(command, " "), flagArgs, commandFlags(t, command))
			flags := kubeobjects.Args(flagArgs)
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
				if job.ActiveDeadlineSeconds == nil || time.Duration(*job.ActiveDeadlineSeconds)*time.Second <= d {
					t.Errorf("activeDeadlineSeconds %v does not outlast --timeout=%s", job.ActiveDeadlineSeconds, to)
				}
			}
			dir, writes := flags["dir"]
			if !writes {
				return
			}
			mounted := false
			for _, vm := range ctr.VolumeMounts {
				if vm.MountPath != dir || vm.ReadOnly {
					continue
				}
				for _, v := range pod.Volumes {
					if v.Name == vm.Name && v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == pvc.Name {
						mounted = true
					}
				}
			}
			if !mounted {
				t.Errorf("--dir=%s is not a writable mount of claim %s", dir, pvc.Name)
			}
			if pod.SecurityContext.FSGroup == nil {
				t.Error("no fsGroup: the non-root container cannot write into a fresh claim")
			}
		})
	}
}

var commandFlagCache = map[string]map[string]bool{}

// commandFlags are the flags `etcd-monitor <command>`, built from this checkout, accepts.
func commandFlags(t *testing.T, command []string) map[string]bool {
	t.Helper()
	key := strings.Join(command, " ")
	known, ok := commandFlagCache[key]
	if !ok {
		known = cliflags.Built(t, filepath.Join("..", ".."), append(slices.Clone(command), "--help")...)
		commandFlagCache[key] = known
	}
	return known
}
