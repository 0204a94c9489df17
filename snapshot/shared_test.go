package snapshot

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

// gatedTaker counts real snapshots and holds each one until released, so a test can have many
// callers arrive while one snapshot is in flight.
type gatedTaker struct {
	tk      *Taker
	taken   atomic.Int32
	release chan struct{}
}

func (g *gatedTaker) take(ctx context.Context, needs Needs) *Snapshot {
	g.taken.Add(1)
	select {
	case <-g.release:
	case <-ctx.Done():
	}
	return g.tk.Take(ctx, needs)
}

func waiters(s *Shared) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.inflight {
		n += c.waiters
	}
	return n
}

// waitFor polls cond (bounded) and fails the test when it never holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestSharedConcurrentCallersShareOneSnapshot(t *testing.T) {
	c := etcdtest.Start(t, 1)
	tk, err := NewTaker(etcdconn.Config{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()
	g := &gatedTaker{tk: tk, release: make(chan struct{})}
	sh := NewShared(g.take, Needs{Status: true, Probes: true})

	const n = 50
	deadline := time.Now().Add(10 * time.Second)
	snaps := make([]*Snapshot, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { snaps[i], errs[i] = sh.Take(context.Background(), deadline) })
	}
	waitFor(t, "every caller to wait", func() bool { return waiters(sh) == n })
	close(g.release)
	wg.Wait()
	if got := g.taken.Load(); got != 1 {
		t.Fatalf("%d callers took %d snapshots, want 1", n, got)
	}
	for i := range n {
		if errs[i] != nil || snaps[i] != snaps[0] {
			t.Fatalf("caller %d got (%p, %v), want the shared snapshot %p", i, snaps[i], errs[i], snaps[0])
		}
	}
	if !snaps[0].Up() || len(snaps[0].Members) != 1 || !snaps[0].Members[0].Up() {
		t.Fatalf("shared snapshot does not show the running member: %+v", snaps[0])
	}

	// Nothing is kept: the next caller gets a new snapshot.
	s, err := sh.Take(context.Background(), time.Now().Add(5*time.Second))
	if err != nil || s == snaps[0] || g.taken.Load() != 2 {
		t.Fatalf("later caller: snapshot %p (first %p), err %v, %d taken; want a fresh one", s, snaps[0], err, g.taken.Load())
	}
}

func TestSharedEarlierDeadlineStartsItsOwn(t *testing.T) {
	c := etcdtest.Start(t, 1)
	tk, err := NewTaker(etcdconn.Config{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()
	g := &gatedTaker{tk: tk, release: make(chan struct{})}
	sh := NewShared(g.take, Needs{Status: true})

	var wg sync.WaitGroup
	var late, early *Snapshot
	wg.Go(func() { late, _ = sh.Take(context.Background(), time.Now().Add(20*time.Second)) })
	waitFor(t, "the first caller", func() bool { return waiters(sh) == 1 })
	// A caller that cannot wait as long as the in-flight snapshot may take gets its own.
	wg.Go(func() { early, _ = sh.Take(context.Background(), time.Now().Add(5*time.Second)) })
	waitFor(t, "the second caller", func() bool { return waiters(sh) == 2 })
	close(g.release)
	wg.Wait()
	if g.taken.Load() != 2 || late == early || late == nil || early == nil {
		t.Fatalf("taken %d, late %p, early %p: want two distinct snapshots", g.taken.Load(), late, early)
	}
}

func TestSharedCanceledCallersStopTheSnapshot(t *testing.T) {
	stopped := make(chan error, 1)
	sh := NewShared(func(ctx context.Context, _ Needs) *Snapshot {
		<-ctx.Done()
		stopped <- ctx.Err()
		return &Snapshot{}
	}, Needs{})
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		snap *Snapshot
		err  error
	}
	done := make(chan result, 2)
	other, cancelOther := context.WithCancel(context.Background())
	go func() {
		snap, err := sh.Take(other, time.Now().Add(time.Minute))
		done <- result{snap, err}
	}()
	waitFor(t, "the first caller", func() bool { return waiters(sh) == 1 })
	go func() {
		snap, err := sh.Take(ctx, time.Now().Add(time.Minute))
		done <- result{snap, err}
	}()
	waitFor(t, "the second caller", func() bool { return waiters(sh) == 2 })
	// A caller that goes while another still waits gets its context's error at once.
	cancelOther()
	select {
	case r := <-done:
		if r.snap != nil || !errors.Is(r.err, context.Canceled) {
			t.Fatalf("Take = %v, %v; want nil, context.Canceled", r.snap, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Take did not return after its caller was canceled")
	}
	select {
	case err := <-stopped:
		t.Fatalf("the snapshot was canceled (%v) while a caller still waited", err)
	default:
	}
	// The last caller to go cancels the snapshot and gets what it holds (a server shutting down
	// answers what it has).
	cancel()
	select {
	case r := <-done:
		if r.snap == nil || r.err != nil {
			t.Fatalf("last caller: Take = %v, %v; want the canceled snapshot", r.snap, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Take did not return after its caller was canceled")
	}
	select {
	case err := <-stopped:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("snapshot ended with %v, want canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the snapshot nobody waits for was not canceled")
	}
}
