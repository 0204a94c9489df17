package collector

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-monitor/etcd-monitor/consistency"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

func init() {
	registerCollector("consistency", true, snapshot.Needs{Status: true}, phaseNone, newConsistencyCollector)
}

// Defaults of --consistency.interval and --consistency.timeout. HashKV reads a member's whole
// keyspace (docs/consistency.md has its measured cost); divergence builds up slowly, so every ten
// minutes is often enough and costs little.
const (
	DefaultConsistencyInterval = 10 * time.Minute
	DefaultConsistencyTimeout  = time.Minute
)

// WithConsistency sets how often the consistency collector compares the members' HashKV and how
// long one comparison may take (--consistency.interval, --consistency.timeout).
func WithConsistency(interval, timeout time.Duration) Option {
	return func(e *Exporter) { e.consistencyInterval, e.consistencyTimeout = interval, timeout }
}

// consistencyCollector reports whether the members hold the same data, from a check that runs in
// the background at most once per interval (started by a scrape, waited for until the scrape's
// deadline): between checks the last result is served with the time it was taken.
type consistencyCollector struct {
	checker *consistency.Checker

	consistent, revision, compactRevision, distinct *prometheus.Desc
	timestamp, duration, success, lastSuccess       *prometheus.Desc
	unknown                                         *prometheus.Desc
}

func newConsistencyCollector() Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_consistency_"+name, help, labels, nil)
	}
	return &consistencyCollector{
		consistent: memberDesc("data_consistent",
			"1 when the member's HashKV at the compared revision equals the majority's, 0 when it differs; absent when the member could not be compared (see etcd_monitor_consistency_unknown_total)."),
		revision:        d("revision", "Revision the members' HashKV were compared at in the last check; absent when it compared none."),
		compactRevision: d("compact_revision", "Compact revision of the members compared in the last check (-1: never compacted); absent when it compared none."),
		distinct:        d("distinct_hashes", "Distinct HashKV values among the members compared in the last check (1: all agree); absent when it compared none."),
		timestamp:       d("check_timestamp_seconds", "When the last check started: its results are as of this time."),
		duration:        d("check_duration_seconds", "How long the last check took."),
		success:         d("check_success", "1 when the last check compared at least two members and found a majority, else 0."),
		lastSuccess:     d("last_success_timestamp_seconds", "When the last check that compared members started; absent before the first since the exporter started."),
		unknown: d("unknown_total",
			"Voting members left without a verdict by a check since the exporter started, by reason (member_down, hash_failed, permission_denied, revision_compacted, compact_revision_differs, too_few_members, no_majority).", "reason"),
	}
}

func (c *consistencyCollector) configure(e *Exporter) error {
	h, ok := e.taker.(consistency.Hasher)
	if !ok {
		// A taker that cannot ask HashKV (a wrapper in a test): the collector reports failure.
		return nil
	}
	interval, timeout := e.consistencyInterval, e.consistencyTimeout
	if interval == 0 {
		interval = DefaultConsistencyInterval
	}
	if timeout == 0 {
		timeout = DefaultConsistencyTimeout
	}
	var err error
	c.checker, err = consistency.New(h, interval, timeout, e.logger)
	return err
}

func (c *consistencyCollector) close() {
	if c.checker != nil {
		c.checker.Close()
	}
}

func (c *consistencyCollector) Update(s *snapshot.Snapshot, out Sink) error {
	if c.checker == nil {
		return errors.New("the snapshot taker cannot ask HashKV")
	}
	st := c.checker.Latest(s, s.Deadline)
	for _, reason := range consistency.Reasons {
		out.send(c.unknown, prometheus.CounterValue, float64(st.Unknown[reason]), reason)
	}
	if !st.LastSuccess.IsZero() {
		out.Gauge(c.lastSuccess, unixSeconds(st.LastSuccess))
	}
	r := st.Last
	if r == nil {
		if s.MemberListErr != nil {
			return errNoMembers(s)
		}
		return errors.New("no consistency check has finished yet")
	}
	out.Gauge(c.timestamp, unixSeconds(r.Time))
	out.Gauge(c.duration, r.Duration.Seconds())
	out.Gauge(c.success, boolValue(r.Compared))
	if !r.Compared {
		return nil
	}
	out.Gauge(c.revision, float64(r.Revision))
	out.Gauge(c.compactRevision, float64(r.CompactRevision))
	out.Gauge(c.distinct, float64(r.DistinctHashes))
	for _, m := range r.Members {
		if m.Compared {
			out.Gauge(c.consistent, boolValue(m.Agrees), snapshot.IDString(m.ID), labelValue(m.Name))
		}
	}
	return nil
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// DataCheck is the last comparison of the members' HashKV the consistency collector made (nil
// when it is off or none compared the members), for the status API's health verdict; it starts
// no check.
func (e *Exporter) DataCheck() *snapshot.DataCheck {
	c, ok := e.collectors["consistency"].(*consistencyCollector)
	if !ok || c.checker == nil {
		return nil
	}
	return c.checker.Peek().Last.DataCheck()
}
