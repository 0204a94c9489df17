// Package collector turns cluster snapshots into Prometheus metrics. Each collector lives in its
// own file, registers itself by name and can be switched off; all of them read the one snapshot
// taken per scrape, so disabling a collector also removes the etcd calls only it needed.
package collector

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-monitor/etcd-monitor/certcheck"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

const namespace = "etcd_monitor"

// Collector emits the metrics of one concern from a snapshot.
type Collector interface {
	// Update sends metrics for s. An error means the collector's inputs were not obtained; it is
	// reported as etcd_monitor_scrape_collector_success 0.
	Update(s *snapshot.Snapshot, ch chan<- prometheus.Metric) error
}

// contextCollector is a collector whose facts are not all in the snapshot (certificates are read on
// a schedule of their own): it gets the scrape's context, whose deadline bounds it, and the exporter.
type contextCollector interface {
	UpdateContext(ctx context.Context, e *Exporter, s *snapshot.Snapshot, ch chan<- prometheus.Metric) error
}

// phase says which part of taking the snapshot a collector's data came from, so that its
// duration reflects the etcd round trips it depends on.
type phase int

const (
	phaseMemberList phase = iota
	phaseStatus
	phaseProbe
)

type factory struct {
	defaultEnabled bool
	needs          snapshot.Needs
	phase          phase
	new            func() Collector
}

var factories = map[string]factory{}

func registerCollector(name string, defaultEnabled bool, needs snapshot.Needs, ph phase, newFn func() Collector) {
	factories[name] = factory{defaultEnabled: defaultEnabled, needs: needs, phase: ph, new: newFn}
}

// Info describes an available collector.
type Info struct {
	Name           string
	DefaultEnabled bool
}

// Available lists every collector, sorted by name.
func Available() []Info {
	out := make([]Info, 0, len(factories))
	for name, f := range factories {
		out = append(out, Info{Name: name, DefaultEnabled: f.defaultEnabled})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Taker takes a snapshot of a cluster; *snapshot.Taker is the implementation.
type Taker interface {
	Take(ctx context.Context, needs snapshot.Needs) *snapshot.Snapshot
}

// Exporter runs the enabled collectors over one snapshot per scrape.
type Exporter struct {
	taker      Taker
	logger     *slog.Logger
	names      []string
	collectors map[string]Collector
	needs      snapshot.Needs
	// certs reads the certificates for the certificates collector (WithCertificates).
	certs *certcheck.Checker

	upDesc       *prometheus.Desc
	durationDesc *prometheus.Desc
	successDesc  *prometheus.Desc
}

// Option configures an Exporter.
type Option func(*Exporter)

// WithLogger sets the logger for collector failures.
func WithLogger(l *slog.Logger) Option { return func(e *Exporter) { e.logger = l } }

// New builds an Exporter running the named collectors; nil names means the default set.
func New(taker Taker, names []string, opts ...Option) (*Exporter, error) {
	if names == nil {
		for _, i := range Available() {
			if i.DefaultEnabled {
				names = append(names, i.Name)
			}
		}
	}
	e := &Exporter{
		taker:      taker,
		logger:     slog.New(slog.DiscardHandler),
		collectors: map[string]Collector{},
		upDesc: prometheus.NewDesc(namespace+"_up",
			"1 when at least one etcd endpoint answered this scrape, else 0.", nil, nil),
		durationDesc: prometheus.NewDesc(namespace+"_scrape_collector_duration_seconds",
			"Time spent on the etcd calls a collector depends on and on building its metrics.", []string{"collector"}, nil),
		successDesc: prometheus.NewDesc(namespace+"_scrape_collector_success",
			"1 when the collector obtained its data from etcd, else 0.", []string{"collector"}, nil),
	}
	for _, o := range opts {
		o(e)
	}
	for _, name := range names {
		f, ok := factories[name]
		if !ok {
			return nil, fmt.Errorf("unknown collector %q", name)
		}
		if _, dup := e.collectors[name]; dup {
			continue
		}
		e.names = append(e.names, name)
		e.collectors[name] = f.new()
		e.needs.Status = e.needs.Status || f.needs.Status
		e.needs.Probes = e.needs.Probes || f.needs.Probes
	}
	slices.Sort(e.names)
	return e, nil
}

// Needs is what the enabled collectors need from etcd.
func (e *Exporter) Needs() snapshot.Needs { return e.needs }

// Collectors names the enabled collectors.
func (e *Exporter) Collectors() []string { return slices.Clone(e.names) }

// Scrape returns a prometheus.Collector that takes one snapshot under ctx when collected. Register
// it in a registry made for the request, so the scrape's deadline applies to its etcd calls.
func (e *Exporter) Scrape(ctx context.Context) prometheus.Collector {
	return &scrape{e: e, ctx: ctx}
}

// Collect emits the metrics for a snapshot already taken (by the status API or check command).
func (e *Exporter) Collect(s *snapshot.Snapshot, ch chan<- prometheus.Metric) {
	e.CollectContext(context.Background(), s, ch)
}

// CollectContext is Collect for collectors that read more than the snapshot under ctx's deadline.
func (e *Exporter) CollectContext(ctx context.Context, s *snapshot.Snapshot, ch chan<- prometheus.Metric) {
	up := 0.0
	if s.Up() {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(e.upDesc, prometheus.GaugeValue, up)

	var wg sync.WaitGroup
	for _, name := range e.names {
		wg.Go(func() {
			start := time.Now()
			var err error
			if cc, ok := e.collectors[name].(contextCollector); ok {
				err = cc.UpdateContext(ctx, e, s, ch)
			} else {
				err = e.collectors[name].Update(s, ch)
			}
			d := time.Since(start) + phaseDuration(s, factories[name].phase)
			success := 1.0
			if err != nil {
				success = 0
				e.logger.Debug("collector failed", "collector", name, "err", err)
			}
			ch <- prometheus.MustNewConstMetric(e.durationDesc, prometheus.GaugeValue, d.Seconds(), name)
			ch <- prometheus.MustNewConstMetric(e.successDesc, prometheus.GaugeValue, success, name)
		})
	}
	wg.Wait()
}

func phaseDuration(s *snapshot.Snapshot, p phase) time.Duration {
	switch p {
	case phaseStatus:
		return s.MemberListDuration + s.StatusDuration
	case phaseProbe:
		return s.MemberListDuration + s.ProbeDuration
	default:
		return s.MemberListDuration
	}
}

type scrape struct {
	e   *Exporter
	ctx context.Context
}

// Describe sends nothing: the metrics depend on the cluster, and the registry is per request.
func (*scrape) Describe(chan<- *prometheus.Desc) {}

func (sc *scrape) Collect(ch chan<- prometheus.Metric) {
	sc.e.CollectContext(sc.ctx, sc.e.taker.Take(sc.ctx, sc.e.needs), ch)
}

// memberLabels are the labels every member series carries.
func memberLabels(m *snapshot.Member) []string { return []string{snapshot.IDString(m.ID), m.Name} }

var memberLabelNames = []string{"member_id", "member"}

func memberDesc(name, help string, extra ...string) *prometheus.Desc {
	return prometheus.NewDesc(namespace+"_member_"+name, help, append(slices.Clone(memberLabelNames), extra...), nil)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// errNoMembers is returned by collectors when no member list was obtained.
func errNoMembers(s *snapshot.Snapshot) error {
	return fmt.Errorf("no member list: %w", s.MemberListErr)
}
