package collector

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

func init() {
	registerCollector("probe", true, snapshot.Needs{Probes: true}, phaseProbe, newProbeCollector)
}

// probeCollector reports one real read per member and kind. It keeps no history: percentiles
// come from quantile_over_time in PromQL.
type probeCollector struct {
	duration, success *prometheus.Desc
}

func newProbeCollector() Collector {
	return &probeCollector{
		duration: memberDesc("probe_duration_seconds", "Duration of this scrape's probe read against the member alone; only emitted when the read succeeded.", "probe"),
		success:  memberDesc("probe_success", "1 when this scrape's probe read against the member succeeded, else 0.", "probe"),
	}
}

var errNoProbeAnswered = errors.New("no probe got an answer")

func (c *probeCollector) Update(s *snapshot.Snapshot, out Sink) error {
	if s.MemberListErr != nil {
		return errNoMembers(s)
	}
	answered := false
	for _, m := range s.Members {
		// A probe that does not apply to the member (linearizable reads on a learner) has no series.
		for _, kind := range m.ProbeKinds() {
			l := append(memberLabels(m), string(kind))
			p, made := m.Probe(kind)
			ok := made && p.Err == nil
			out.Gauge(c.success, boolValue(ok), l...)
			if ok {
				answered = true
				out.Gauge(c.duration, p.Duration.Seconds(), l...)
			}
		}
	}
	if !answered {
		return errNoProbeAnswered
	}
	return nil
}
