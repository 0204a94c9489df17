package backup

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-monitor/etcd-monitor/pushgw"
)

// PushJob is the Pushgateway job of `snapshot save`; the group is the cluster.
const PushJob = "etcd_backup"

var (
	descLastSuccess = prometheus.NewDesc("etcd_backup_last_success_timestamp_seconds",
		"Unix time at which `etcd-monitor snapshot save` last saved a snapshot.", nil, nil)
	descLastFailure = prometheus.NewDesc("etcd_backup_last_failure_timestamp_seconds",
		"Unix time at which `etcd-monitor snapshot save` last failed.", nil, nil)
	descSize = prometheus.NewDesc("etcd_backup_snapshot_size_bytes",
		"Size of the last saved snapshot file.", nil, nil)
	descRevision = prometheus.NewDesc("etcd_backup_snapshot_revision",
		"Store revision the last saved snapshot holds.", nil, nil)
	descDuration = prometheus.NewDesc("etcd_backup_duration_seconds",
		"Wall-clock time of the last snapshot save, successful or not.", nil, nil)
	descVerification = prometheus.NewDesc("etcd_backup_verification",
		"Verdict on the last snapshot checked by `snapshot save`: 1 for the result that holds, 0 for the others.", []string{"result"}, nil)
)

// Push sends the save's outcome to the Pushgateway under job etcd_backup, grouped by cluster.
// Pushes add: a failure pushes its timestamp, duration and (when a file was checked) the verdict,
// and leaves the last success's timestamp, size and revision in place.
func Push(ctx context.Context, url string, res *SaveResult, saveErr error, now time.Time) error {
	return pushgw.Push(ctx, url, PushJob, []pushgw.Label{{Name: "cluster", Value: res.Cluster}},
		resultCollector{res: res, failed: saveErr != nil, now: now})
}

type resultCollector struct {
	res    *SaveResult
	failed bool
	now    time.Time
}

func (c resultCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLastSuccess, descLastFailure, descSize, descRevision, descDuration, descVerification} {
		ch <- d
	}
}

func (c resultCollector) Collect(ch chan<- prometheus.Metric) {
	ts := float64(c.now.UnixNano()) / 1e9
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descDuration, c.res.Duration.Seconds())
	if c.failed {
		gauge(descLastFailure, ts)
	} else {
		gauge(descLastSuccess, ts)
		if f := c.res.File; f != nil {
			gauge(descSize, float64(f.SizeBytes))
			gauge(descRevision, float64(f.Revision))
		}
	}
	if r := c.res.Result(); r != "" {
		// Every result, zeros included: a push replaces all series of a name in the group.
		for _, each := range Results {
			if each == ResultIntact {
				continue // save always compares with the cluster
			}
			v := 0.0
			if each == r {
				v = 1
			}
			gauge(descVerification, v, string(each))
		}
	}
}
