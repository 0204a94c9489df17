package snapshot

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Verdict is the overall state of a cluster, from best to worst.
type Verdict string

const (
	// Healthy: every member is up, no alarm is raised and all members agree on one leader.
	Healthy Verdict = "healthy"
	// Degraded: the cluster has quorum but a member is down, an alarm is raised, members
	// name more than one leader, or a member's data differs from the majority's (DataCheck).
	Degraded Verdict = "degraded"
	// Critical: etcd is unreachable or the cluster has no quorum.
	Critical Verdict = "critical"
)

// Health is the verdict on a snapshot with the reasons for it (empty when healthy).
type Health struct {
	Verdict Verdict  `json:"verdict"`
	Reasons []string `json:"reasons"`
}

// ExitCode is the Nagios-style status of the verdict: 0 healthy, 1 degraded, 2 critical.
func (v Verdict) ExitCode() int {
	switch v {
	case Healthy:
		return 0
	case Degraded:
		return 1
	default:
		return 2
	}
}

// Health judges the snapshot. It reads only the snapshot; the snapshot must have been taken with
// Needs.Status for members' state and leaders to be known.
func (s *Snapshot) Health() Health {
	h := Health{Verdict: Healthy, Reasons: []string{}}
	worsen := func(v Verdict, format string, args ...any) {
		if v == Critical || h.Verdict == Healthy {
			h.Verdict = v
		}
		h.Reasons = append(h.Reasons, fmt.Sprintf(format, args...))
	}
	if !s.Up() {
		msg := "etcd unreachable: no endpoint answered"
		if s.MemberListErr != nil {
			msg += ": " + s.MemberListErr.Error()
		}
		worsen(Critical, "%s", msg)
		return h
	}
	c := s.Cluster()
	if !c.HasQuorum {
		worsen(Critical, "no quorum: %d of %d voting members needed agree on a leader", c.Quorum, c.VotingMembers)
	}
	for _, m := range s.Members {
		if !m.Up() {
			reason := fmt.Sprintf("member %s down", memberLabel(m))
			if m.StatusErr != nil {
				reason += ": " + m.StatusErr.Error()
			}
			worsen(Degraded, "%s", reason)
		}
	}
	if len(c.Leaders) > 1 {
		ids := make([]string, len(c.Leaders))
		for i, l := range c.Leaders {
			ids[i] = IDString(l)
		}
		worsen(Degraded, "members disagree on the leader: %s", strings.Join(ids, ", "))
	}
	for _, m := range s.Members {
		var raised []string
		for a, on := range m.Alarms {
			if on {
				raised = append(raised, a)
			}
		}
		sort.Strings(raised)
		for _, a := range raised {
			worsen(Degraded, "alarm %s raised on member %s", a, memberLabel(m))
		}
	}
	for _, a := range s.UnknownAlarms {
		worsen(Degraded, "alarm %s", a)
	}
	if dc := s.DataCheck; dc != nil {
		names := map[uint64]*Member{}
		for _, m := range s.Members {
			names[m.ID] = m
		}
		for _, id := range dc.Minority {
			label := IDString(id)
			if m, ok := names[id]; ok {
				label = memberLabel(m)
			}
			worsen(Degraded, "member %s data differs from the majority's (HashKV at revision %d, checked %s)",
				label, dc.Revision, dc.Time.UTC().Format(time.RFC3339))
		}
	}
	return h
}

func memberLabel(m *Member) string {
	if m.Name == "" {
		return IDString(m.ID)
	}
	return fmt.Sprintf("%s (%s)", m.Name, IDString(m.ID))
}
