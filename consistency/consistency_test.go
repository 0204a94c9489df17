package consistency

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(etcdtest.Settled(m))
}

// start runs an n-member cluster and returns it with each member's data dir.
func start(t *testing.T, n int) (*etcdtest.Cluster, []string) {
	t.Helper()
	dirs := make([]string, n)
	c := etcdtest.Start(t, n, func(i int, cfg *embed.Config) { dirs[i] = cfg.Dir })
	return c, dirs
}

func newTaker(t *testing.T, c *etcdtest.Cluster) *snapshot.Taker {
	t.Helper()
	taker, err := snapshot.NewTaker(etcdconn.Config{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatalf("NewTaker: %v", err)
	}
	t.Cleanup(taker.Close)
	return taker
}

func newClient(t *testing.T, c *etcdtest.Cluster) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

func take(t *testing.T, taker *snapshot.Taker) *snapshot.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return taker.Take(ctx, snapshot.Needs{Status: true})
}

func check(t *testing.T, taker *snapshot.Taker) *Result {
	t.Helper()
	s := take(t, taker)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return Check(ctx, taker, s)
}

// follower returns the index of a member that is not the leader.
func follower(t *testing.T, c *etcdtest.Cluster) int {
	t.Helper()
	for i, m := range c.Members {
		if e := m.Etcd(); e != nil && uint64(e.Server.Leader()) != m.ID() {
			return i
		}
	}
	t.Fatal("no follower")
	return -1
}

func byName(r *Result) map[string]MemberResult {
	out := map[string]MemberResult{}
	for _, m := range r.Members {
		out[m.Name] = m
	}
	return out
}

// TestDivergedMemberIsInconsistent changes a value on one follower's disk while it is stopped:
// etcd's start-up corruption check is off by default, so it starts and serves its own data. The
// check reports that member, and only it, as disagreeing.
func TestDivergedMemberIsInconsistent(t *testing.T) {
	c, dirs := start(t, 3)
	cli := newClient(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 10 {
		if _, err := cli.Put(ctx, fmt.Sprintf("k%d", i), fmt.Sprintf("value-%d", i)); err != nil {
			t.Fatalf("put: %v", err)
		}
	}
	c.Settle()
	taker := newTaker(t, c)
	before := check(t, taker)
	if !before.Compared || len(before.Minority()) != 0 || before.DistinctHashes != 1 {
		t.Fatalf("healthy cluster: compared %v, minority %v, %d hashes (%+v)", before.Compared, before.Minority(), before.DistinctHashes, before.Members)
	}

	f := follower(t, c)
	victim := c.Members[f]
	victim.Stop()
	etcdtest.CorruptValue(t, dirs[f], "k5")
	victim.Restart(t)
	c.Settle()

	// Reads on the victim now answer the changed value: the divergence is real, not a hash artefact.
	vcli, err := clientv3.New(clientv3.Config{Endpoints: []string{victim.ClientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer vcli.Close()
	got, err := vcli.Get(ctx, "k5", clientv3.WithSerializable())
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "VALUE-5" {
		t.Fatalf("victim's k5: %v %v", got, err)
	}

	r := check(t, taker)
	if !r.Compared {
		t.Fatalf("not compared: %+v", r.Members)
	}
	if m := r.Minority(); len(m) != 1 || m[0] != victim.Name {
		t.Fatalf("minority %v, want [%s] (%+v)", m, victim.Name, r.Members)
	}
	for name, m := range byName(r) {
		if !m.Compared {
			t.Errorf("%s not compared: %s %v", name, m.Reason, m.Err)
		}
	}
	if r.DistinctHashes != 2 {
		t.Errorf("distinct hashes %d, want 2", r.DistinctHashes)
	}
}

// compactingHasher compacts the cluster to its current revision before the first HashKV of a
// check it was armed for: a compaction between the choice of the revision and the members'
// answers, the race the check retries on.
type compactingHasher struct {
	*snapshot.Taker
	cli         *clientv3.Client
	armed       atomic.Bool
	compactions atomic.Int64
}

func (h *compactingHasher) HashKV(ctx context.Context, m *snapshot.Member, rev int64) (*pb.HashKVResponse, error) {
	if h.armed.CompareAndSwap(true, false) {
		if resp, err := h.cli.Get(ctx, "w"); err == nil {
			if _, err := h.cli.Compact(ctx, resp.Header.Revision); err == nil {
				h.compactions.Add(1)
			}
		}
	}
	return h.Taker.HashKV(ctx, m, rev)
}

// TestHealthyClusterNeverInconsistent runs 60 checks through a Checker with a 1 ns interval on a
// 3-member cluster under continuous writes, every other check with a compaction just after the
// revision was chosen: no member is ever reported inconsistent, and the compaction race is
// retried rather than reported.
func TestHealthyClusterNeverInconsistent(t *testing.T) {
	c, _ := start(t, 3)
	cli := newClient(t, c)
	taker := newTaker(t, c)
	h := &compactingHasher{Taker: taker, cli: cli}
	checker, err := New(h, time.Nanosecond, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer checker.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		for i := 0; ctx.Err() == nil && i < 1_000_000; i++ {
			wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
			_, _ = cli.Put(wctx, "w", fmt.Sprintf("%d", i))
			_, _ = cli.Put(wctx, fmt.Sprintf("w/%d", i%50), fmt.Sprintf("%d", i))
			wcancel()
		}
	})

	const checks = 60
	compared, retried := 0, 0
	var prev *Result
	deadline := time.Now().Add(3 * time.Minute)
	for i := range checks {
		if time.Now().After(deadline) {
			t.Fatalf("only %d checks in 3 minutes", i)
		}
		h.armed.Store(i%2 == 1)
		r := checker.Latest(take(t, taker), time.Now().Add(10*time.Second)).Last
		if r == nil || r == prev {
			t.Fatalf("check %d: no new result", i)
		}
		prev = r
		if m := r.Minority(); len(m) > 0 {
			t.Fatalf("check %d: healthy cluster reported inconsistent members %v (%+v)", i, m, r.Members)
		}
		if r.Compared {
			compared++
		} else {
			t.Logf("check %d not compared after %d attempts at %d: %+v", i, r.Attempts, r.Revision, r.Members)
		}
		if r.Attempts > 1 {
			retried++
		}
	}
	t.Logf("%d checks: %d compared, %d retried, %d compactions mid-check", checks, compared, retried, h.compactions.Load())
	if h.compactions.Load() < checks/4 {
		t.Fatalf("only %d compactions happened mid-check", h.compactions.Load())
	}
	if retried == 0 {
		t.Fatal("no check met the compaction race: the retry was not exercised")
	}
	if compared < checks/2 {
		t.Fatalf("only %d of %d checks compared the members", compared, checks)
	}
}

// TestCheckAddsNothingToRaftLog: HashKV reads each member's backend; it is no proposal.
func TestCheckAddsNothingToRaftLog(t *testing.T) {
	c, _ := start(t, 3)
	taker := newTaker(t, c)
	take(t, taker) // connections made before the baseline
	c.Settle()
	applied := func() []uint64 {
		var out []uint64
		for _, m := range c.Members {
			out = append(out, m.Etcd().Server.AppliedIndex())
		}
		return out
	}
	before := applied()
	for range 5 {
		if r := check(t, taker); !r.Compared {
			t.Fatalf("not compared: %+v", r.Members)
		}
	}
	if after := applied(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("applied index moved from %v to %v", before, after)
	}
}

// TestUnknownWhenMembersCannotBeCompared: a member that is down is unknown (not consistent), the
// others are still compared; a single member has nobody to be compared with.
func TestUnknownWhenMembersCannotBeCompared(t *testing.T) {
	t.Run("member down", func(t *testing.T) {
		c, _ := start(t, 3)
		taker := newTaker(t, c)
		f := follower(t, c)
		c.Members[f].Stop()
		r := check(t, taker)
		for name, m := range byName(r) {
			switch {
			case name == c.Members[f].Name:
				if m.Compared || m.Reason != ReasonMemberDown {
					t.Errorf("stopped %s: compared %v reason %q", name, m.Compared, m.Reason)
				}
			case !m.Compared || !m.Agrees:
				t.Errorf("%s: compared %v agrees %v reason %q %v", name, m.Compared, m.Agrees, m.Reason, m.Err)
			}
		}
	})
	t.Run("single member", func(t *testing.T) {
		c, _ := start(t, 1)
		r := check(t, newTaker(t, c))
		if r.Compared || len(r.Members) != 1 || r.Members[0].Compared || r.Members[0].Reason != ReasonTooFewMembers {
			t.Fatalf("single member: %+v %+v", r, r.Members)
		}
	})
}

// TestLearnerLeftOut: etcd refuses HashKV on a learner ("rpc not supported for learner"), so a
// learner is not part of the comparison (and not counted unknown), while the voters are compared.
func TestLearnerLeftOut(t *testing.T) {
	c, _ := start(t, 3)
	l, id := c.Add(t, true)
	l.Start(t)
	taker := newTaker(t, c)
	// A started learner publishes its client URLs through raft: the members list them a moment
	// later (bounded wait).
	var learner *snapshot.Member
	var s *snapshot.Snapshot
	for attempt := 0; attempt < 50 && (learner == nil || !learner.Up()); attempt++ {
		if attempt > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		learner = nil
		s = take(t, taker)
		for _, m := range s.Members {
			if m.ID == id {
				learner = m
			}
		}
	}
	if learner == nil || !learner.Up() {
		t.Fatalf("learner not in the snapshot or down: %+v", learner)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := taker.HashKV(ctx, learner, 0); err == nil {
		t.Fatal("HashKV on a learner answered: the learner could be compared")
	}
	r := Check(ctx, taker, s)
	if !r.Compared || len(r.Members) != 3 {
		t.Fatalf("compared %v with %d members: %+v", r.Compared, len(r.Members), r.Members)
	}
	for _, m := range r.Members {
		if m.ID == id {
			t.Fatalf("learner in the result: %+v", m)
		}
	}
}

// hangingHasher never answers until its context ends: a member that accepts and never replies.
type hangingHasher struct{ calls *atomic.Int64 }

func (h hangingHasher) HashKV(ctx context.Context, _ *snapshot.Member, _ int64) (*pb.HashKVResponse, error) {
	h.calls.Add(1)
	<-ctx.Done()
	return nil, ctx.Err()
}

func (h hangingHasher) Revision(ctx context.Context, _ *snapshot.Member) (int64, error) {
	<-ctx.Done()
	return 0, ctx.Err()
}

// TestCheckerServesLastResult: between checks the last result is served with its time; a check
// that outlasts the caller's deadline keeps running and its result is served later; Close ends a
// running check.
func TestCheckerServesLastResult(t *testing.T) {
	c, _ := start(t, 3)
	taker := newTaker(t, c)
	ch, err := New(taker, time.Hour, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	st := ch.Latest(take(t, taker), time.Now().Add(10*time.Second))
	first := st.Last
	if first == nil || !first.Compared {
		t.Fatalf("first check: %+v", first)
	}
	if !st.LastSuccess.Equal(first.Time) {
		t.Fatalf("last success %v, want the check's time %v", st.LastSuccess, first.Time)
	}
	second := ch.Latest(take(t, taker), time.Now().Add(10*time.Second)).Last
	if second != first {
		t.Fatalf("a second check ran within the interval: %v then %v", first.Time, second.Time)
	}

	var calls atomic.Int64
	hung, err := New(hangingHasher{&calls}, time.Hour, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := take(t, taker)
	startWait := time.Now()
	hst := hung.Latest(s, time.Now().Add(200*time.Millisecond))
	r, unknown := hst.Last, hst.Unknown
	if r != nil {
		t.Fatalf("a result before any check finished: %+v", r)
	}
	if time.Since(startWait) > 5*time.Second {
		t.Fatalf("Latest waited %s past its deadline", time.Since(startWait))
	}
	if len(unknown) != 0 {
		t.Fatalf("unknown counted before a check ended: %v", unknown)
	}
	// Another scrape while the hung check runs is answered at once, not at its deadline.
	other := time.Now()
	if st := hung.Latest(s, time.Now().Add(time.Minute)); st.Last != nil {
		t.Fatalf("a result while the only check hangs: %+v", st.Last)
	}
	if d := time.Since(other); d > 5*time.Second {
		t.Fatalf("a call during a running check waited %s for it", d)
	}
	hung.Close() // cancels the hung check; goleak (TestMain) sees that it ended
	if calls.Load() != 3 {
		t.Fatalf("%d HashKV calls, want one per member", calls.Load())
	}
	if _, err := New(taker, 0, time.Second, nil); err == nil {
		t.Fatal("zero interval accepted")
	}
}

// TestAuthNeedsRoot: with auth on, etcd answers HashKV for the root role only; a read-only
// monitoring user's members are unknown with reason permission_denied, never consistent.
func TestAuthNeedsRoot(t *testing.T) {
	c, _ := start(t, 3)
	cli := newClient(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, step := range []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.RoleAdd(ctx, "reader"); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, "reader", "\x00", "\x00", clientv3.PermissionType(clientv3.PermRead))
			return err
		},
		func() error { _, err := cli.UserAdd(ctx, "monitor", "monitorpw"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "monitor", "reader"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	for user, want := range map[string]string{"monitor": ReasonPermissionDenied, "root": ""} {
		taker, err := snapshot.NewTaker(etcdconn.Config{Endpoints: c.Endpoints(), Username: user, Password: user + "pw"})
		if err != nil {
			t.Fatal(err)
		}
		r := check(t, taker)
		taker.Close()
		if want == "" {
			if !r.Compared || len(r.Minority()) != 0 {
				t.Errorf("root: compared %v, minority %v: %+v", r.Compared, r.Minority(), r.Members)
			}
			continue
		}
		if r.Compared {
			t.Errorf("%s: compared: %+v", user, r.Members)
		}
		for _, m := range r.Members {
			if m.Compared || m.Reason != want {
				t.Errorf("%s: %s compared %v reason %q (%v), want %q", user, m.Name, m.Compared, m.Reason, m.Err, want)
			}
		}
	}
}
