// Package cliflags lists the flags a freshly built etcd-monitor accepts, so that tests of files
// that pass flags to it (compose, Kubernetes manifests) fail when a flag is renamed or removed.
package cliflags

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

var flagLine = regexp.MustCompile(`(?m)^\s+(?:-\w, )?--(?:\[no-\])?([a-z0-9][a-z0-9.-]*)`)

// Built builds ./cmd/etcd-monitor from the checkout at root and returns the flags its help text
// (run with helpArgs, e.g. "--help-long" or "exporter", "--help") lists, by name without dashes.
func Built(t testing.TB, root string, helpArgs ...string) map[string]bool {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "etcd-monitor")
	build := exec.Command("go", "build", "-o", bin, "./cmd/etcd-monitor")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/etcd-monitor: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, helpArgs...).CombinedOutput()
	if err != nil {
		t.Fatalf("etcd-monitor %v: %v\n%s", helpArgs, err, out)
	}
	flags := map[string]bool{}
	for _, m := range flagLine.FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	// Flags every command has: finding none means the help format changed, not the flags.
	for _, f := range []string{"etcd.endpoints", "etcd.tls.ca-file"} {
		if !flags[f] {
			t.Fatalf("parsing etcd-monitor %v found no --%s; the parser is wrong:\n%s", helpArgs, f, out)
		}
	}
	return flags
}
