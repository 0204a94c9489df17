package collector

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

func init() {
	registerCollector("status", true, snapshot.Needs{Status: true}, phaseStatus, newStatusCollector)
}

type statusCollector struct {
	up, isLeader, hasLeader, versionInfo     *prometheus.Desc
	raftTerm, raftIndex, raftApplied, revRev *prometheus.Desc
	dbSize, dbInUse, dbQuota                 *prometheus.Desc
}

func newStatusCollector() Collector {
	return &statusCollector{
		up:          memberDesc("up", "1 when the member answered Status within the scrape deadline, else 0."),
		isLeader:    memberDesc("is_leader", "1 when the member reports itself as the raft leader."),
		hasLeader:   memberDesc("has_leader", "1 when the member knows a leader, in its own view."),
		versionInfo: memberDesc("version_info", "1 with the etcd version the member reports; absent while the member does not answer Status.", "version"),
		raftTerm:    memberDesc("raft_term", "Raft term the member reports."),
		raftIndex:   memberDesc("raft_index", "Raft committed index the member reports."),
		raftApplied: memberDesc("raft_applied_index", "Raft index the member has applied to its store."),
		revRev:      memberDesc("revision", "Store revision the member reports."),
		dbSize:      memberDesc("db_size_bytes", "Physically allocated size of the member's backend database."),
		dbInUse:     memberDesc("db_size_in_use_bytes", "Logically used size of the member's backend database."),
		dbQuota:     memberDesc("db_quota_bytes", "Backend quota (--quota-backend-bytes) the member reports; etcd 3.6 and later."),
	}
}

var errNoStatus = errors.New("no member answered Status")

func (c *statusCollector) Update(s *snapshot.Snapshot, out Sink) error {
	if s.MemberListErr != nil {
		return errNoMembers(s)
	}
	anyUp := false
	for _, m := range s.Members {
		l := memberLabels(m)
		out.Gauge(c.up, boolValue(m.Up()), l...)
		if !m.Up() {
			continue
		}
		anyUp = true
		st := m.Status
		gauge := func(d *prometheus.Desc, v float64) {
			out.Gauge(d, v, l...)
		}
		if v := m.Version(); v != "" {
			out.Gauge(c.versionInfo, 1, append(l, labelValue(v))...)
		}
		gauge(c.isLeader, boolValue(m.IsLeader()))
		gauge(c.hasLeader, boolValue(st.Leader != 0))
		gauge(c.raftTerm, float64(st.RaftTerm))
		gauge(c.raftIndex, float64(st.RaftIndex))
		gauge(c.raftApplied, float64(st.RaftAppliedIndex))
		if st.Header != nil {
			gauge(c.revRev, float64(st.Header.Revision))
		}
		gauge(c.dbSize, float64(st.DbSize))
		gauge(c.dbInUse, float64(st.DbSizeInUse))
		if st.DbSizeQuota > 0 {
			gauge(c.dbQuota, float64(st.DbSizeQuota))
		}
	}
	if !anyUp {
		return errNoStatus
	}
	return nil
}
