package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/defrag"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/internal/pushgwtest"
	"github.com/etcd-monitor/etcd-monitor/internal/toolbin"
)

func TestDefragCommand(t *testing.T) {
	c := etcdtest.Start(t, 3)
	eps := "--etcd.endpoints=" + strings.Join(c.Endpoints(), ",")
	// Thresholds every member meets, so that the whole path runs on a small test cluster.
	all := []string{"--rule.min-free-ratio=0", "--rule.min-free-bytes=0", "--member-timeout=30s"}

	t.Run("dry run json", func(t *testing.T) {
		var code int
		out := captureStdout(t, func() { code = run(append([]string{"defrag", eps, "--dry-run", "--output=json"}, all...)) })
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, out)
		}
		var rep defrag.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("json: %v\n%s", err, out)
		}
		if !rep.DryRun || !rep.Success || len(rep.Members) != 3 {
			t.Fatalf("report: %+v", rep)
		}
		for i, m := range rep.Members {
			if m.Order != i+1 || m.State != defrag.StatePlanned || m.Leader != (i == 2) || m.Before.DBSize == 0 {
				t.Errorf("member %d: %+v; want planned in order, the leader last", i, m)
			}
		}
	})

	t.Run("run text", func(t *testing.T) {
		var code int
		out := captureStdout(t, func() { code = run(append([]string{"defrag", eps}, all...)) })
		if code != 0 || !strings.Contains(out, "OK: 3 member(s) defragmented") {
			t.Fatalf("exit %d\n%s", code, out)
		}
	})

	t.Run("nothing needed", func(t *testing.T) {
		var code int
		out := captureStdout(t, func() { code = run([]string{"defrag", eps}) })
		if code != 0 || !strings.Contains(out, "OK: 0 member(s) defragmented") || !strings.Contains(out, "not needed") {
			t.Fatalf("exit %d\n%s", code, out)
		}
	})

	t.Run("a member down stops the run with exit 1", func(t *testing.T) {
		c.Members[1].Stop()
		defer c.Members[1].Restart(t)
		var code int
		out := captureStdout(t, func() { code = run(append([]string{"defrag", eps, "--member-timeout=1s"}, all[:2]...)) })
		if code != 1 || !strings.Contains(out, "FAILED after 0 of 2 member(s)") {
			t.Fatalf("exit %d, want 1\n%s", code, out)
		}
	})
}

func TestDefragCommandBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"defrag", "--rule.quota-ratio=2"},
		{"defrag", "--rule.min-free-bytes=lots"},
		{"defrag", "--quota-bytes=-1"},
		{"defrag", "--member-timeout=0s"},
		{"defrag", "--pushgateway.url=http://127.0.0.1:9091"},
		{"defrag", "--pushgateway.url=:9091", "--cluster=a"},
		{"defrag", "--etcd.endpoints=127.0.0.1:1", "--member-timeout=1s"},
	} {
		if code := run(args); code != 1 {
			t.Errorf("run(%q) = %d, want 1", args, code)
		}
	}
}

// TestDefragCommandPushes runs the command against a real Pushgateway.
func TestDefragCommandPushes(t *testing.T) {
	pg := pushgwtest.Start(t)
	c := etcdtest.Start(t, 1)
	code := run([]string{"defrag", "--etcd.endpoints=" + c.Members[0].ClientURL, "--rule.min-free-ratio=0", "--rule.min-free-bytes=0",
		"--pushgateway.url=" + pg, "--cluster=test"})
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	body := pushgwtest.Metrics(t, pg)
	for _, want := range []string{
		`etcd_defrag_members_defragmented{cluster="test",instance="",job="etcd_defrag"} 1`,
		`etcd_defrag_last_success_timestamp_seconds{cluster="test",instance="",job="etcd_defrag"}`,
		`etcd_defrag_member_db_size_after_bytes{cluster="test",instance="",job="etcd_defrag",member="m0"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("Pushgateway lacks %s", want)
		}
	}
}

// The built binary, interrupted while it waits for a down member, stops at once with exit 1,
// prints how far it got, and still pushes the failure.
func TestDefragBinaryStopsOnSignal(t *testing.T) {
	bin := toolbin.Path(t, "etcd-monitor", "ETCD_MONITOR_BIN")
	pg := pushgwtest.Start(t)
	c := etcdtest.Start(t, 3)
	eps := strings.Join(c.Endpoints(), ",")
	c.Members[2].Stop()

	var stdout bytes.Buffer
	stderr := &lockedWriter{}
	cmd := exec.Command(bin, "defrag", "--etcd.endpoints="+eps, "--rule.min-free-ratio=0", "--rule.min-free-bytes=0",
		"--member-timeout=10m", "--pushgateway.url="+pg, "--cluster=sig")
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	exited := false
	t.Cleanup(func() {
		if !exited {
			_ = cmd.Process.Kill()
			<-done
		}
	})
	waiting := func() bool {
		return strings.Contains(stderr.String(), "waiting for the cluster")
	}
	for attempt := 0; !waiting(); attempt++ {
		select {
		case err := <-done:
			exited = true
			t.Fatalf("exited before the signal: %v\n%s", err, stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if attempt >= 600 {
			t.Fatalf("never said it waits for the cluster:\n%s", stderr.String())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var werr error
	select {
	case werr = <-done:
		exited = true
	case <-time.After(20 * time.Second):
		t.Fatal("still running 20 s after SIGINT")
	}
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v, want 1", werr)
	}
	if out := stdout.String(); !strings.Contains(out, "FAILED after 0 of 2 member(s)") || !strings.Contains(out, "context canceled") {
		t.Errorf("report:\n%s", out)
	}
	if body := pushgwtest.Metrics(t, pg); !strings.Contains(body, `etcd_defrag_last_failure_timestamp_seconds{cluster="sig"`) {
		t.Errorf("the interrupted run's failure was not pushed")
	}
}

// lockedWriter lets the test read what the child process wrote so far.
type lockedWriter struct {
	mu sync.Mutex
	w  bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}
