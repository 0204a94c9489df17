package defrag

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/certgen"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

func TestMain(m *testing.M) {
	// A stopped embedded cluster's peer connections end within etcd's read timeout: Settled waits
	// for them, so that nothing needs ignoring.
	goleak.VerifyTestMain(etcdtest.Settled(m))
}

// testRule selects the fragmented members of these small test clusters: the default 100 MiB
// floor would need a file far larger than a test should write.
var testRule = Rule{MinFreeRatio: 0.45, MinFreeBytes: 1 * MiB, QuotaRatio: 0.8, QuotaMinFreeBytes: 1 * MiB}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func newClient(t *testing.T, eps ...string) *clientv3.Client {
	t.Helper()
	c, err := etcdconn.New(etcdconn.Config{Endpoints: eps}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// fragment writes n values of size bytes, deletes them and compacts physically, so that most of
// every member's backend file is free pages, and waits (bounded) until every member at eps says
// so: each compacts on its own, and reports the pages it freed once its backend committed.
func fragment(t *testing.T, c *clientv3.Client, eps []string, n, size int) {
	t.Helper()
	ctx := ctxT(t, 2*time.Minute)
	val := strings.Repeat("x", size)
	for i := range n {
		if _, err := c.Put(ctx, fmt.Sprintf("/frag/%06d", i), val); err != nil {
			t.Fatalf("put: %v", err)
		}
	}
	resp, err := c.Delete(ctx, "/frag/", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := c.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compact: %v", err)
	}
	// Comfortably above testRule's thresholds, so that the rule selects every member.
	wantFree, wantRatio := int64(n*size)/2, testRule.MinFreeRatio+0.1
	for attempt := 0; ; attempt++ {
		low := ""
		for ep, st := range states(t, ctx, c, eps) {
			free := st.dbSize - st.inUse
			if free < wantFree || float64(free) < wantRatio*float64(st.dbSize) {
				low = fmt.Sprintf("%s: %+v", ep, st)
			}
		}
		if low == "" {
			return
		}
		if attempt >= 150 {
			t.Fatalf("not fragmented after 30s: %s", low)
		}
		// bbolt counts pages freed by a commit as free only after the next commit (etcd keeps a
		// read transaction open on the old ones), so one more write lets the count catch up.
		if _, err := c.Put(ctx, "/frag-nudge", "x"); err != nil {
			t.Fatalf("put: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// memberState is what a member says about itself, read directly from it.
type memberState struct {
	id                               uint64
	dbSize, inUse, revision, applied int64
	leader                           uint64
}

func states(t *testing.T, ctx context.Context, c *clientv3.Client, eps []string) map[string]memberState {
	t.Helper()
	out := map[string]memberState{}
	for _, ep := range eps {
		st, err := c.Status(ctx, ep)
		if err != nil {
			t.Fatalf("status of %s: %v", ep, err)
		}
		out[ep] = memberState{st.Header.MemberId, st.DbSize, st.DbSizeInUse, st.Header.Revision, int64(st.RaftAppliedIndex), st.Leader}
	}
	return out
}

func newRunner(t *testing.T, eps []string, cfg Config) (*Runner, *bytes.Buffer) {
	t.Helper()
	conn := etcdconn.Config{Endpoints: eps}
	taker, err := snapshot.NewTaker(conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(taker.Close)
	var progress bytes.Buffer
	return &Runner{Config: cfg, Conn: conn, Taker: taker, Progress: &progress}, &progress
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Rule = testRule
	cfg.MemberTimeout = 30 * time.Second
	cfg.DefragTimeout = time.Minute
	return cfg
}

// interval is when one member's Defragment call ran, and who led the cluster as it started.
type interval struct {
	member     uint64
	start, end time.Time
	wasLeader  bool
	err        error
}

// recorder observes the run through the hooks: each start asks every member directly (not
// through the runner) who leads, and a second member starting while one is running is recorded
// as an overlap.
type recorder struct {
	t      *testing.T
	client *clientv3.Client
	eps    []string

	mu       sync.Mutex
	running  int
	overlaps int
	done     []interval
	cur      map[uint64]*interval
}

func (r *recorder) hooks() Hooks {
	r.cur = map[uint64]*interval{}
	return Hooks{
		DefragStart: func(id uint64) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			leader := uint64(0)
			for _, ep := range r.eps {
				if st, err := r.client.Status(ctx, ep); err == nil && st.Leader != 0 {
					leader = st.Leader
				}
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			r.running++
			if r.running > 1 {
				r.overlaps++
			}
			r.cur[id] = &interval{member: id, start: time.Now(), wasLeader: leader == id}
		},
		DefragEnd: func(id uint64, err error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.running--
			iv := r.cur[id]
			iv.end, iv.err = time.Now(), err
			r.done = append(r.done, *iv)
		},
	}
}

// TestDefragUnderWrites defragments a fragmented 3-member cluster while a writer keeps writing.
func TestDefragUnderWrites(t *testing.T) {
	c := etcdtest.Start(t, 3)
	eps := c.Endpoints()
	cli := newClient(t, eps...)
	// Live data makes each defragmentation take a while: it copies what is in use.
	val := strings.Repeat("l", 32*1024)
	for i := range 400 {
		if _, err := cli.Put(ctxT(t, 10*time.Second), fmt.Sprintf("/live/%06d", i), val); err != nil {
			t.Fatal(err)
		}
	}
	fragment(t, cli, eps, 800, 32*1024)
	before := states(t, ctxT(t, 10*time.Second), cli, eps)

	// One writer per member, each through a client bound to that member: the writer on the member
	// being defragmented waits for it, and must still succeed; the others show whether the
	// cluster kept committing meanwhile.
	stop := make(chan struct{})
	type write struct {
		ep  string
		end time.Time
	}
	var mu sync.Mutex
	var writes []write
	var failures int
	var firstErr error
	var wg sync.WaitGroup
	for w, ep := range eps {
		wcli := newClient(t, ep)
		wg.Go(func() {
			for i := 0; i < 1_000_000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := wcli.Put(ctx, fmt.Sprintf("/writer/%d/%d", w, i%100), "v")
				cancel()
				mu.Lock()
				if err != nil {
					failures++
					if firstErr == nil {
						firstErr = fmt.Errorf("via %s: %w", ep, err)
					}
				} else {
					writes = append(writes, write{ep, time.Now()})
				}
				mu.Unlock()
			}
		})
	}
	stopWriter := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopWriter)

	rec := &recorder{t: t, client: cli, eps: eps}
	r, progress := newRunner(t, eps, testConfig())
	r.Hooks = rec.hooks()
	rep, err := r.Run(ctxT(t, 3*time.Minute))
	stopWriter()
	t.Logf("progress:\n%s", progress)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", text.String())

	if failures > 0 || len(writes) == 0 {
		t.Errorf("writers: %d writes succeeded, %d failed (first: %v); want every write to succeed", len(writes), failures, firstErr)
	}
	// How many writes other members committed while one was defragmenting: logged, not asserted,
	// since it depends on how long a defragmentation takes on this machine.
	during := 0
	for _, w := range writes {
		for _, iv := range rec.done {
			if before[w.ep].id != iv.member && w.end.After(iv.start) && w.end.Before(iv.end) {
				during++
			}
		}
	}
	t.Logf("%d writes, %d of them committed through another member while one was defragmenting", len(writes), during)
	if rec.overlaps > 0 {
		t.Errorf("%d times a member started defragmenting while another was", rec.overlaps)
	}
	if len(rec.done) != 3 {
		t.Fatalf("%d Defragment calls, want 3: %+v", len(rec.done), rec.done)
	}
	for i, iv := range rec.done {
		if iv.err != nil {
			t.Errorf("defragment of %x: %v", iv.member, iv.err)
		}
		if last := i == len(rec.done)-1; iv.wasLeader != last {
			t.Errorf("call %d (member %x): leader when it started = %v, want the leader last and only last", i+1, iv.member, iv.wasLeader)
		}
		if i > 0 && iv.start.Before(rec.done[i-1].end) {
			t.Errorf("call %d started before call %d ended", i+1, i)
		}
	}
	after := states(t, ctxT(t, 10*time.Second), cli, eps)
	for _, ep := range eps {
		if after[ep].dbSize >= before[ep].dbSize {
			t.Errorf("%s: db size %d after, %d before: want it smaller", ep, after[ep].dbSize, before[ep].dbSize)
		}
	}
	if rep.Defragmented() != 3 || rep.Reclaimed() <= 0 || !rep.Success {
		t.Errorf("report: %d defragmented, %d reclaimed, success %v", rep.Defragmented(), rep.Reclaimed(), rep.Success)
	}
	if n := strings.Count(progress.String(), "defragmenting:"); n != 3 {
		t.Errorf("progress has %d start lines, want 3", n)
	}
	if n := strings.Count(progress.String(), "done in"); n != 3 {
		t.Errorf("progress has %d end lines, want 3", n)
	}
}

// TestDryRunChangesNothing: the plan is printed, and no member's size, revision or applied index
// moves.
func TestDryRunChangesNothing(t *testing.T) {
	c := etcdtest.Start(t, 3)
	eps := c.Endpoints()
	cli := newClient(t, eps...)
	fragment(t, cli, eps, 200, 32*1024)
	c.Settle()
	before := states(t, ctxT(t, 10*time.Second), cli, eps)

	cfg := testConfig()
	cfg.DryRun = true
	r, progress := newRunner(t, eps, cfg)
	r.Hooks = Hooks{DefragStart: func(id uint64) { t.Errorf("dry run defragmented member %x", id) }}
	rep, err := r.Run(ctxT(t, time.Minute))
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	after := states(t, ctxT(t, 10*time.Second), cli, eps)
	for _, ep := range eps {
		if after[ep] != before[ep] {
			t.Errorf("%s changed during a dry run: before %+v, after %+v", ep, before[ep], after[ep])
		}
	}
	if progress.Len() != 0 {
		t.Errorf("dry run printed progress: %s", progress)
	}
	if rep.Blocked != "" {
		t.Errorf("dry run on a healthy cluster says a run would not start: %s", rep.Blocked)
	}
	order := ordered(rep.Members)
	if len(order) != 3 || !order[2].Leader || order[0].Leader || order[1].Leader {
		t.Errorf("plan order: %+v; want 3 members, the leader last", order)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "DRY RUN: 3 member(s) would be defragmented") {
		t.Errorf("text report:\n%s", text.String())
	}
}

// --etcd.tls.server-name is verified on the runner's own per-member clients, as on every other
// client of the exporter (certificates for a DNS name, the members reached by IP).
func TestDefragVerifiesTheConfiguredServerName(t *testing.T) {
	p := certgen.NewNamedEtcdPKI(t, "etcd.example")
	cl := p.Start(t)
	conn := etcdconn.Config{Endpoints: cl.Endpoints(), CAFile: p.CAFile, CertFile: p.ClientCert, KeyFile: p.ClientKey, ServerName: "etcd.example"}
	taker, err := snapshot.NewTaker(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer taker.Close()
	cfg := testConfig()
	cfg.Rule = Rule{QuotaRatio: 0.8, QuotaMinFreeBytes: 1 * MiB} // any free space is enough
	cfg.MemberTimeout = 10 * time.Second
	r := &Runner{Config: cfg, Conn: conn, Taker: taker}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := r.Run(ctx)
	if err != nil || rep.Defragmented() != 1 {
		t.Fatalf("defrag with --etcd.tls.server-name: %v, %d defragmented, %+v", err, rep.Defragmented(), rep)
	}
}
