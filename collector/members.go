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
		// No version label: it is known only while the member answers Status, and a label that
		// changes with the member's health would end the series at every outage and start a new
		// one after it. The version is etcd_monitor_member_version_info, from the status collector.
		info: memberDesc("info", "Member metadata from the member list, present while the member is in the list, up or down.",
			"client_urls", "peer_urls", "is_learner"),
	}
}

func (c *membersCollector) Update(s *snapshot.Snapshot, out Sink) error {
	if s.MemberListErr != nil {
		return errNoMembers(s)
	}
	for _, m := range s.Members {
		out.Gauge(c.info, 1,
			append(memberLabels(m), labelValue(strings.Join(m.ClientURLs, ",")), labelValue(strings.Join(m.PeerURLs, ",")),
				strconv.FormatBool(m.IsLearner))...)
	}
	return nil
}
