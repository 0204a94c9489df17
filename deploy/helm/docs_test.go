package helm

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/etcd-monitor/etcd-monitor/internal/kubeobjects"
	"github.com/etcd-monitor/etcd-monitor/internal/toolbin"
)

// shCommands are the commands of the ```sh blocks of a Markdown file, continuation lines joined
// and comments dropped.
func shCommands(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllSubmatch(b, -1) {
		joined := strings.ReplaceAll(string(m[1]), "\\\n", " ")
		for _, line := range strings.Split(joined, "\n") {
			if i := strings.Index(line, "#"); i >= 0 {
				line = line[:i]
			}
			if line = strings.Join(strings.Fields(line), " "); line != "" {
				cmds = append(cmds, line)
			}
		}
	}
	return cmds
}

// TestDocumentedCommands: every helm install, helm upgrade and kubectl apply -k that README's
// Kubernetes section and docs/kubernetes.md show renders, run from the repository's root as
// `helm template` (same release, chart and flags; --reuse-values, which needs a release, dropped)
// or `kustomize build` of the same directory, and its output decodes strictly. The README's
// section must show helm install first. kubectl create secret needs a cluster and is checked
// against the chart's Secret keys by TestKubeadmPreset and the kustomize tests instead.
func TestDocumentedCommands(t *testing.T) {
	root := filepath.Join("..", "..")
	readme := shCommands(t, filepath.Join(root, "README.md"))
	var k8s []string
	for _, c := range readme {
		if strings.HasPrefix(c, "helm ") || strings.HasPrefix(c, "kubectl ") {
			k8s = append(k8s, c)
		}
	}
	if len(k8s) == 0 || !strings.HasPrefix(k8s[0], "helm install ") {
		t.Fatalf("README's Kubernetes commands %q do not start with helm install", k8s)
	}
	cmds := append(k8s, shCommands(t, filepath.Join(root, "docs", "kubernetes.md"))...)
	ran := 0
	for _, c := range cmds {
		f := strings.Fields(c)
		var bin string
		var args []string
		switch {
		case len(f) > 3 && f[0] == "helm" && (f[1] == "install" || f[1] == "upgrade"):
			bin = toolbin.Path(t, "helm", "HELM_BIN")
			args = []string{"template"}
			for _, a := range f[2:] {
				if a != "--reuse-values" {
					args = append(args, a)
				}
			}
		case len(f) == 4 && f[0] == "kubectl" && f[1] == "apply" && f[2] == "-k":
			bin = toolbin.Path(t, "kustomize", "KUSTOMIZE_BIN")
			args = []string{"build", f[3]}
		case len(f) > 4 && f[0] == "kubectl" && f[3] == "create" && f[4] == "secret":
			continue
		case f[0] == "helm" || f[0] == "kubectl":
			t.Errorf("documented command %q is one this test cannot run", c)
			continue
		default:
			continue
		}
		t.Run(c, func(t *testing.T) {
			out := kubeobjects.Run(t, root, bin, args...)
			kubeobjects.MustDecode(t, c, out)
		})
		ran++
	}
	if ran < 5 {
		t.Errorf("ran %d documented commands; the parser found too few", ran)
	}
}
