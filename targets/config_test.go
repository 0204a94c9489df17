package targets

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadValid(t *testing.T) {
	dir := t.TempDir()
	pw := writeFile(t, dir, "pw", "s3cret\n")
	path := writeFile(t, dir, "etcd-monitor.yml", `
clusters:
  - name: prod-a
    endpoints: [10.0.0.1:2379, "http://10.0.0.2:2379"]
    username: monitor
    password_file: `+pw+`
    probe_key: /health-probe
  - name: staging.b_1
    endpoints: ["[::1]:2379"]
`)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Clusters) != 2 || c.Clusters[0].Name != "prod-a" || c.Clusters[1].Name != "staging.b_1" {
		t.Fatalf("clusters: %+v", c.Clusters)
	}
	a := c.Clusters[0]
	if conn := a.Conn(); conn.Username != "monitor" || conn.PasswordFile != pw || len(conn.Endpoints) != 2 || a.probeKey() != "/health-probe" {
		t.Errorf("prod-a: %+v", conn)
	}
	if c.Clusters[1].probeKey() == "" {
		t.Error("no default probe key")
	}
}

// Every mistake is one line naming what is wrong, so that start-up can print it and exit 1.
func TestLoadRefuses(t *testing.T) {
	dir := t.TempDir()
	ca := writeFile(t, dir, "ca.pem", "not a certificate\n")
	for _, tc := range []struct{ name, content, want string }{
		{"empty", "", "no clusters"},
		{"no clusters", "clusters: []\n", "no clusters"},
		{"unknown top-level field", "clusters:\n  - name: a\n    endpoints: [127.0.0.1:2379]\nglobal: {}\n", "field global not found"},
		{"misspelt field", "clusters:\n  - name: a\n    endpoints: [127.0.0.1:2379]\n    username: u\n    pasword_file: /x\n", "field pasword_file not found"},
		{"unknown tls field", "clusters:\n  - name: a\n    endpoints: [127.0.0.1:2379]\n    tls: {ca: x}\n", "field ca not found"},
		{"duplicate name", "clusters:\n  - name: a\n    endpoints: [127.0.0.1:2379]\n  - name: a\n    endpoints: [127.0.0.1:2380]\n", `duplicate cluster name "a"`},
		{"no name", "clusters:\n  - endpoints: [127.0.0.1:2379]\n", `name ""`},
		{"name with a space", "clusters:\n  - name: a b\n    endpoints: [127.0.0.1:2379]\n", `name "a b"`},
		{"name with a quote", "clusters:\n  - name: 'a\"b'\n    endpoints: [127.0.0.1:2379]\n", "must be 1 to 63"},
		{"no endpoints", "clusters:\n  - name: a\n", `cluster "a": no endpoints`},
		{"bad endpoint", "clusters:\n  - name: a\n    endpoints: [\"127.0.0.1\"]\n", `invalid etcd endpoint "127.0.0.1"`},
		{"endpoint with a path", "clusters:\n  - name: a\n    endpoints: [\"http://127.0.0.1:2379/x\"]\n", "without path"},
		{"username without password", "clusters:\n  - name: a\n    endpoints: [127.0.0.1:2379]\n    username: u\n", "given together"},
		{"unreadable password file", "clusters:\n  - name: a\n    endpoints: [127.0.0.1:2379]\n    username: u\n    password_file: " + filepath.Join(dir, "missing") + "\n", "missing"},
		{"bad CA file", "clusters:\n  - name: a\n    endpoints: [127.0.0.1:2379]\n    tls: {ca_file: " + ca + "}\n", "no PEM certificate"},
		{"wrong type", "clusters:\n  - name: a\n    endpoints: 127.0.0.1:2379\n", "cannot unmarshal"},
		{"two documents", "clusters:\n  - name: a\n    endpoints: [127.0.0.1:2379]\n---\nclusters: []\n", "more than one YAML document"},
		{"not YAML", "clusters: [\n", "yaml:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeFile(t, dir, "c.yml", tc.content))
			if err == nil {
				t.Fatalf("loaded, want an error with %q", tc.want)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line with %q", msg, tc.want)
			}
		})
	}
	if _, err := Load(filepath.Join(dir, "nope.yml")); err == nil || !strings.Contains(err.Error(), "nope.yml") {
		t.Errorf("missing file: %v", err)
	}
}
