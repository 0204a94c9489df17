package collector

import (
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

func init() {
	registerCollector("members", true, snapshot.Needs{Status: true}, phaseMemberList, newMembersCollector)
}

type membersCollector struct {
	info *prometheus.Desc
}

func newMembersCollector() Collector {
	return &membersCollector{
		info: memberDesc("info", "Member metadata from the member list; version is empty while the member does not answer.",
			"client_urls", "peer_urls", "version", "is_learner"),
	}
}

func (c *membersCollector) Update(s *snapshot.Snapshot, out Sink) error {
	if s.MemberListErr != nil {
		return errNoMembers(s)
	}
	for _, m := range s.Members {
		out.Gauge(c.info, 1,
			append(memberLabels(m), labelValue(strings.Join(m.ClientURLs, ",")), labelValue(strings.Join(m.PeerURLs, ",")),
				labelValue(m.Version()), strconv.FormatBool(m.IsLearner))...)
	}
	return nil
}
