package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// runCheckUntil runs check until it exits with want (an election after a member stops takes a
// moment), and fails the test if it never does within the bound.
func runCheckUntil(t *testing.T, want int, args ...string) {
	t.Helper()
	args = append([]string{"check"}, args...)
	deadline := time.Now().Add(20 * time.Second)
	var got int
	for {
		if got = run(args); got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("run(%q) = %d, want %d", args, got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// captureStdout runs f with os.Stdout sent to a file and returns what was written.
func captureStdout(t *testing.T, f func()) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stdout")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = out
	defer func() { os.Stdout = old }()
	f()
	out.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCheckExitCodes(t *testing.T) {
	c := etcdtest.Start(t, 3)
	eps := "--etcd.endpoints=" + strings.Join(c.Endpoints(), ",")

	t.Run("healthy", func(t *testing.T) {
		runCheckUntil(t, 0, eps)
		var code int
		out := captureStdout(t, func() { code = run([]string{"check", eps, "--output=json"}) })
		if code != 0 {
			t.Fatalf("json check exited %d, want 0", code)
		}
		var rep checkReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("json output: %v\n%s", err, out)
		}
		if rep.Verdict != "healthy" || len(rep.Members) != 3 || len(rep.Reasons) != 0 {
			t.Fatalf("report = %+v", rep)
		}
		leaders := 0
		for _, m := range rep.Members {
			read := false
			for _, p := range m.Probes {
				read = read || (p.Kind == snapshot.ProbeReadLinearizable && p.Success && p.DurationSeconds != nil)
			}
			if !m.Up || m.Status == nil || !read || m.Status.RaftIndex == 0 || m.Status.DBSizeBytes == 0 {
				t.Errorf("member %+v: want up with status and probe", m)
				continue
			}
			if m.Status.IsLeader {
				leaders++
			}
		}
		if leaders != 1 {
			t.Errorf("%d members claim to lead, want 1", leaders)
		}
		text := captureStdout(t, func() { run([]string{"check", eps}) })
		status := statusLineOf(t, text)
		if !strings.HasPrefix(status.text, "ETCD HEALTHY - 3 of 3 members up, leader m") {
			t.Errorf("status line %q", status.text)
		}
		for label, want := range map[string]string{
			"members": "3;;;0", "members_up": "3;3:;;0;3", "voting_members_up": "3;3:;2:;0;3",
			"quorum": "2;;;0;3", "leaders": "1;~:1;1:;0", "alarms": "0;0;;0", "learners": "0;;;0",
		} {
			if got := status.perf[label]; got != want {
				t.Errorf("perfdata %s=%q, want %q (status line %q)", label, got, want, status.line)
			}
		}
		for _, m := range []string{"m0", "m1", "m2"} {
			if v := status.perf["'"+m+" db_size'"]; !strings.HasSuffix(strings.SplitN(v, ";", 2)[0], "B") {
				t.Errorf("perfdata of %s's db size: %q", m, v)
			}
			if v := status.perf["'"+m+" read_linearizable'"]; !strings.HasSuffix(strings.SplitN(v, ";", 2)[0], "s") {
				t.Errorf("perfdata of %s's read: %q", m, v)
			}
		}
		if !strings.HasPrefix(status.rest, "NAME ") {
			t.Errorf("the table does not follow the status line:\n%s", text)
		}
		// DB sizes as go-humanize writes binary units ("20 KiB"; sizes may grow between two runs,
		// so the format is checked, not the figure).
		if rows := dbSizePattern.FindAllString(status.rest, -1); len(rows) != 3 {
			t.Errorf("%d DB sizes in go-humanize's form, want 3:\n%s", len(rows), status.rest)
		}
	})

	t.Run("one member down", func(t *testing.T) {
		c.Members[0].Stop()
		runCheckUntil(t, 1, eps)
		text := captureStdout(t, func() { run([]string{"check", eps}) })
		t.Logf("check with m0 stopped:\n%s", text)
		status := statusLineOf(t, text)
		if !strings.HasPrefix(status.text, "ETCD DEGRADED - member m0 (") || !strings.Contains(status.text, ") down") {
			t.Errorf("status line %q", status.text)
		}
		if status.perf["members_up"] != "2;3:;;0;3" || status.perf["voting_members_up"] != "2;3:;2:;0;3" || status.perf["'m0 db_size'"] != "U" {
			t.Errorf("perfdata of the status line %q", status.line)
		}
		if !strings.HasPrefix(status.rest, "NAME ") || !strings.Contains(status.rest, "\nm0 ") {
			t.Errorf("the table does not follow the status line:\n%s", text)
		}
	})

	t.Run("two members down", func(t *testing.T) {
		c.Members[1].Stop()
		runCheckUntil(t, 2, eps, "--timeout=2s")
		status := statusLineOf(t, captureStdout(t, func() { run([]string{"check", eps, "--timeout=2s"}) }))
		if !strings.HasPrefix(status.text, "ETCD CRITICAL - no quorum") || status.perf["voting_members_up"] != "1;3:;2:;0;3" {
			t.Errorf("status line %q", status.line)
		}
	})
}

func TestCheckUnreachable(t *testing.T) {
	ep := fmt.Sprintf("--etcd.endpoints=127.0.0.1:%d", etcdtest.FreePort(t))
	start := time.Now()
	var got int
	out := captureStdout(t, func() { got = run([]string{"check", ep, "--timeout=1s"}) })
	if got != 2 {
		t.Fatalf("check of an unreachable endpoint exited %d, want 2", got)
	}
	if status := statusLineOf(t, out); !strings.HasPrefix(status.text, "ETCD CRITICAL - etcd unreachable") || status.perf["members_up"] != "0;;;0" {
		t.Errorf("status line %q", status.line)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("check took %s with --timeout=1s", d)
	}
}

// Usage and configuration errors are UNKNOWN (exit 3) with the reason as the status line, as the
// monitoring-plugins guidelines want; other commands keep exit 1 (TestBadInputExitsOne).
func TestCheckUsageErrorsExitThree(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for name, args := range map[string][]string{
		"bad output":         {"--output=yaml"},
		"unknown flag":       {"--no-such-flag"},
		"bad duration":       {"--timeout=soon"},
		"zero timeout":       {"--timeout=0s"},
		"bad scheme":         {"--etcd.endpoints=ftp://127.0.0.1:2379"},
		"no port":            {"--etcd.endpoints=127.0.0.1"},
		"unreadable CA":      {"--etcd.tls.ca-file=" + missing},
		"missing password":   {"--etcd.username=u", "--etcd.password-file=" + missing},
		"bad app-level flag": {"--log.level=loud"},
		"json, bad endpoint": {"--output=json", "--etcd.endpoints=127.0.0.1"},
	} {
		t.Run(name, func(t *testing.T) {
			var got int
			out := captureStdout(t, func() { got = run(append([]string{"check"}, args...)) })
			if got != 3 {
				t.Errorf("exit %d, want 3", got)
			}
			if slices.Contains(args, "--output=json") {
				var rep struct {
					Verdict  string   `json:"verdict"`
					ExitCode int      `json:"exit_code"`
					Reasons  []string `json:"reasons"`
				}
				if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Verdict != "unknown" || rep.ExitCode != 3 || len(rep.Reasons) != 1 {
					t.Errorf("json output %q: %v", out, err)
				}
				return
			}
			if lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "ETCD UNKNOWN - ") {
				t.Errorf("output %q, want one ETCD UNKNOWN line", out)
			}
		})
	}
}

var dbSizePattern = regexp.MustCompile(`  [0-9]+(?:\.[0-9])? (?:B|KiB|MiB|GiB|TiB)  `)

// statusLine is the first line of check's text output, split as Nagios and Icinga split it.
type statusLine struct {
	line, text string
	perf       map[string]string // label (quoted when it is) -> value[UOM];warn;crit;min;max
	rest       string            // the lines after it
}

// perfPattern is one performance datum of the monitoring-plugins guidelines.
var perfPattern = regexp.MustCompile(`^('[^'=]+'|[^'= ]+)=((?:-?[0-9]+(?:\.[0-9]+)?(?:s|%|B|KB|MB|TB|c)?|U)(?:;[^; ]*){0,4})$`)

func statusLineOf(t *testing.T, out string) statusLine {
	t.Helper()
	line, rest, _ := strings.Cut(out, "\n")
	text, perf, ok := strings.Cut(line, " | ")
	if !ok || strings.Contains(text, "|") {
		t.Fatalf("status line %q: want one ' | ' before the performance data", line)
	}
	s := statusLine{line: line, text: text, perf: map[string]string{}, rest: rest}
	// Quoted labels hold spaces: split on the spaces outside quotes.
	var fields []string
	quoted, start := false, 0
	for i, r := range perf {
		switch {
		case r == '\'':
			quoted = !quoted
		case r == ' ' && !quoted:
			fields = append(fields, perf[start:i])
			start = i + 1
		}
	}
	fields = append(fields, perf[start:])
	for _, f := range fields {
		m := perfPattern.FindStringSubmatch(f)
		if m == nil {
			t.Fatalf("performance datum %q of %q does not follow the guidelines", f, line)
		}
		s.perf[m[1]] = m[2]
	}
	return s
}
