package snapshot

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

func up(id, leader uint64) *Member {
	return &Member{ID: id, Name: "m" + IDString(id), Status: &pb.StatusResponse{Leader: leader}}
}

func down(id uint64) *Member {
	return &Member{ID: id, Name: "m" + IDString(id), StatusErr: errors.New("connection refused")}
}

func TestHealth(t *testing.T) {
	alarmed := up(2, 1)
	alarmed.Alarms = map[string]bool{AlarmNoSpace: true, AlarmCorrupt: false}
	for name, tc := range map[string]struct {
		s       *Snapshot
		want    Verdict
		reasons []string
	}{
		"healthy": {s: &Snapshot{Members: []*Member{up(1, 1), up(2, 1), up(3, 1)}}, want: Healthy},
		"one down": {
			s:       &Snapshot{Members: []*Member{up(1, 1), up(2, 1), down(3)}},
			want:    Degraded,
			reasons: []string{"member m3 (3) down"},
		},
		"alarm": {
			s:       &Snapshot{Members: []*Member{up(1, 1), alarmed, up(3, 1)}},
			want:    Degraded,
			reasons: []string{"alarm NOSPACE raised on member m2 (2)"},
		},
		"unknown alarm": {
			s: &Snapshot{Members: []*Member{up(1, 1), up(2, 1), up(3, 1)},
				UnknownAlarms: []MemberAlarm{{MemberID: 9, Alarm: AlarmCorrupt}}},
			want:    Degraded,
			reasons: []string{"alarm CORRUPT on member 9"},
		},
		"two leaders": {
			// A quorum of five follows 1; a partitioned minority still follows 4.
			s:       &Snapshot{Members: []*Member{up(1, 1), up(2, 1), up(3, 1), up(4, 4), up(5, 4)}},
			want:    Degraded,
			reasons: []string{"members disagree on the leader: 1, 4"},
		},
		"two down": {
			s:       &Snapshot{Members: []*Member{up(1, 0), down(2), down(3)}},
			want:    Critical,
			reasons: []string{"no quorum", "member m2 (2) down", "member m3 (3) down"},
		},
		"split without majority": {
			s:       &Snapshot{Members: []*Member{up(1, 1), up(2, 2), up(3, 3)}},
			want:    Critical,
			reasons: []string{"no quorum", "disagree"},
		},
		"learner does not count for quorum": {
			s: &Snapshot{Members: []*Member{up(1, 1), down(2), down(3),
				{ID: 4, IsLearner: true, Status: &pb.StatusResponse{Leader: 1}}}},
			want: Critical,
		},
		"data differs": {
			s: &Snapshot{Members: []*Member{up(1, 1), up(2, 1), up(3, 1)},
				DataCheck: &DataCheck{Time: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC), Revision: 42, Minority: []uint64{3}}},
			want:    Degraded,
			reasons: []string{"member m3 (3) data differs from the majority's (HashKV at revision 42, checked 2026-12-01T09:00:00Z)"},
		},
		"data agrees": {
			s:    &Snapshot{Members: []*Member{up(1, 1), up(2, 1), up(3, 1)}, DataCheck: &DataCheck{Revision: 42}},
			want: Healthy,
		},
		"unreachable": {
			s:       &Snapshot{MemberListErr: errors.New("context deadline exceeded")},
			want:    Critical,
			reasons: []string{"etcd unreachable: no endpoint answered: context deadline exceeded"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			h := tc.s.Health()
			if h.Verdict != tc.want {
				t.Fatalf("verdict = %s, want %s (reasons %q)", h.Verdict, tc.want, h.Reasons)
			}
			if tc.want == Healthy && len(h.Reasons) != 0 {
				t.Errorf("healthy with reasons %q", h.Reasons)
			}
			if tc.want != Healthy && len(h.Reasons) == 0 {
				t.Errorf("%s without a reason", h.Verdict)
			}
			all := strings.Join(h.Reasons, "\n")
			for _, r := range tc.reasons {
				if !strings.Contains(all, r) {
					t.Errorf("reasons %q lack %q", h.Reasons, r)
				}
			}
		})
	}
}

func TestVerdictExitCode(t *testing.T) {
	for v, want := range map[Verdict]int{Healthy: 0, Degraded: 1, Critical: 2} {
		if got := v.ExitCode(); got != want {
			t.Errorf("%s.ExitCode() = %d, want %d", v, got, want)
		}
	}
}

// TestHealthRealCluster judges snapshots of a real cluster as members stop.
func TestHealthRealCluster(t *testing.T) {
	c := etcdtest.Start(t, 3)
	taker, err := NewTaker(etcdconn.Config{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer taker.Close()
	waitFor := func(want Verdict) Health {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			h := taker.Take(ctx, Needs{Status: true, Probes: true}).Health()
			cancel()
			if h.Verdict == want {
				return h
			}
			if time.Now().After(deadline) {
				t.Fatalf("verdict = %s (%q), want %s", h.Verdict, h.Reasons, want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitFor(Healthy)
	c.Members[2].Stop()
	h := waitFor(Degraded)
	if len(h.Reasons) != 1 || !strings.Contains(h.Reasons[0], "member m2") {
		t.Errorf("reasons = %q, want only m2 down", h.Reasons)
	}
	c.Members[1].Stop()
	waitFor(Critical)
}
