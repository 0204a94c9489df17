package benchmark

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
)

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startEtcd runs a one-member etcd in-process on free loopback ports, with its data in a temp dir.
func startEtcd(t testing.TB, adjust func(*embed.Config)) string {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "bench"
	cfg.Dir = t.TempDir()
	client, err := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	peer, err := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// Tests measure behaviour, not disks: skip fsync so that they are fast on any machine.
	cfg.UnsafeNoFsync = true
	if adjust != nil {
		adjust(cfg)
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("starting etcd: %v", err)
	}
	t.Cleanup(func() {
		e.Close()
		<-e.Server.StopNotify()
	})
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		t.Fatal("etcd did not become ready within 30s")
	}
	return client.Host
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
