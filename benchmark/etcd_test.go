package benchmark

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

// startEtcd runs a one-member etcd in-process on free loopback ports and returns its host:port.
func startEtcd(t testing.TB, adjust func(*embed.Config)) string {
	t.Helper()
	c := etcdtest.Start(t, 1, func(_ int, cfg *embed.Config) {
		// Tests measure behaviour, not disks: skip fsync so that they are fast on any machine.
		cfg.UnsafeNoFsync = true
		if adjust != nil {
			adjust(cfg)
		}
	})
	return strings.TrimPrefix(c.Members[0].ClientURL, "http://")
}

func dialer(ep string) func(int) (*clientv3.Client, error) {
	return func(int) (*clientv3.Client, error) {
		return etcdconn.New(etcdconn.Config{Endpoints: []string{ep}}, 5*time.Second)
	}
}

// newClient returns a client for the test's own reads and writes.
func newClient(t testing.TB, ep string) *clientv3.Client {
	t.Helper()
	c, err := dialer(ep)(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustPut(t testing.TB, c *clientv3.Client, k, v string) {
	t.Helper()
	if _, err := c.Put(ctxT(t), k, v); err != nil {
		t.Fatalf("put %s: %v", k, err)
	}
}

// count returns the number of keys under a prefix.
func count(t testing.TB, c *clientv3.Client, prefix string) int64 {
	t.Helper()
	resp, err := c.Get(ctxT(t), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// snapshotOutside returns every key and value outside the benchmark prefix.
func snapshotOutside(t testing.TB, c *clientv3.Client, prefix string) map[string]string {
	t.Helper()
	resp, err := c.Get(ctxT(t), "", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			continue
		}
		out[k] = string(kv.Value)
	}
	return out
}
