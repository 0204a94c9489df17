package defrag

import (
	"cmp"
	"slices"

	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// Member states in a Report.
const (
	StatePlanned   = "planned"    // the rule asks for it; not started (dry run, or the run stopped before it)
	StateDone      = "done"       // defragmented and healthy again
	StateFailed    = "failed"     // the step for this member failed; the run stopped there
	StateNotNeeded = "not needed" // the rule does not ask for it
	StateSkipped   = "skipped"    // never defragmented by this command (learner, not started)
	StateUnknown   = "unknown"    // did not answer Status: the rule could not be evaluated
)

// MemberResult is one member's row in the plan and in the final report.
type MemberResult struct {
	Name     string `json:"name"`
	ID       string `json:"id"`
	Endpoint string `json:"endpoint"`
	Learner  bool   `json:"learner"`
	Leader   bool   `json:"leader"`
	// QuotaSource says where Before.Quota came from: "status" (etcd >= 3.6 reports it), "flag"
	// (--quota-bytes) or "unknown".
	QuotaSource string `json:"quota_source"`
	Before      Sizes  `json:"before"`
	// After is set once the member was defragmented.
	After *Sizes `json:"after,omitempty"`
	// Needed is the rule's verdict and Reason its explanation (or why it was skipped).
	Needed bool   `json:"needed"`
	Reason string `json:"reason"`
	// Order is the member's place in the plan, from 1; 0 when it is not in it.
	Order           int     `json:"order,omitempty"`
	State           string  `json:"state"`
	DurationSeconds float64 `json:"duration_seconds,omitempty"`
	Error           string  `json:"error,omitempty"`

	id uint64
}

// Reclaimed is how much the defragmentation gave back (0 before it ran).
func (m *MemberResult) Reclaimed() int64 {
	if m.After == nil {
		return 0
	}
	return m.Before.DBSize - m.After.DBSize
}

// plan evaluates the rule for every member of s and orders those that need it: followers first
// (by name, for a stable order), the leader last. quotaBytes stands in for the quota of members
// that do not report one.
func plan(s *snapshot.Snapshot, rule Rule, quotaBytes int64) []*MemberResult {
	leader := s.Cluster().Leader
	var out []*MemberResult
	for _, m := range s.Members {
		r := &MemberResult{
			Name: m.Name, ID: snapshot.IDString(m.ID), Endpoint: m.Endpoint, Learner: m.IsLearner,
			Leader: m.ID == leader && leader != 0, QuotaSource: "unknown", id: m.ID,
		}
		out = append(out, r)
		if m.Status != nil {
			r.Before, r.QuotaSource = sizes(m, quotaBytes)
		}
		switch {
		case m.IsLearner:
			// A learner is promoted or removed, not maintained in place; etcd-defrag skips it too.
			r.State, r.Reason = StateSkipped, "learner"
		case m.Endpoint == "":
			r.State, r.Reason = StateSkipped, "not started: no client URL"
		case m.Status == nil:
			r.State, r.Reason = StateUnknown, "did not answer Status"
			if m.StatusErr != nil {
				r.Reason += ": " + m.StatusErr.Error()
			}
		default:
			r.Needed, r.Reason = rule.Evaluate(r.Before)
			r.State = StateNotNeeded
			if r.Needed {
				r.State = StatePlanned
			}
		}
	}
	var todo []*MemberResult
	for _, r := range out {
		if r.Needed {
			todo = append(todo, r)
		}
	}
	slices.SortStableFunc(todo, func(a, b *MemberResult) int {
		if a.Leader != b.Leader {
			if a.Leader {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.Name, b.Name)
	})
	for i, r := range todo {
		r.Order = i + 1
	}
	// Rows in the order they are (or would be) defragmented, then the others by name.
	slices.SortStableFunc(out, func(a, b *MemberResult) int {
		if (a.Order == 0) != (b.Order == 0) {
			if a.Order == 0 {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(a.Order, b.Order), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// sizes reads a member's backend sizes, with its own quota when it reports one.
func sizes(m *snapshot.Member, quotaBytes int64) (Sizes, string) {
	st := m.Status
	s := Sizes{DBSize: st.DbSize, DBSizeInUse: st.DbSizeInUse}
	switch {
	case st.DbSizeQuota > 0:
		s.Quota = st.DbSizeQuota
		return s, "status"
	case quotaBytes > 0:
		s.Quota = quotaBytes
		return s, "flag"
	}
	return s, "unknown"
}

// ordered returns the members of the plan in the order they are to be defragmented.
func ordered(rs []*MemberResult) []*MemberResult {
	var out []*MemberResult
	for _, r := range rs {
		if r.Order > 0 {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b *MemberResult) int { return cmp.Compare(a.Order, b.Order) })
	return out
}
