package defrag

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-monitor/etcd-monitor/pushgw"
)

// PushJob is the Pushgateway job of the pushed series.
const PushJob = "etcd_defrag"

// Push sends a finished run's results to a Pushgateway under job etcd_defrag, grouped by cluster.
// Like the benchmark's and the snapshot command's push it uses POST (add semantics): a failed run,
// which does not push etcd_defrag_last_success_timestamp_seconds, leaves the previous success's
// timestamp in place for alerting, and the other way round for the failure timestamp.
func Push(ctx context.Context, url, cluster string, rep *Report, now time.Time) error {
	return pushgw.Push(ctx, url, PushJob, []pushgw.Label{{Name: "cluster", Value: cluster}}, reportCollector{rep: rep, now: now})
}

var (
	memberLabels = []string{"member", "member_id"}

	descLastRun = prometheus.NewDesc("etcd_defrag_last_run_timestamp_seconds",
		"Unix time at which the last defrag run finished, successful or not.", nil, nil)
	descLastSuccess = prometheus.NewDesc("etcd_defrag_last_success_timestamp_seconds",
		"Unix time at which a defrag run last finished with every selected member defragmented and healthy again.", nil, nil)
	descLastFailure = prometheus.NewDesc("etcd_defrag_last_failure_timestamp_seconds",
		"Unix time at which a defrag run last stopped on an error.", nil, nil)
	descDuration = prometheus.NewDesc("etcd_defrag_duration_seconds",
		"Wall-clock time of the last defrag run, health checks included.", nil, nil)
	descDefragmented = prometheus.NewDesc("etcd_defrag_members_defragmented",
		"Members the last defrag run defragmented.", nil, nil)
	descReclaimed = prometheus.NewDesc("etcd_defrag_reclaimed_bytes",
		"Bytes of backend file the last defrag run gave back, over all members.", nil, nil)
	descBefore = prometheus.NewDesc("etcd_defrag_member_db_size_before_bytes",
		"Backend size of a member just before the last run defragmented it.", memberLabels, nil)
	descAfter = prometheus.NewDesc("etcd_defrag_member_db_size_after_bytes",
		"Backend size of a member once the last run defragmented it.", memberLabels, nil)
	descMemberDuration = prometheus.NewDesc("etcd_defrag_member_duration_seconds",
		"How long the Defragment call of a member took in the last run.", memberLabels, nil)
)

// reportCollector exposes one finished run as const metrics. Each is a gauge: every push replaces
// the last run's value.
type reportCollector struct {
	rep *Report
	now time.Time
}

func (c reportCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLastRun, descLastSuccess, descLastFailure, descDuration,
		descDefragmented, descReclaimed, descBefore, descAfter, descMemberDuration} {
		ch <- d
	}
}

func (c reportCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.rep
	ts := float64(c.now.UnixNano()) / 1e9
	ch <- prometheus.MustNewConstMetric(descLastRun, prometheus.GaugeValue, ts)
	if r.Success {
		ch <- prometheus.MustNewConstMetric(descLastSuccess, prometheus.GaugeValue, ts)
	} else {
		ch <- prometheus.MustNewConstMetric(descLastFailure, prometheus.GaugeValue, ts)
	}
	ch <- prometheus.MustNewConstMetric(descDuration, prometheus.GaugeValue, r.DurationSeconds)
	ch <- prometheus.MustNewConstMetric(descDefragmented, prometheus.GaugeValue, float64(r.Defragmented()))
	ch <- prometheus.MustNewConstMetric(descReclaimed, prometheus.GaugeValue, float64(r.Reclaimed()))
	for _, m := range r.Members {
		if m.After == nil {
			continue
		}
		memberGauge(ch, descBefore, float64(m.Before.DBSize), m)
		memberGauge(ch, descAfter, float64(m.After.DBSize), m)
		memberGauge(ch, descMemberDuration, m.DurationSeconds, m)
	}
}

// memberGauge leaves out a series whose labels cannot be built (a member name etcd accepted but
// that is not valid UTF-8) rather than panic: the run's own series still get pushed.
func memberGauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, m *MemberResult) {
	if metric, err := prometheus.NewConstMetric(d, prometheus.GaugeValue, v, m.Name, m.ID); err == nil {
		ch <- metric
	}
}
