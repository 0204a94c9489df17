package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

// A bad config file is one line on stderr and exit 1 at start.
func TestConfigFileBadInputExitsOne(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yml", "clusters:\n  - name: a\n    endpoints: [127.0.0.1:2379]\n")
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"missing file":                     {[]string{"--config.file=" + filepath.Join(dir, "nope.yml")}, "nope.yml"},
		"unknown field":                    {[]string{"--config.file=" + write("u.yml", "clusters:\n  - name: a\n    endpoints: [127.0.0.1:2379]\n    probekey: x\n")}, "field probekey not found"},
		"duplicate name":                   {[]string{"--config.file=" + write("d.yml", "clusters:\n  - name: a\n    endpoints: [127.0.0.1:2379]\n  - name: a\n    endpoints: [127.0.0.1:2379]\n")}, `duplicate cluster name "a"`},
		"bad endpoint":                     {[]string{"--config.file=" + write("e.yml", "clusters:\n  - name: a\n    endpoints: [\"ftp://127.0.0.1:2379\"]\n")}, "scheme must be http or https"},
		"unreadable password file":         {[]string{"--config.file=" + write("p.yml", "clusters:\n  - name: a\n    endpoints: [127.0.0.1:2379]\n    username: u\n    password_file: "+filepath.Join(dir, "nopw")+"\n")}, "nopw"},
		"with --etcd.endpoints":            {[]string{"--config.file=" + good, "--etcd.endpoints=127.0.0.1:2379"}, "--etcd.endpoints cannot be used with --config.file"},
		"with --probe.key":                 {[]string{"--config.file=" + good, "--probe.key=x"}, "--probe.key cannot be used with --config.file"},
		"telemetry path /probe":            {[]string{"--config.file=" + good, "--web.telemetry-path=/probe"}, "/probe"},
		"with --certificates.peer-ca-file": {[]string{"--config.file=" + good, "--certificates.peer-ca-file=" + good}, "--certificates.peer-ca-file cannot be used with --config.file"},
		"lifecycle without file":           {[]string{"--web.enable-lifecycle"}, "--web.enable-lifecycle needs --config.file"},
	} {
		t.Run(name, func(t *testing.T) {
			code, stdout, stderr := runBinary(t, tc.args...)
			if code != 1 || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit %d, stderr %q (stdout %q): want exit 1 and one line with %q", code, stderr, stdout, tc.want)
			}
		})
	}
}

// waitBody polls path (at most 10 s) until its body satisfies cond.
func (p *exporterProcess) waitBody(t *testing.T, path string, cond func(code int, body string) bool) string {
	t.Helper()
	var body string
	for i := 0; i < 200; i++ {
		var code int
		code, body, _ = p.get(t, path, 5*time.Second)
		if cond(code, body) {
			return body
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never as expected; last answer:\n%s\n%s", path, body, p.output)
	return ""
}

// SIGHUP reloads the file: an added cluster is probed, a removed one is refused, a bad file keeps
// the running configuration and sets the reload metric to 0.
func TestSIGHUPReloads(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ep := c.Endpoints()[0]
	path := filepath.Join(t.TempDir(), "fleet.yml")
	fleetFile(t, path, "a="+ep)
	p := startExporter(t, "--config.file="+path)
	if code, body, err := p.get(t, "/probe?cluster=a", 10*time.Second); code != 200 || !strings.Contains(body, "\netcd_monitor_up 1\n") {
		t.Fatalf("probe a: %d %v\n%s", code, err, body)
	}

	fleetFile(t, path, "b="+ep)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitBody(t, "/sd", func(_ int, body string) bool { return strings.Contains(body, `"cluster":"b"`) })
	if code, body, _ := p.get(t, "/probe?cluster=b", 10*time.Second); code != 200 || !strings.Contains(body, "\netcd_monitor_up 1\n") {
		t.Errorf("probe b after SIGHUP: %d\n%s", code, body)
	}
	if code, _, _ := p.get(t, "/probe?cluster=a", 10*time.Second); code != 400 {
		t.Errorf("probe a, removed: %d, want 400", code)
	}

	if err := os.WriteFile(path, []byte("clusters: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitBody(t, "/metrics", func(_ int, body string) bool {
		return strings.Contains(body, "\netcd_monitor_config_last_reload_successful 0\n")
	})
	if code, _, _ := p.get(t, "/probe?cluster=b", 10*time.Second); code != 200 {
		t.Errorf("probe b after a bad reload: %d", code)
	}
	if !strings.Contains(p.output.String(), "reloading the configuration failed") {
		t.Errorf("the failed reload is not logged:\n%s", p.output)
	}
	if code := p.signalAndWait(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM\n%s", code, p.output)
	}
}
