package benchmark

import (
	"context"
	"maps"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// reportedPrefixRE finds the directory a run's report says it cleaned up (or kept).
var reportedPrefixRE = regexp.MustCompile(`(?m)^Cleanup:\s+(?:removed|--keep: left) \d+ keys under (\S+)$`)

// runPrefixOf returns the run's own key directory as its text report names it, and checks that it
// is one fresh directory directly below the configured prefix.
func runPrefixOf(t *testing.T, prefix, out string) string {
	t.Helper()
	m := reportedPrefixRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the report names no cleaned-up directory:\n%s", out)
	}
	id, ok := strings.CutPrefix(m[1], prefix)
	if !ok || !strings.HasSuffix(id, "/") || strings.Count(id, "/") != 1 || len(id) < 2 {
		t.Fatalf("the run cleaned up %q, want a directory of its own directly below %s", m[1], prefix)
	}
	return m[1]
}

// keysUnder returns every key under prefix with its value and revisions.
func keysUnder(t *testing.T, c *clientv3.Client, prefix string) map[string]mvccpb.KeyValue {
	t.Helper()
	resp, err := c.Get(ctxT(t), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]mvccpb.KeyValue{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = mvccpb.KeyValue{Key: kv.Key, Value: kv.Value, CreateRevision: kv.CreateRevision,
			ModRevision: kv.ModRevision, Version: kv.Version, Lease: kv.Lease}
	}
	return out
}

func sameKeys(a, b map[string]mvccpb.KeyValue) bool {
	return maps.EqualFunc(a, b, func(x, y mvccpb.KeyValue) bool {
		return string(x.Value) == string(y.Value) && x.CreateRevision == y.CreateRevision &&
			x.ModRevision == y.ModRevision && x.Version == y.Version && x.Lease == y.Lease
	})
}

// history returns every event under prefix after revision from, up to the current revision,
// which must be a write under prefix.
func history(t *testing.T, c *clientv3.Client, prefix string, from int64) []*clientv3.Event {
	t.Helper()
	ctx := ctxT(t)
	resp, err := c.Get(ctx, "\x00", clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	end := resp.Header.Revision
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var evs []*clientv3.Event
	wch := c.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(from+1))
	for wr := range wch {
		if err := wr.Err(); err != nil {
			t.Fatalf("watching the history of %s: %v", prefix, err)
		}
		evs = append(evs, wr.Events...)
		// Every revision of this test after from is a write under prefix, so the last one is an
		// event here.
		if len(evs) > 0 && evs[len(evs)-1].Kv.ModRevision >= end {
			break
		}
	}
	if ctx.Err() != nil {
		t.Fatalf("the history of %s up to revision %d did not arrive", prefix, end)
	}
	return evs
}

// Two runs at once on the default prefix, next to a user's keys and an earlier run's kept keys
// under that prefix: each run writes and deletes only in its own directory, so neither touches
// the other's keys, the kept ones or the user's.
func TestConcurrentRunsTouchOnlyTheirOwnKeys(t *testing.T) {
	ep := startEtcd(t, nil)
	c := newClient(t, ep)

	// Under the prefix before the runs: a user's keys (one named as the benchmark names its
	// keys, one rewritten so that its mod revision differs from its create revision) and what an
	// earlier run with --keep left.
	mustPut(t, c, DefaultPrefix+"key-000000001", "a user's key named like a benchmark key")
	mustPut(t, c, DefaultPrefix+"app/config", "v1")
	mustPut(t, c, DefaultPrefix+"app/config", "v2")
	kept := testConfig(WorkloadPut, 20)
	kept.Keep = true
	_, keptOut, err := run(t, ctxT(t), ep, kept, nil)
	if err != nil {
		t.Fatalf("kept run: %v\n%s", err, keptOut)
	}
	keptPrefix := runPrefixOf(t, DefaultPrefix, keptOut)
	before := keysUnder(t, c, DefaultPrefix)
	if n := len(keysUnder(t, c, keptPrefix)); n == 0 {
		t.Fatalf("the kept run left nothing under %s", keptPrefix)
	}
	resp, err := c.Get(ctxT(t), "\x00", clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	rev0 := resp.Header.Revision

	// A and B meet once a quarter in, so that both write at the same time; B then holds its last
	// operations until A has finished and cleaned up, so that A's cleanup runs while B's keys are
	// there and B writes again after it.
	const total = 200
	var (
		aMid, bMid, aDone = make(chan struct{}), make(chan struct{}), make(chan struct{})
		aOnce, bOnce      sync.Once
	)
	wait := func(ch chan struct{}) {
		select {
		case <-ch:
		case <-time.After(20 * time.Second):
		}
	}
	hookA := func(_ int, i int64) {
		if i == total/4 {
			aOnce.Do(func() { close(aMid) })
			wait(bMid)
		}
	}
	hookB := func(_ int, i int64) {
		switch i {
		case total / 4:
			bOnce.Do(func() { close(bMid) })
			wait(aMid)
		case total - 10:
			wait(aDone)
		}
	}
	type outcome struct {
		res *Result
		out string
		err error
	}
	var a, b outcome
	ctxA, ctxB := ctxT(t), ctxT(t)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(aDone)
		a.res, a.out, a.err = run(t, ctxA, ep, testConfig(WorkloadPut, total), hookA)
	}()
	go func() {
		defer wg.Done()
		b.res, b.out, b.err = run(t, ctxB, ep, testConfig(WorkloadPut, total), hookB)
	}()
	wg.Wait()
	if a.err != nil || b.err != nil {
		t.Fatalf("run A: %v\n%s\nrun B: %v\n%s", a.err, a.out, b.err, b.out)
	}
	pA, pB := runPrefixOf(t, DefaultPrefix, a.out), runPrefixOf(t, DefaultPrefix, b.out)
	if pA == pB || pA == keptPrefix || pB == keptPrefix {
		t.Fatalf("runs share a directory: A %s, B %s, kept %s", pA, pB, keptPrefix)
	}

	if after := keysUnder(t, c, DefaultPrefix); !sameKeys(before, after) {
		t.Errorf("keys under the prefix that neither run created changed (values or revisions):\nbefore %v\nafter  %v", before, after)
	}

	// Every change under the prefix since the runs started belongs to A or B, in its own
	// directory: its puts, then its one cleanup DeleteRange of exactly the keys it reported.
	type seen struct {
		puts, deletes   int64
		firstPut, last  int64
		deleteRevisions map[int64]int64
	}
	runs := map[string]*seen{pA: {deleteRevisions: map[int64]int64{}}, pB: {deleteRevisions: map[int64]int64{}}}
	for _, ev := range history(t, c, DefaultPrefix, rev0) {
		k, rev := string(ev.Kv.Key), ev.Kv.ModRevision
		var s *seen
		for p, r := range runs {
			if strings.HasPrefix(k, p) {
				s = r
			}
		}
		if s == nil {
			t.Errorf("%s of %s at revision %d: a key neither run created", ev.Type, k, rev)
			continue
		}
		if ev.Type == clientv3.EventTypePut {
			s.puts++
			if s.firstPut == 0 {
				s.firstPut = rev
			}
			s.last = rev
		} else {
			s.deletes++
			s.deleteRevisions[rev]++
		}
	}
	for name, r := range map[string]struct {
		prefix string
		res    *Result
	}{"A": {pA, a.res}, "B": {pB, b.res}} {
		s := runs[r.prefix]
		if s.puts != r.res.Successes {
			t.Errorf("run %s: %d puts under %s, want its %d operations", name, s.puts, r.prefix, r.res.Successes)
		}
		if len(s.deleteRevisions) != 1 || s.deletes != r.res.KeysRemoved || r.res.KeysRemoved == 0 {
			t.Errorf("run %s: deletes under %s at revisions %v, want one DeleteRange of the %d keys it removed", name, r.prefix, s.deleteRevisions, r.res.KeysRemoved)
		}
		for rev := range s.deleteRevisions {
			if rev < s.last {
				t.Errorf("run %s: a key under %s was deleted at revision %d, before the run's last put at %d", name, r.prefix, rev, s.last)
			}
		}
	}

	// The runs really overlapped, and B's keys were there when A cleaned up.
	sA, sB := runs[pA], runs[pB]
	if !(sA.firstPut < sB.last && sB.firstPut < sA.last) {
		t.Errorf("the runs did not write at the same time: A %d..%d, B %d..%d", sA.firstPut, sA.last, sB.firstPut, sB.last)
	}
	for rev := range sA.deleteRevisions {
		resp, err := c.Get(ctxT(t), pB, clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithRev(rev))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count == 0 || sB.last <= rev {
			t.Errorf("B had %d keys when A cleaned up at revision %d and last wrote at %d: the test did not make A clean up in the middle of B", resp.Count, rev, sB.last)
		}
	}
}
