package etcdtest

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Add adds a member to the running cluster with MemberAdd (as a learner when learner is true) and
// returns it unstarted, with its new ID: etcd lists it at once, without a name, until it starts.
// Start runs it, joining the existing cluster. The member is stopped with the cluster.
func (c *Cluster) Add(t testing.TB, learner bool, opts ...Option) (*Member, uint64) {
	t.Helper()
	var running *Member
	for _, m := range c.Members {
		if m.Etcd() != nil {
			running = m
			break
		}
	}
	if running == nil {
		t.Fatal("etcdtest: no running member to add a member through")
	}
	name := fmt.Sprintf("m%d", len(c.Members))
	clientURL := mustURL(fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)))
	peerURL := mustURL(fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)))

	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{running.ClientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	defer cli.Close()
	add := cli.MemberAdd
	if learner {
		add = cli.MemberAddAsLearner
	}
	// etcd refuses reconfiguration until every member has been connected for a few seconds
	// ("etcdserver: unhealthy cluster"); retry for a bounded time.
	var resp *clientv3.MemberAddResponse
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err = add(ctx, []string{peerURL.String()})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcdtest: member add: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}

	// The joining member reads the membership from its peers; one that has not applied the
	// addition yet answers without it ("member count is unequal"). Wait (bounded) until every
	// running member lists it, each asked alone (serializable: its own view).
	for _, rm := range c.Members {
		if rm.Etcd() == nil {
			continue
		}
		waitListed(t, rm.ClientURL, resp.Member.ID)
	}

	var initial []string
	for _, pm := range resp.Members {
		n := pm.Name
		if pm.ID == resp.Member.ID {
			n = name
		}
		if n == "" {
			continue // another member added and not started: it cannot be in our initial cluster by name
		}
		for _, u := range pm.PeerURLs {
			initial = append(initial, n+"="+u)
		}
	}
	base := running.cfg
	cfg := embed.NewConfig()
	cfg.Name = name
	cfg.Dir = t.TempDir()
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialClusterToken = base.InitialClusterToken
	cfg.InitialCluster = strings.Join(initial, ",")
	cfg.ClusterState = embed.ClusterStateFlagExisting
	cfg.ZapLoggerBuilder = base.ZapLoggerBuilder
	cfg.LogLevel = base.LogLevel
	cfg.TickMs = base.TickMs
	cfg.ElectionMs = base.ElectionMs
	for _, o := range opts {
		o(len(c.Members), cfg)
	}
	m := &Member{Name: name, cfg: cfg, ClientURL: cfg.AdvertiseClientUrls[0].String()}
	c.Members = append(c.Members, m)
	return m, resp.Member.ID
}

// Start starts a member made by Add (or a stopped one) and waits until it is ready (bounded).
func (m *Member) Start(t testing.TB) {
	t.Helper()
	if err := m.start(); err != nil {
		t.Fatalf("starting %s: %v", m.Name, err)
	}
}

// PeerURL is the member's advertised peer URL.
func (m *Member) PeerURL() string { return m.cfg.AdvertisePeerUrls[0].String() }

// waitListed waits (at most 20 s) until the member at clientURL lists member id in its own view.
func waitListed(t testing.TB, clientURL string, id uint64) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{clientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	defer cli.Close()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := cli.MemberList(ctx, clientv3.WithSerializable())
		cancel()
		if err == nil {
			for _, m := range resp.Members {
				if m.ID == id {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcdtest: %s does not list the added member %x after 20s (%v)", clientURL, id, err)
		}
	}
}

// waitPublished waits (at most 20 s) until every member's own view of the membership lists every
// member of c with its client URLs. A member is ready once its own attributes are committed, but
// another member may not have applied that entry yet: its member list then shows a member that
// "has not started".
func (c *Cluster) waitPublished(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, m := range c.Members {
		e := m.Etcd()
		if e == nil {
			continue
		}
		for {
			published := 0
			for _, mm := range e.Server.Cluster().Members() {
				if len(mm.ClientURLs) > 0 {
					published++
				}
			}
			if published >= len(c.Members) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("etcdtest: %s lists %d of %d members with client URLs after 20s", m.Name, published, len(c.Members))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
