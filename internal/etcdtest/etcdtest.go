// Package etcdtest runs real etcd servers in-process (go.etcd.io/etcd/server/v3/embed) on free
// loopback ports for tests, with every member's data in the test's temp dir.
package etcdtest

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/internal/freeport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/rafthttp"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

// Cluster is a set of embedded etcd members.
type Cluster struct {
	t       testing.TB
	Members []*Member
}

// Member is one embedded etcd server.
type Member struct {
	Name      string
	ClientURL string
	cfg       *embed.Config
	mu        sync.Mutex
	etcd      *embed.Etcd
}

// Option adjusts every member's configuration before start.
type Option func(i int, cfg *embed.Config)

// FreePort returns a loopback port that was free a moment ago, outside the range outgoing
// connections take their source ports from (see package freeport).
func FreePort(t testing.TB) int {
	t.Helper()
	return freeport.Take(t, 1)[0]
}

func mustURL(s string) url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return *u
}

// Start launches an n-member cluster and waits until every member is ready (bounded).
func Start(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	var initial []string
	token := fmt.Sprintf("etcdtest-%d", time.Now().UnixNano())
	for i := range n {
		name := fmt.Sprintf("m%d", i)
		cfg := embed.NewConfig()
		cfg.Name = name
		cfg.Dir = t.TempDir()
		scheme := "http"
		clientURL := mustURL(fmt.Sprintf("%s://127.0.0.1:%d", scheme, FreePort(t)))
		peerURL := mustURL(fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)))
		cfg.ListenClientUrls = []url.URL{clientURL}
		cfg.AdvertiseClientUrls = []url.URL{clientURL}
		cfg.ListenPeerUrls = []url.URL{peerURL}
		cfg.AdvertisePeerUrls = []url.URL{peerURL}
		cfg.InitialClusterToken = token
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.LogLevel = "error"
		// Short timeouts make leader elections in tests take a fraction of a second.
		cfg.TickMs = 50
		cfg.ElectionMs = 500
		initial = append(initial, fmt.Sprintf("%s=%s", name, peerURL.String()))
		c.Members = append(c.Members, &Member{Name: name, cfg: cfg})
	}
	for i, m := range c.Members {
		m.cfg.InitialCluster = strings.Join(initial, ",")
		for _, o := range opts {
			o(i, m.cfg)
		}
		m.ClientURL = m.cfg.AdvertiseClientUrls[0].String()
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, m := range c.Members {
		wg.Go(func() { errs[i] = m.start() })
	}
	wg.Wait()
	t.Cleanup(c.Close)
	for _, err := range errs {
		if err != nil {
			t.Fatalf("starting etcd: %v", err)
		}
	}
	c.waitPublished(t)
	return c
}

func (m *Member) start() error {
	e, err := embed.StartEtcd(m.cfg)
	if err != nil {
		return err
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		return fmt.Errorf("member %s not ready after 30s", m.Name)
	}
	m.mu.Lock()
	m.etcd = e
	m.mu.Unlock()
	return nil
}

// Endpoints returns every member's client URL.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.ClientURL)
	}
	return out
}

// Close stops every member.
func (c *Cluster) Close() {
	for _, m := range c.Members {
		m.Stop()
	}
}

// Stop shuts the member down; its data stays for Restart.
func (m *Member) Stop() {
	m.mu.Lock()
	e := m.etcd
	m.etcd = nil
	m.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

// Restart starts a stopped member again from its data dir.
func (m *Member) Restart(t testing.TB) {
	t.Helper()
	m.cfg.ClusterState = embed.ClusterStateFlagExisting
	if err := m.start(); err != nil {
		t.Fatalf("restarting %s: %v", m.Name, err)
	}
}

// Etcd returns the running server, nil when stopped.
func (m *Member) Etcd() *embed.Etcd {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.etcd
}

// ID returns the member's raft ID (valid while running).
func (m *Member) ID() uint64 { return uint64(m.Etcd().Server.MemberID()) }

// Settle waits (bounded) until every member has agreed on a cluster version and the applied
// raft index has stopped moving. A fresh cluster still proposes its cluster version a few
// seconds after it reports ready; tests that assert the raft log does not move must not mistake
// that write for their own.
func (c *Cluster) Settle() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last []uint64
	stable := 0
	for time.Now().Before(deadline) {
		var cur []uint64
		ready := true
		for _, m := range c.Members {
			e := m.Etcd()
			if e == nil {
				continue
			}
			if e.Server.ClusterVersion() == nil {
				ready = false
			}
			cur = append(cur, e.Server.AppliedIndex())
		}
		if ready && slices.Equal(cur, last) && slices.Min(cur) == slices.Max(cur) {
			stable++
			if stable >= 5 {
				return
			}
		} else {
			stable = 0
		}
		last = cur
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("cluster did not settle within 30s (applied indexes %v)", last)
}

// TLSFiles are the PEM files one listener serves with and trusts client certificates from.
type TLSFiles struct {
	CertFile, KeyFile, TrustedCAFile string
}

// WithTLS serves every member's client and peer URLs over https with the files client(i) and
// peer(i) name, requiring a client certificate signed by the trusted CA on both, as a production
// cluster (kubeadm's) does. etcd reads the files at each new TLS connection, so replacing them
// renews the certificates of a running member.
func WithTLS(client, peer func(i int) TLSFiles) Option {
	toHTTPS := func(us []url.URL) {
		for j := range us {
			us[j].Scheme = "https"
		}
	}
	return func(i int, cfg *embed.Config) {
		toHTTPS(cfg.ListenClientUrls)
		toHTTPS(cfg.AdvertiseClientUrls)
		toHTTPS(cfg.ListenPeerUrls)
		toHTTPS(cfg.AdvertisePeerUrls)
		cfg.InitialCluster = strings.ReplaceAll(cfg.InitialCluster, "=http://", "=https://")
		c, p := client(i), peer(i)
		cfg.ClientTLSInfo.CertFile, cfg.ClientTLSInfo.KeyFile, cfg.ClientTLSInfo.TrustedCAFile = c.CertFile, c.KeyFile, c.TrustedCAFile
		cfg.ClientTLSInfo.ClientCertAuth = true
		cfg.PeerTLSInfo.CertFile, cfg.PeerTLSInfo.KeyFile, cfg.PeerTLSInfo.TrustedCAFile = p.CertFile, p.KeyFile, p.TrustedCAFile
		cfg.PeerTLSInfo.ClientCertAuth = true
	}
}

// Settled wraps a package's testing.M for goleak.VerifyTestMain in packages whose tests run
// embedded etcd members: after the tests it waits, bounded, until no goroutine is left, so that
// goleak then sees only what does not end by itself. A closed member can leave the server side of a
// peer connection reading for up to rafthttp.ConnReadTimeout (5 s): etcd's timeoutConn re-arms the
// read deadline on every Read, defeating the deadline net/http sets to abort a pending read, so the
// goroutine ends late but ends. Waiting beats ignoring net/http's functions, which would hide our
// own leaked HTTP connections too.
func Settled(m *testing.M) goleak.TestingM { return settled{m} }

type settled struct{ m *testing.M }

func (s settled) Run() int {
	code := s.m.Run()
	if code != 0 {
		return code // goleak checks only a passing run
	}
	deadline := time.Now().Add(2 * rafthttp.ConnReadTimeout)
	for time.Now().Before(deadline) && goleak.Find() != nil {
		time.Sleep(250 * time.Millisecond)
	}
	return code
}
