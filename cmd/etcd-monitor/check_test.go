package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
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
			if !m.Up || m.LinearizableMs == nil || m.RaftIndex == 0 || m.DBSizeBytes == 0 {
				t.Errorf("member %+v: want up with status and probe", m)
			}
			if m.IsLeader {
				leaders++
			}
		}
		if leaders != 1 {
			t.Errorf("%d members claim to lead, want 1", leaders)
		}
		text := captureStdout(t, func() { run([]string{"check", eps}) })
		if !strings.Contains(text, "NAME") || !strings.Contains(text, "HEALTHY") {
			t.Errorf("text output:\n%s", text)
		}
	})

	t.Run("one member down", func(t *testing.T) {
		c.Members[0].Stop()
		runCheckUntil(t, 1, eps)
		text := captureStdout(t, func() { run([]string{"check", eps}) })
		if !strings.Contains(text, "DEGRADED") || !strings.Contains(text, "member m0") {
			t.Errorf("text output:\n%s", text)
		}
	})

	t.Run("two members down", func(t *testing.T) {
		c.Members[1].Stop()
		runCheckUntil(t, 2, eps, "--timeout=2s")
	})
}

func TestCheckUnreachable(t *testing.T) {
	ep := fmt.Sprintf("--etcd.endpoints=127.0.0.1:%d", etcdtest.FreePort(t))
	start := time.Now()
	if got := run([]string{"check", ep, "--timeout=1s"}); got != 2 {
		t.Fatalf("check of an unreachable endpoint exited %d, want 2", got)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("check took %s with --timeout=1s", d)
	}
}

func TestCheckBadOutputExitsOne(t *testing.T) {
	if got := run([]string{"check", "--output=yaml"}); got != 1 {
		t.Fatalf("exit %d, want 1", got)
	}
}
