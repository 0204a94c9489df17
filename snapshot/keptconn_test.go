package snapshot

import (
	"net/url"
	"testing"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

// Every call goes over the member's kept connection: 20 snapshots open no connection after the first.
func TestSnapshotsReuseKeptConnections(t *testing.T) {
	fwds := []*forwarder{newForwarder(t), newForwarder(t), newForwarder(t)}
	c := etcdtest.Start(t, 3, func(i int, cfg *embed.Config) {
		fwds[i].setTargets(listenHost(cfg))
		cfg.AdvertiseClientUrls = []url.URL{mustParseURL(t, fwds[i].URL())}
	})
	tk := newTaker(t, etcdconn.Config{Endpoints: c.Endpoints()})
	accepted := func() (n int64) {
		for _, f := range fwds {
			n += f.accepted.Load()
		}
		return n
	}
	if got := take(t, tk).Cluster().MembersUp; got != 3 {
		t.Fatalf("members up = %d, want 3", got)
	}
	first := accepted()
	for i := range 19 {
		if got := take(t, tk).Cluster().MembersUp; got != 3 {
			t.Fatalf("snapshot %d: members up = %d, want 3", i+2, got)
		}
	}
	t.Logf("connections accepted: %d after the first snapshot, %d after 20", first, accepted())
	if got := accepted(); got != first {
		t.Errorf("20 snapshots opened %d connections, %d after the first; want none after the first", got, got-first)
	}
	if first > 3 {
		t.Errorf("first snapshot opened %d connections to 3 members, want one each", first)
	}
}
