package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/internal/toolbin"
)

// outsideKeys returns every key outside prefix with its value and revisions, so that a rewrite
// with the same value still shows up as a change.
func outsideKeys(t *testing.T, c *clientv3.Client, prefix string) map[string]mvccpb.KeyValue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, "\x00", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]mvccpb.KeyValue{}
	for _, kv := range resp.Kvs {
		if strings.HasPrefix(string(kv.Key), prefix) {
			continue
		}
		out[string(kv.Key)] = mvccpb.KeyValue{
			Key: kv.Key, Value: kv.Value,
			CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version, Lease: kv.Lease,
		}
	}
	return out
}

// allKeys returns every key with its value and revisions.
func allKeys(t *testing.T, c *clientv3.Client) map[string]mvccpb.KeyValue {
	t.Helper()
	return outsideKeys(t, c, "\x00 no key starts so")
}

func prefixCount(t *testing.T, c *clientv3.Client, prefix string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

var removedRE = regexp.MustCompile(`Cleanup:\s+removed (\d+) keys under (\S+)`)

// The built binary, interrupted by a real signal (sent twice) in the middle of a long run, stops
// promptly, exits 1 (documented in docs/benchmark.md), says how many keys it removed from its own
// directory under the prefix, leaves that directory empty and every other key exactly as it was:
// the neighbours of the prefix, and a user's keys and another run's keys under the prefix itself.
func TestBenchmarkBinaryCleansUpOnSignal(t *testing.T) {
	bin := toolbin.Path(t, "etcd-monitor", "ETCD_MONITOR_BIN")
	cl := etcdtest.Start(t, 1, func(_ int, cfg *embed.Config) { cfg.UnsafeNoFsync = true })
	ep := cl.Endpoints()[0]
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	const prefix = "/bench-signal/"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Neighbours of the prefix (same leading bytes without the slash, the parent, a sibling), and
	// keys under it that the run did not create: a user's, one named as the run names its keys,
	// and another run's.
	for _, k := range []string{"/bench-signal", "/bench-signalx", "/bench-signal-other/k", "/app/config", "/a",
		prefix + "user/config", prefix + "key-000000001", prefix + "20200101T000000Z-0badcafe/key-000000001"} {
		if _, err := c.Put(ctx, k, "precious "+k); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"/app/config", prefix + "user/config"} { // version 2, mod != create
		if _, err := c.Put(ctx, k, "rewritten"); err != nil {
			t.Fatal(err)
		}
	}

	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			before := allKeys(t, c)
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(bin, "benchmark", "--etcd.endpoints="+ep, "--prefix="+prefix,
				"--workload=put", "--conns=2", "--clients=4", "--rate=300", "--duration=10m",
				"--key-space-size=100000", "--val-size=64")
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
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

			// Signal only once the run has really written keys.
			existing := prefixCount(t, c, prefix)
			deadline := time.Now().Add(30 * time.Second)
			for prefixCount(t, c, prefix) < existing+50 {
				select {
				case err := <-done:
					exited = true
					t.Fatalf("benchmark exited before the signal: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
				case <-time.After(50 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("the benchmark wrote fewer than 50 keys in 30 s\nstderr:\n%s", &stderr)
				}
			}

			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			// An impatient second signal must not cut the cleanup short.
			if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
				t.Fatal(err)
			}
			var werr error
			select {
			case werr = <-done:
				exited = true
			case <-time.After(20 * time.Second):
				t.Fatalf("still running 20 s after %s", sig)
			}
			var ee *exec.ExitError
			if !errors.As(werr, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("exit after %s: %v, want exit status 1\nstderr:\n%s", sig, werr, &stderr)
			}
			if msg := strings.TrimSpace(stderr.String()); !strings.Contains(msg, "interrupted after") {
				t.Errorf("stderr does not say the run was interrupted:\n%s", msg)
			}
			m := removedRE.FindStringSubmatch(stdout.String())
			if m == nil {
				t.Fatalf("report does not say how many keys were removed:\n%s", &stdout)
			}
			own := m[2]
			if id, ok := strings.CutPrefix(own, prefix); !ok || !strings.HasSuffix(id, "/") || strings.Count(id, "/") != 1 || len(id) < 2 {
				t.Fatalf("the run cleaned up %s, want a directory of its own directly below %s", own, prefix)
			}
			if !strings.Contains(stderr.String(), own) {
				t.Errorf("stderr does not name the run's directory %s before the run:\n%s", own, &stderr)
			}
			if n, _ := strconv.Atoi(m[1]); n < 50 {
				t.Errorf("report says %d keys removed, but at least 50 were written before the signal", n)
			}
			if n := prefixCount(t, c, own); n != 0 {
				t.Errorf("%d keys left under %s after %s", n, own, sig)
			}
			after := outsideKeys(t, c, own)
			if len(after) != len(before) {
				t.Errorf("%d keys outside the run's directory before, %d after", len(before), len(after))
			}
			for k, b := range before {
				a, ok := after[k]
				if !ok || !bytes.Equal(a.Value, b.Value) || a.CreateRevision != b.CreateRevision ||
					a.ModRevision != b.ModRevision || a.Version != b.Version || a.Lease != b.Lease {
					t.Errorf("key %q changed: before %+v, after %+v", k, b, a)
				}
			}
		})
	}
}

// --force once deleted every key under the prefix, the run's or not: with --prefix=/registry/
// that is a Kubernetes cluster. It is now accepted with a warning and changes nothing: the run
// deletes only its own directory.
func TestBenchmarkForceLeavesOthersKeys(t *testing.T) {
	bin := toolbin.Path(t, "etcd-monitor", "ETCD_MONITOR_BIN")
	cl := etcdtest.Start(t, 1, func(_ int, cfg *embed.Config) { cfg.UnsafeNoFsync = true })
	ep := cl.Endpoints()[0]
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const prefix = "/registry/"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, k := range []string{prefix + "pods/default/web-0", prefix + "key-000000001", prefix + "namespaces/default"} {
		if _, err := c.Put(ctx, k, "precious "+k); err != nil {
			t.Fatal(err)
		}
	}
	before := allKeys(t, c)

	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "benchmark", "--etcd.endpoints="+ep, "--prefix="+prefix, "--force",
		"--workload=put", "--total=100", "--key-space-size=10", "--sequential-keys")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("benchmark --force: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
	}
	if !strings.Contains(stderr.String(), "--force is deprecated") {
		t.Errorf("stderr does not say --force is deprecated:\n%s", &stderr)
	}
	m := removedRE.FindStringSubmatch(stdout.String())
	if m == nil || !strings.HasPrefix(m[2], prefix) || len(m[2]) <= len(prefix) || m[1] != "10" {
		t.Fatalf("report does not say it removed its 10 keys from a directory of its own under %s:\n%s", prefix, &stdout)
	}
	after := allKeys(t, c)
	if len(after) != len(before) {
		t.Errorf("%d keys before the run, %d after", len(before), len(after))
	}
	for k, b := range before {
		if a, ok := after[k]; !ok || !bytes.Equal(a.Value, b.Value) || a.ModRevision != b.ModRevision {
			t.Errorf("key %q changed: before %+v, after %+v (present %v)", k, b, a, ok)
		}
	}
}
