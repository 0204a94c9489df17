package benchmark

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-monitor/etcd-monitor/pushgw"
)

const pushJob = "etcd_benchmark"

// pushResults sends the run's results to a Pushgateway under job etcd_benchmark, grouped by workload and
// run name. Pushes add (pushgw.Push): a failed run, which does not push
// etcd_benchmark_last_success_timestamp_seconds, leaves the previous success's timestamp in place
// for alerting.
func pushResults(ctx context.Context, cfg Config, res *Result, now time.Time) error {
	return pushgw.Push(ctx, cfg.PushgatewayURL, pushJob,
		[]pushgw.Label{{Name: "workload", Value: cfg.Workload}, {Name: "run", Value: cfg.RunName}},
		resultCollector{cfg: cfg, res: res, now: now})
}

// Every series is a gauge: each push replaces the last run's values with the new run's, which go
// down as often as up. As counters (or named _total) they would make rate() and increase() read
// every smaller run as a counter reset.
var (
	descOps = prometheus.NewDesc("etcd_benchmark_operations",
		"Operations the last benchmark run attempted, successful or not.", nil, nil)
	descErrors = prometheus.NewDesc("etcd_benchmark_errors",
		"Failed operations of the last benchmark run, by gRPC code.", []string{"code"}, nil)
	descDuration = prometheus.NewDesc("etcd_benchmark_duration_seconds",
		"Wall-clock time of the last benchmark run's operations.", nil, nil)
	descThroughput = prometheus.NewDesc("etcd_benchmark_throughput_ops_per_second",
		"Successful operations per second in the last benchmark run.", nil, nil)
	descLatency = prometheus.NewDesc("etcd_benchmark_latency_seconds",
		"Latency quantiles of the last benchmark run's successful operations (quantile 1 is the maximum).", []string{"quantile"}, nil)
	descLastSuccess = prometheus.NewDesc("etcd_benchmark_last_success_timestamp_seconds",
		"Unix time at which a benchmark run last finished with every operation successful and its keys cleaned up.", nil, nil)
)

func descInfo(cfg Config) *prometheus.Desc {
	var names []string
	for _, p := range cfg.params() {
		if p[0] != "workload" { // already a grouping label
			names = append(names, p[0])
		}
	}
	return prometheus.NewDesc("etcd_benchmark_info", "Parameters of the last benchmark run; always 1.", names, nil)
}

// resultCollector exposes one finished run as const metrics.
type resultCollector struct {
	cfg Config
	res *Result
	now time.Time
}

func (c resultCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descOps
	ch <- descErrors
	ch <- descDuration
	ch <- descThroughput
	ch <- descLatency
	ch <- descLastSuccess
	ch <- descInfo(c.cfg)
}

func (c resultCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.res
	ch <- prometheus.MustNewConstMetric(descOps, prometheus.GaugeValue, float64(r.Operations))
	// Every code, zeros included: a push replaces all series of a name, so a clean run must
	// overwrite the error counts an earlier failed run left.
	for _, code := range allErrorCodes {
		ch <- prometheus.MustNewConstMetric(descErrors, prometheus.GaugeValue, float64(r.ErrorsByCode[code]), code)
	}
	ch <- prometheus.MustNewConstMetric(descDuration, prometheus.GaugeValue, r.DurationSeconds)
	ch <- prometheus.MustNewConstMetric(descThroughput, prometheus.GaugeValue, r.Throughput)
	for _, q := range quantiles {
		ch <- prometheus.MustNewConstMetric(descLatency, prometheus.GaugeValue, q.get(r.Latency), q.label)
	}
	if r.Success {
		ch <- prometheus.MustNewConstMetric(descLastSuccess, prometheus.GaugeValue, float64(c.now.UnixNano())/1e9)
	}
	var values []string
	for _, p := range c.cfg.params() {
		if p[0] != "workload" {
			values = append(values, p[1])
		}
	}
	ch <- prometheus.MustNewConstMetric(descInfo(c.cfg), prometheus.GaugeValue, 1, values...)
}
