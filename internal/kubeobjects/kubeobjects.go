// Package kubeobjects decodes rendered Kubernetes manifests (kustomize build, helm template) into
// the upstream API types, strictly, so that tests of deploy/ cross-check what a cluster would get.
package kubeobjects

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Objects are the documents of one rendered stream, by kind, in their order.
type Objects struct {
	Deployments     []*appsv1.Deployment
	Services        []*corev1.Service
	Secrets         []*corev1.Secret
	ConfigMaps      []*corev1.ConfigMap
	Claims          []*corev1.PersistentVolumeClaim
	CronJobs        []*batchv1.CronJob
	ServiceMonitors []*monitoringv1.ServiceMonitor
	PrometheusRules []*monitoringv1.PrometheusRule
	ScrapeConfigs   []*ScrapeConfig
}

// ScrapeConfig is the part of prometheus-operator's monitoring.coreos.com/v1alpha1 ScrapeConfig
// that the manifests use, decoded as strictly as the upstream types (any other field is refused).
// Its upstream Go type imports k8s.io/apiextensions-apiserver, whose requirements would move
// go.etcd.io/raft past the version etcd 3.6.16, embedded by the unit tests, is built with.
type ScrapeConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		JobName        *string                 `json:"jobName,omitempty"`
		ScrapeInterval string                  `json:"scrapeInterval,omitempty"`
		ScrapeTimeout  string                  `json:"scrapeTimeout,omitempty"`
		BasicAuth      *monitoringv1.BasicAuth `json:"basicAuth,omitempty"`
		HTTPSDConfigs  []struct {
			URL             string                  `json:"url"`
			RefreshInterval string                  `json:"refreshInterval,omitempty"`
			BasicAuth       *monitoringv1.BasicAuth `json:"basicAuth,omitempty"`
		} `json:"httpSDConfigs,omitempty"`
	} `json:"spec"`
}

// separator is a YAML document marker line: `---` alone or followed by a space (a comment).
var separator = regexp.MustCompile(`(?m)^---(?:[ \t].*)?$`)

// Documents splits a YAML stream at its `---` lines and drops documents that hold only comments.
func Documents(stream []byte) [][]byte {
	var docs [][]byte
	for _, d := range separator.Split(string(stream), -1) {
		if hasContent([]byte(d)) {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func hasContent(doc []byte) bool {
	for _, line := range strings.Split(string(doc), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return true
		}
	}
	return false
}

// Decode reads every document of stream into its upstream type. A kind these types do not hold,
// a field the type does not have (a typo, a field at the wrong level, which the API server would
// drop or refuse) or a duplicate field is an error naming the document.
func Decode(stream []byte) (*Objects, error) {
	objs := &Objects{}
	for i, doc := range Documents(stream) {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		where := fmt.Sprintf("document %d (%s %s/%s)", i+1, head.APIVersion, head.Kind, head.Metadata.Name)
		if head.Metadata.Name == "" {
			return nil, fmt.Errorf("%s: no metadata.name", where)
		}
		var err error
		switch head.APIVersion + " " + head.Kind {
		case "apps/v1 Deployment":
			objs.Deployments, err = add(objs.Deployments, doc)
		case "v1 Service":
			objs.Services, err = add(objs.Services, doc)
		case "v1 Secret":
			objs.Secrets, err = add(objs.Secrets, doc)
		case "v1 ConfigMap":
			objs.ConfigMaps, err = add(objs.ConfigMaps, doc)
		case "v1 PersistentVolumeClaim":
			objs.Claims, err = add(objs.Claims, doc)
		case "batch/v1 CronJob":
			objs.CronJobs, err = add(objs.CronJobs, doc)
		case "monitoring.coreos.com/v1 ServiceMonitor":
			objs.ServiceMonitors, err = add(objs.ServiceMonitors, doc)
		case "monitoring.coreos.com/v1 PrometheusRule":
			objs.PrometheusRules, err = add(objs.PrometheusRules, doc)
		case "monitoring.coreos.com/v1alpha1 ScrapeConfig":
			objs.ScrapeConfigs, err = add(objs.ScrapeConfigs, doc)
		default:
			return nil, fmt.Errorf("%s: a kind this decoder does not know", where)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	}
	return objs, nil
}

func add[T any](list []*T, doc []byte) ([]*T, error) {
	v := new(T)
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		return list, err
	}
	return append(list, v), nil
}

// Count is the number of objects of every kind.
func (o *Objects) Count() int {
	return len(o.Deployments) + len(o.Services) + len(o.Secrets) + len(o.ConfigMaps) + len(o.Claims) +
		len(o.CronJobs) + len(o.ServiceMonitors) + len(o.PrometheusRules) + len(o.ScrapeConfigs)
}

// Run runs a rendering tool (kustomize, helm) in dir and returns its standard output; a failure
// fails the test with its standard error. Bounded: a hung tool fails after two minutes.
func Run(t testing.TB, dir, bin string, args ...string) []byte {
	t.Helper()
	out, stderr, err := RunErr(dir, bin, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr)
	}
	return out
}

// RunErr is Run for a command that is expected to fail: its output, standard error and error.
func RunErr(dir, bin string, args ...string) (stdout, stderr []byte, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.Bytes(), e.Bytes(), err
}

// MustDecode is Decode that fails the test, naming what was rendered.
func MustDecode(t testing.TB, what string, stream []byte) *Objects {
	t.Helper()
	o, err := Decode(stream)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if o.Count() == 0 {
		t.Fatalf("%s rendered no object", what)
	}
	return o
}
