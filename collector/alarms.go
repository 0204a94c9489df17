package collector

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

func init() {
	registerCollector("alarms", true, snapshot.Needs{Status: true}, phaseStatus, newAlarmsCollector)
}

// alarmsCollector reads alarms from the Status responses rather than AlarmList: AlarmList is a
// raft proposal (it grows the raft log at every call) and blocks when quorum is lost, exactly
// when alarms matter most.
type alarmsCollector struct {
	alarm *prometheus.Desc
}

func newAlarmsCollector() Collector {
	return &alarmsCollector{
		alarm: memberDesc("alarm", "1 when the alarm is raised for the member, as reported by any member that answered; both alarm types are emitted for every member.", "alarm"),
	}
}

func (c *alarmsCollector) Update(s *snapshot.Snapshot, out Sink) error {
	if s.MemberListErr != nil {
		return errNoMembers(s)
	}
	if !s.Cluster().AnyStatus {
		// Nobody answered: an absent series says "unknown", a 0 would say "no alarm".
		return errNoStatus
	}
	for _, m := range s.Members {
		for _, a := range snapshot.AlarmTypes {
			out.Gauge(c.alarm, boolValue(m.Alarms[a]), append(memberLabels(m), a)...)
		}
	}
	// An alarm raised for a member that has since been removed still blocks the cluster.
	for _, a := range s.UnknownAlarms {
		out.Gauge(c.alarm, 1, snapshot.IDString(a.MemberID), "", labelValue(a.Alarm))
	}
	return nil
}
