package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

// check --config.file judges every cluster of the file (or those --cluster names) and exits with
// the worst verdict's code.
func TestCheckFleet(t *testing.T) {
	c := etcdtest.Start(t, 1)
	path := filepath.Join(t.TempDir(), "fleet.yml")
	fleetFile(t, path, "good="+c.Endpoints()[0], "broken="+closedPort(t), "also-good="+c.Endpoints()[0])
	cf := "--config.file=" + path

	var code int
	out := captureStdout(t, func() { code = run([]string{"check", cf, "--timeout=3s"}) })
	if code != 2 {
		t.Errorf("exit %d, want 2 (broken is unreachable)\n%s", code, out)
	}
	first, _, _ := strings.Cut(out, "\n")
	if !strings.HasPrefix(first, "ETCD CRITICAL - broken critical: etcd unreachable") || !strings.Contains(first, "2 of 3 clusters healthy | clusters=3;;;0 healthy=2;;;0;3 degraded=0;0;;0 critical=1;;0;0") {
		t.Errorf("status line: %s", first)
	}
	for _, want := range []string{"\n[good] ETCD HEALTHY - 1 of 1 members up", "\n[also-good] ETCD HEALTHY", "\n[broken] ETCD CRITICAL - etcd unreachable", "\ngood       healthy   1/1"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}

	out = captureStdout(t, func() { code = run([]string{"check", cf, "--cluster=good", "--cluster=also-good", "--output=json"}) })
	var rep struct {
		Verdict  string `json:"verdict"`
		ExitCode int    `json:"exit_code"`
		Clusters []struct {
			Name    string            `json:"name"`
			Verdict string            `json:"verdict"`
			Members []json.RawMessage `json:"members"`
		} `json:"clusters"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Verdict != "healthy" || len(rep.Clusters) != 2 ||
		rep.Clusters[0].Name != "also-good" || rep.Clusters[1].Name != "good" || len(rep.Clusters[1].Members) != 1 {
		t.Errorf("--cluster good --cluster also-good: exit %d\n%s", code, out)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{cf, "--cluster=nope"}, `ETCD UNKNOWN - --cluster "nope": not in`},
		{[]string{cf, "--etcd.endpoints=127.0.0.1:2379"}, "ETCD UNKNOWN - --etcd.endpoints cannot be used with --config.file"},
		{[]string{"--cluster=good"}, "ETCD UNKNOWN - --cluster needs --config.file"},
		{[]string{"--config.file=" + filepath.Join(t.TempDir(), "missing.yml")}, "ETCD UNKNOWN - reading config file"},
	} {
		out := captureStdout(t, func() { code = run(append([]string{"check"}, tc.args...)) })
		if code != 3 || !strings.HasPrefix(out, tc.want) {
			t.Errorf("check %q: exit %d %q, want 3 and %q", tc.args, code, out, tc.want)
		}
	}
}
