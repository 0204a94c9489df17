// Package toolbin finds the reference binaries that `make tools` builds into <repo>/bin, for tests.
package toolbin

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Path returns the binary named by the environment variable env, else <repo>/bin/<name>. Without
// it the test skips, unless ETCD_MONITOR_REQUIRE_TOOLS=1 (set by `make test`), where it fails.
func Path(t testing.TB, name, env string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		_, file, _, _ := runtime.Caller(0)
		p = filepath.Join(filepath.Dir(file), "..", "..", "bin", name)
	}
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	if fi, err := os.Stat(p); err != nil || fi.IsDir() {
		if os.Getenv("ETCD_MONITOR_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%s not found at %s (run `make tools` or set %s)", name, p, env)
		}
		t.Skipf("%s not found at %s (run `make tools` or set %s)", name, p, env)
	}
	return p
}
