package collector

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

func init() {
	registerCollector("cluster", true, snapshot.Needs{Status: true}, phaseStatus, newClusterCollector)
}

// clusterCollector reports what no single member can: facts derived from all members' answers.
type clusterCollector struct {
	members, learners, membersUp, votingMembersUp, quorum, hasQuorum, leaders *prometheus.Desc
}

func newClusterCollector() Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_cluster_"+name, help, nil, nil)
	}
	return &clusterCollector{
		members:         d("members", "Members in the member list, learners included."),
		learners:        d("learners", "Learner (non-voting) members in the member list."),
		membersUp:       d("members_up", "Members that answered Status within the scrape deadline, learners included."),
		votingMembersUp: d("voting_members_up", "Voting members (learners excluded) that answered Status within the scrape deadline; compare with quorum."),
		quorum:          d("quorum", "Voting members needed for quorum."),
		hasQuorum:       d("has_quorum", "1 when at least a quorum of voting members is up and names the same leader."),
		leaders:         d("leaders", "Distinct leader IDs reported by the members that answered: 0 is no leader, 2 or more means members disagree (a stale leader cut off from its peers)."),
	}
}

func (c *clusterCollector) Update(s *snapshot.Snapshot, out Sink) error {
	if s.MemberListErr != nil {
		return errNoMembers(s)
	}
	cl := s.Cluster()
	out.Gauge(c.members, float64(cl.Members))
	out.Gauge(c.learners, float64(cl.Learners))
	out.Gauge(c.membersUp, float64(cl.MembersUp))
	out.Gauge(c.votingMembersUp, float64(cl.VotingMembersUp))
	out.Gauge(c.quorum, float64(cl.Quorum))
	out.Gauge(c.hasQuorum, boolValue(cl.HasQuorum))
	if !cl.AnyStatus {
		// With no answer, "0 leaders" would be a claim nobody made.
		return errNoStatus
	}
	out.Gauge(c.leaders, float64(len(cl.Leaders)))
	return nil
}
