package collector

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// grpcHandled sums grpc_server_handled_total over every method and member: the embedded etcd
// servers count each RPC they answer in the default registry.
func grpcHandled(t *testing.T) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum, found := 0.0, false
	for _, mf := range mfs {
		if mf.GetName() != "grpc_server_handled_total" {
			continue
		}
		found = true
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	if !found {
		t.Fatal("grpc_server_handled_total is not in the default registry: cannot count etcd RPCs")
	}
	return sum
}

// countingTaker is the real taker, counting the snapshots asked of it and running gate (when set)
// before each, so a test can let scrapes pile up behind the first snapshot as a burst would.
type countingTaker struct {
	taker *snapshot.Taker
	takes atomic.Int32
	gate  func()
}

func (c *countingTaker) Take(ctx context.Context, needs snapshot.Needs) *snapshot.Snapshot {
	c.takes.Add(1)
	if c.gate != nil {
		c.gate()
	}
	return c.taker.Take(ctx, needs)
}

// TestConcurrentScrapesShareSnapshots: 100 concurrent scrapes of /metrics cost etcd about one
// snapshot's RPCs (counted by the etcd servers), not one snapshot each.
func TestConcurrentScrapesShareSnapshots(t *testing.T) {
	c := etcdtest.Start(t, 3)
	c.Settle()
	tk, err := snapshot.NewTaker(etcdconn.Config{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tk.Close)
	ct := &countingTaker{taker: tk}
	e, err := New(ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	var arrived atomic.Int32
	h := e.Handler(HandlerOpts{Timeout: 5 * time.Second, Offset: 500 * time.Millisecond})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	const n = 100
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	defer client.CloseIdleConnections()
	scrape := func() int {
		resp, err := client.Get(srv.URL)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	scrape() // connect every member's client first, so dialing is not counted below

	// RPCs of one scrape, counted by the servers (the least of a few, in case of background RPCs).
	perSnapshot := -1.0
	for range 3 {
		before := grpcHandled(t)
		scrape()
		if d := grpcHandled(t) - before; perSnapshot < 0 || d < perSnapshot {
			perSnapshot = d
		}
	}
	// MemberList once, then Status and one read per probe kind for every member.
	if want := float64(1 + 3*(1+len(snapshot.ProbeKinds))); perSnapshot != want {
		t.Fatalf("one scrape cost %v RPCs, want %v", perSnapshot, want)
	}

	arrived.Store(0)
	ct.gate = func() {
		for i := 0; i < 1000 && arrived.Load() < n; i++ {
			time.Sleep(5 * time.Millisecond)
		}
	}
	takesBefore := ct.takes.Load()
	before := grpcHandled(t)
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { codes[i] = scrape() })
	}
	wg.Wait()
	rpcs := grpcHandled(t) - before
	takes := ct.takes.Load() - takesBefore
	for i, code := range codes {
		if code != http.StatusOK {
			t.Fatalf("scrape %d: status %d", i, code)
		}
	}
	t.Logf("%d concurrent scrapes: %d snapshots, %v etcd RPCs (one snapshot: %v)", n, takes, rpcs, perSnapshot)
	if rpcs > 3*perSnapshot {
		t.Errorf("%d concurrent scrapes cost %v etcd RPCs, more than 3 snapshots (%v each)", n, rpcs, perSnapshot)
	}
}
