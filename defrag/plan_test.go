package defrag

import (
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// The plan is pure: it reads a snapshot's data. These snapshots are built by hand to cover member
// kinds a small embedded cluster does not easily have at once; the run itself is tested on real
// etcd in defrag_test.go.
func TestPlanOrderAndSkips(t *testing.T) {
	const leader = 0xb
	frag := func(id uint64, quota int64) *pb.StatusResponse {
		return &pb.StatusResponse{Header: &pb.ResponseHeader{MemberId: id}, Leader: leader, DbSize: 300 * MiB, DbSizeInUse: 100 * MiB, DbSizeQuota: quota}
	}
	s := &snapshot.Snapshot{Members: []*snapshot.Member{
		{ID: leader, Name: "a-leader", Endpoint: "http://a", Status: frag(leader, 0)},
		{ID: 0xc, Name: "z-follower", Endpoint: "http://z", Status: frag(0xc, 0)},
		{ID: 0xd, Name: "m-follower", Endpoint: "http://m", Status: frag(0xd, 1<<30)},
		{ID: 0xe, Name: "learner", Endpoint: "http://l", IsLearner: true, Status: frag(0xe, 0)},
		{ID: 0xf, Name: "", Endpoint: ""},
		{ID: 0x10, Name: "down", Endpoint: "http://d", StatusErr: errors.New("connection refused")},
		{ID: 0x11, Name: "compact", Endpoint: "http://c", Status: &pb.StatusResponse{Leader: leader, DbSize: 300 * MiB, DbSizeInUse: 290 * MiB}},
	}}
	got := plan(s, DefaultRule, 2<<30)
	want := map[string]struct {
		order  int
		state  string
		source string
	}{
		"a-leader":   {3, StatePlanned, "flag"},
		"z-follower": {2, StatePlanned, "flag"},
		"m-follower": {1, StatePlanned, "status"},
		"learner":    {0, StateSkipped, "flag"},
		"":           {0, StateSkipped, "unknown"},
		"down":       {0, StateUnknown, "unknown"},
		"compact":    {0, StateNotNeeded, "flag"},
	}
	if len(got) != len(want) {
		t.Fatalf("plan has %d members, want %d", len(got), len(want))
	}
	for _, m := range got {
		w := want[m.Name]
		if m.Order != w.order || m.State != w.state || m.QuotaSource != w.source {
			t.Errorf("%q: order %d, state %q, quota from %q; want %d, %q, %q (reason %q)", m.Name, m.Order, m.State, m.QuotaSource, w.order, w.state, w.source, m.Reason)
		}
	}
	if m := got[0]; m.Name != "m-follower" || m.Before.Quota != 1<<30 {
		t.Errorf("a member's own quota must win over --quota-bytes: got %d", m.Before.Quota)
	}
	var names []string
	for _, m := range ordered(got) {
		names = append(names, m.Name)
	}
	if len(names) != 3 || names[2] != "a-leader" {
		t.Errorf("order = %v, want the leader last", names)
	}
}
