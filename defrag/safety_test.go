package defrag

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

// noDefrag fails the test if the runner ever calls Defragment.
func noDefrag(t *testing.T) Hooks {
	return Hooks{DefragStart: func(id uint64) { t.Errorf("member %x was defragmented", id) }}
}

// TestStopsWhenAVotingMemberIsDown: with one of three members down, defragmenting another would
// leave one member serving; the run must refuse before touching anything.
func TestStopsWhenAVotingMemberIsDown(t *testing.T) {
	c := etcdtest.Start(t, 3)
	eps := c.Endpoints()
	cli := newClient(t, eps...)
	fragment(t, cli, eps, 200, 32*1024)
	c.Members[2].Stop()

	cfg := testConfig()
	cfg.MemberTimeout = 2 * time.Second
	cfg.DryRun = true
	r, _ := newRunner(t, eps, cfg)
	r.Hooks = noDefrag(t)
	rep, err := r.Run(ctxT(t, time.Minute))
	if err != nil || !strings.Contains(rep.Blocked, "voting member m2") {
		t.Errorf("dry run: error %v, blocked %q; want the plan, saying a run would not start", err, rep.Blocked)
	}

	cfg.DryRun = false
	r, _ = newRunner(t, eps, cfg)
	r.Hooks = noDefrag(t)
	rep, err = r.Run(ctxT(t, time.Minute))
	if err == nil || !strings.Contains(err.Error(), "voting member m2") || !strings.Contains(err.Error(), "is down") {
		t.Fatalf("run error = %v, want it to name the down member", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error spans lines: %q", err)
	}
	if rep.Success || rep.Defragmented() != 0 {
		t.Errorf("report: success %v, %d defragmented", rep.Success, rep.Defragmented())
	}
}

// TestCorruptAlarmStopsAtOnce: a CORRUPT alarm is not waited out; the run stops before the first
// member with an error that names it.
func TestCorruptAlarmStopsAtOnce(t *testing.T) {
	c := etcdtest.Start(t, 3)
	eps := c.Endpoints()
	cli := newClient(t, eps...)
	fragment(t, cli, eps, 200, 32*1024)
	ctx := ctxT(t, time.Minute)
	// etcd raises CORRUPT itself only after a failed hash check (off by default); the Alarm RPC
	// raises the same alarm through raft.
	if _, err := pb.NewMaintenanceClient(cli.ActiveConnection()).Alarm(ctx, &pb.AlarmRequest{
		Action: pb.AlarmRequest_ACTIVATE, MemberID: c.Members[1].ID(), Alarm: pb.AlarmType_CORRUPT,
	}); err != nil {
		t.Fatalf("raising CORRUPT: %v", err)
	}

	cfg := testConfig()
	cfg.MemberTimeout = time.Minute // waiting it out would take this long; it must not wait
	r, _ := newRunner(t, eps, cfg)
	r.Hooks = noDefrag(t)
	start := time.Now()
	_, err := r.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "CORRUPT alarm raised for member m1") {
		t.Fatalf("run error = %v, want the CORRUPT alarm named", err)
	}
	if waited := time.Since(start); waited >= cfg.MemberTimeout {
		t.Errorf("the run waited %s (the whole --member-timeout) on a CORRUPT alarm", waited)
	}
}

// TestMoveLeaderFirst: with MoveLeader, leadership leaves the leader before its turn, so no
// member is the leader while it is defragmented, and the first leader still goes last.
func TestMoveLeaderFirst(t *testing.T) {
	c := etcdtest.Start(t, 3)
	eps := c.Endpoints()
	cli := newClient(t, eps...)
	fragment(t, cli, eps, 200, 32*1024)
	first := states(t, ctxT(t, 10*time.Second), cli, eps)[eps[0]].leader

	cfg := testConfig()
	cfg.MoveLeader = true
	rec := &recorder{t: t, client: cli, eps: eps}
	r, progress := newRunner(t, eps, cfg)
	r.Hooks = rec.hooks()
	if _, err := r.Run(ctxT(t, 2*time.Minute)); err != nil {
		t.Fatalf("run: %v\n%s", err, progress)
	}
	if len(rec.done) != 3 {
		t.Fatalf("%d Defragment calls, want 3", len(rec.done))
	}
	for i, iv := range rec.done {
		if iv.wasLeader {
			t.Errorf("call %d: member %x was the leader while defragmented", i+1, iv.member)
		}
	}
	if last := rec.done[2].member; last != first {
		t.Errorf("last defragmented %x, want the first leader %x", last, first)
	}
	if !strings.Contains(progress.String(), "moving leadership from") {
		t.Errorf("progress does not say leadership moved:\n%s", progress)
	}
}

// TestDisarmNoSpace fills a small quota until NOSPACE, frees the keys, and checks that the run
// evaluates the quota rule from the member's own reported quota, defragments, and disarms
// NOSPACE (and only that alarm) once usage fell below the threshold.
func TestDisarmNoSpace(t *testing.T) {
	const quota = 4 * MiB
	c := etcdtest.Start(t, 1, func(_ int, cfg *embed.Config) { cfg.QuotaBackendBytes = quota })
	eps := c.Endpoints()
	cli := newClient(t, eps...)
	ctx := ctxT(t, 2*time.Minute)
	val := strings.Repeat("q", 60*1024)
	full := false
	for i := 0; i < 500 && !full; i++ {
		_, err := cli.Put(ctx, fmt.Sprintf("/fill/%04d", i), val)
		switch {
		case errors.Is(err, rpctypes.ErrNoSpace):
			full = true
		case err != nil:
			t.Fatalf("put: %v", err)
		}
	}
	if !full {
		t.Fatal("the quota never filled")
	}
	resp, err := cli.Delete(ctx, "/fill/", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("delete under NOSPACE: %v", err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compact: %v", err)
	}

	cfg := testConfig()
	// Only the quota condition can select the member: the fragmentation one is out of reach.
	cfg.Rule.MinFreeRatio, cfg.Rule.MinFreeBytes = 1, 1<<40
	cfg.Rule.QuotaMinFreeBytes = 0
	cfg.DisarmNoSpace = true
	r, progress := newRunner(t, eps, cfg)
	rep, err := r.Run(ctx)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, progress)
	}
	m := rep.Members[0]
	if m.QuotaSource != "status" || m.Before.Quota != quota || m.State != StateDone {
		t.Fatalf("member: quota %d from %q, state %q (%s); want the reported %d, done", m.Before.Quota, m.QuotaSource, m.State, m.Reason, quota)
	}
	if rep.NoSpace != "disarmed" {
		t.Errorf("NoSpace = %q, want disarmed", rep.NoSpace)
	}
	alarms, err := cli.AlarmList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(alarms.Alarms) != 0 {
		t.Errorf("alarms left: %v", alarms.Alarms)
	}
	if _, err := cli.Put(ctx, "/after", "ok"); err != nil {
		t.Errorf("put after the disarm: %v", err)
	}
}

// TestNoSpaceKeptWhileAboveThreshold: the alarm stays when the file is still above the quota
// threshold after the run (nothing was selected here), and the report says why.
func TestNoSpaceKeptWhileAboveThreshold(t *testing.T) {
	const quota = 4 * MiB
	c := etcdtest.Start(t, 1, func(_ int, cfg *embed.Config) { cfg.QuotaBackendBytes = quota })
	eps := c.Endpoints()
	cli := newClient(t, eps...)
	ctx := ctxT(t, 2*time.Minute)
	val := strings.Repeat("q", 60*1024)
	for i := range 500 {
		if _, err := cli.Put(ctx, fmt.Sprintf("/fill/%04d", i), val); errors.Is(err, rpctypes.ErrNoSpace) {
			break
		} else if err != nil {
			t.Fatalf("put: %v", err)
		}
	}
	cfg := testConfig()
	cfg.DisarmNoSpace = true
	r, _ := newRunner(t, eps, cfg)
	r.Hooks = noDefrag(t)
	rep, err := r.Run(ctx)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.HasPrefix(rep.NoSpace, "kept: member m0") || !strings.Contains(rep.NoSpace, "of its quota") {
		t.Errorf("NoSpace = %q, want it kept with the member's usage", rep.NoSpace)
	}
	alarms, err := cli.AlarmList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(alarms.Alarms) != 1 || alarms.Alarms[0].Alarm != pb.AlarmType_NOSPACE {
		t.Errorf("alarms = %v, want NOSPACE still raised", alarms.Alarms)
	}
}

// TestLearnerSkipped: a learner is in the plan as skipped, is never defragmented and keeps its
// fragmented file, while the voting members are defragmented.
func TestLearnerSkipped(t *testing.T) {
	c := etcdtest.Start(t, 3)
	voters := c.Endpoints()
	learner, learnerID := c.Add(t, true)
	learner.Start(t)
	all := append(voters, learner.ClientURL)
	cli := newClient(t, voters...)
	fragment(t, cli, all, 200, 32*1024)
	before := states(t, ctxT(t, 10*time.Second), cli, all)

	rec := &recorder{t: t, client: cli, eps: voters}
	r, progress := newRunner(t, voters, testConfig())
	r.Hooks = rec.hooks()
	rep, err := r.Run(ctxT(t, 2*time.Minute))
	if err != nil {
		t.Fatalf("run: %v\n%s", err, progress)
	}
	if len(rec.done) != 3 {
		t.Errorf("%d Defragment calls, want one per voting member", len(rec.done))
	}
	for _, iv := range rec.done {
		if iv.member == learnerID {
			t.Errorf("the learner was defragmented")
		}
	}
	var found bool
	for _, m := range rep.Members {
		if m.Learner {
			found = true
			if m.State != StateSkipped || m.Reason != "learner" || m.Order != 0 {
				t.Errorf("learner row: %+v", m)
			}
		}
	}
	if !found {
		t.Fatalf("the learner is not in the report: %+v", rep.Members)
	}
	after := states(t, ctxT(t, 10*time.Second), cli, all)
	if after[learner.ClientURL].dbSize < before[learner.ClientURL].dbSize {
		t.Errorf("learner file shrank from %d to %d", before[learner.ClientURL].dbSize, after[learner.ClientURL].dbSize)
	}
}

// TestStopsWhenAMemberDoesNotRecover: the first member goes down right after its Defragment call;
// its after-check fails within --member-timeout and the run stops there, touching no other member.
func TestStopsWhenAMemberDoesNotRecover(t *testing.T) {
	c := etcdtest.Start(t, 3)
	eps := c.Endpoints()
	cli := newClient(t, eps...)
	fragment(t, cli, eps, 200, 32*1024)

	cfg := testConfig()
	cfg.MemberTimeout = 3 * time.Second
	r, progress := newRunner(t, eps, cfg)
	var calls []uint64
	r.Hooks = Hooks{
		DefragStart: func(id uint64) { calls = append(calls, id) },
		DefragEnd: func(id uint64, _ error) {
			for _, m := range c.Members {
				if m.Etcd() != nil && m.ID() == id {
					m.Stop()
				}
			}
		},
	}
	rep, err := r.Run(ctxT(t, time.Minute))
	if err == nil || !strings.Contains(err.Error(), "after defragmenting: not ready within --member-timeout=3s") {
		t.Fatalf("run error = %v\n%s", err, progress)
	}
	if len(calls) != 1 {
		t.Errorf("%d Defragment calls, want the run to stop after the first", len(calls))
	}
	states := map[string]int{}
	for _, m := range rep.Members {
		states[m.State]++
	}
	if states[StateFailed] != 1 || states[StatePlanned] != 2 || rep.Success {
		t.Errorf("member states %v, success %v; want 1 failed and 2 still planned", states, rep.Success)
	}
	if !strings.Contains(progress.String(), "FAILED: defragmented in") {
		t.Errorf("progress does not report the failure:\n%s", progress)
	}
}

// TestLeaderLastAfterAnElection: the member picked first wins an election before its turn (the
// test moves leadership to it); it is not defragmented then, but last, as the leader.
func TestLeaderLastAfterAnElection(t *testing.T) {
	c := etcdtest.Start(t, 3)
	eps := c.Endpoints()
	cli := newClient(t, eps...)
	fragment(t, cli, eps, 200, 32*1024)

	rec := &recorder{t: t, client: cli, eps: eps}
	r, progress := newRunner(t, eps, testConfig())
	r.Hooks = rec.hooks()
	var first uint64
	r.Hooks.Chosen = func(id uint64) {
		if first != 0 {
			return
		}
		first = id
		ctx := ctxT(t, 30*time.Second)
		for _, ep := range eps { // MoveLeader is served by the leader only
			st, err := cli.Status(ctx, ep)
			if err != nil || st.Leader != st.Header.MemberId {
				continue
			}
			lc := newClient(t, ep)
			if _, err := lc.MoveLeader(ctx, id); err != nil {
				t.Fatalf("moving leadership to %x: %v", id, err)
			}
			return
		}
		t.Fatal("no leader to move leadership from")
	}
	if _, err := r.Run(ctxT(t, 2*time.Minute)); err != nil {
		t.Fatalf("run: %v\n%s", err, progress)
	}
	if len(rec.done) != 3 {
		t.Fatalf("%d Defragment calls, want 3", len(rec.done))
	}
	for i, iv := range rec.done {
		if last := i == 2; iv.wasLeader != last {
			t.Errorf("call %d (member %x): leader %v, want the leader last and only last", i+1, iv.member, iv.wasLeader)
		}
	}
	if rec.done[2].member != first {
		t.Errorf("last defragmented %x, want %x, which became the leader", rec.done[2].member, first)
	}
}
