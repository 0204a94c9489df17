// Package collector turns cluster snapshots into Prometheus metrics. Each collector lives in its
// own file, registers itself by name and can be switched off; all of them read the one snapshot
// taken per scrape, so disabling a collector also removes the etcd calls only it needed.
package collector

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
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
	Update(s *snapshot.Snapshot, out Sink) error
}

// Sink is where a collector sends its series. Everything in a snapshot came from etcd and is
// untrusted: a series that cannot be built is logged and counted
// (etcd_monitor_scrape_metric_errors_total) rather than panicking, so one bad value costs that
// series, never the process or the rest of the scrape.
type Sink struct {
	ch        chan<- prometheus.Metric
	e         *Exporter
	collector string
}

// Gauge sends one gauge series.
func (o Sink) Gauge(d *prometheus.Desc, v float64, labels ...string) {
	o.send(d, prometheus.GaugeValue, v, labels...)
}

func (o Sink) send(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		if c := o.e.metricErrors[o.collector]; c != nil {
			c.Add(1)
		}
		o.e.logger.Warn("metric dropped", "collector", o.collector, "metric", d.String(), "err", err)
		return
	}
	o.ch <- m
}

// contextCollector is a collector whose facts are not all in the snapshot (certificates are read on
// a schedule of their own): it gets the scrape's context, whose deadline bounds it.
type contextCollector interface {
	UpdateContext(ctx context.Context, s *snapshot.Snapshot, out Sink) error
}

// phase says which part of taking the snapshot a collector's data came from, so that its
// duration reflects the etcd round trips it depends on.
type phase int

const (
	phaseMemberList phase = iota
	phaseStatus
	phaseProbe
	// phaseNone: the collector makes no etcd call.
	phaseNone
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

// Exporter runs the enabled collectors over one snapshot per scrape. Concurrent scrapes share one
// in-flight snapshot (snapshot.Shared), so a burst of scrapes (several Prometheus replicas, a
// retry storm, someone's curl loop) costs etcd one snapshot, not one per scrape.
type Exporter struct {
	taker      Taker
	shared     *snapshot.Shared
	logger     *slog.Logger
	names      []string
	collectors map[string]Collector
	needs      snapshot.Needs
	backupDirs []string // --backup.dir, for the backup collector
	// --consistency.interval and --consistency.timeout, for the consistency collector (0: default).
	consistencyInterval, consistencyTimeout time.Duration
	// certs reads the certificates for the certificates collector (WithCertificates).
	certs *certcheck.Checker

	// metricErrors and panics count, per collector and since start, the series that could not be
	// built and the panics recovered; the maps are filled in New and only read afterwards.
	metricErrors map[string]*atomic.Uint64
	panics       map[string]*atomic.Uint64

	upDesc           *prometheus.Desc
	durationDesc     *prometheus.Desc
	successDesc      *prometheus.Desc
	metricErrorsDesc *prometheus.Desc
	panicsDesc       *prometheus.Desc
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
		metricErrorsDesc: prometheus.NewDesc(namespace+"_scrape_metric_errors_total",
			"Series a collector could not build since the exporter started (a value from etcd Prometheus refuses); the series is dropped, the rest of the scrape served.", []string{"collector"}, nil),
		panicsDesc: prometheus.NewDesc(namespace+"_scrape_collector_panics_total",
			"Panics recovered in a collector since the exporter started; the scrape that met one reports the collector failed.", []string{"collector"}, nil),
		metricErrors: map[string]*atomic.Uint64{},
		panics:       map[string]*atomic.Uint64{},
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
		e.metricErrors[name] = new(atomic.Uint64)
		e.panics[name] = new(atomic.Uint64)
		// A collector with settings of its own takes them from the options.
		if c, ok := e.collectors[name].(interface{ configure(*Exporter) error }); ok {
			if err := c.configure(e); err != nil {
				return nil, err
			}
		}
		e.needs.Status = e.needs.Status || f.needs.Status
		e.needs.Probes = e.needs.Probes || f.needs.Probes
	}
	slices.Sort(e.names)
	e.shared = snapshot.NewShared(taker.Take, e.needs)
	return e, nil
}

// Close stops the background work of the collectors that have some (a consistency check under
// way) and waits for it to end.
func (e *Exporter) Close() {
	for _, c := range e.collectors {
		if c, ok := c.(interface{ close() }); ok {
			c.close()
		}
	}
}

// Needs is what the enabled collectors need from etcd.
func (e *Exporter) Needs() snapshot.Needs { return e.needs }

// Collectors names the enabled collectors.
func (e *Exporter) Collectors() []string { return slices.Clone(e.names) }

// Scrape returns a prometheus.Collector that takes (or joins) one snapshot under ctx's deadline
// when collected. Register it in a registry made for the request, so the scrape's deadline applies
// to its etcd calls.
func (e *Exporter) Scrape(ctx context.Context) prometheus.Collector {
	deadline, ok := ctx.Deadline()
	if !ok {
		return &scrape{e: e, ctx: ctx}
	}
	// The snapshot returns just after its deadline with whatever did not answer marked down;
	// waiting on a context that ends at that very deadline would lose the snapshot.
	return &scrape{e: e, ctx: context.WithoutCancel(ctx), deadline: deadline}
}

// Collect emits the metrics for a snapshot already taken (by the status API or check command).
func (e *Exporter) Collect(s *snapshot.Snapshot, ch chan<- prometheus.Metric) {
	e.CollectContext(context.Background(), s, ch)
}

// CollectContext is Collect for collectors that read more than the snapshot under ctx's deadline.
func (e *Exporter) CollectContext(ctx context.Context, s *snapshot.Snapshot, ch chan<- prometheus.Metric) {
	self := Sink{ch: ch, e: e}
	self.Gauge(e.upDesc, boolValue(s.Up()))

	var wg sync.WaitGroup
	for _, name := range e.names {
		wg.Go(func() {
			start := time.Now()
			err := e.update(ctx, name, s, Sink{ch: ch, e: e, collector: name})
			d := time.Since(start) + phaseDuration(s, factories[name].phase)
			success := 1.0
			if err != nil {
				success = 0
				e.logger.Debug("collector failed", "collector", name, "err", err)
			}
			self.Gauge(e.durationDesc, d.Seconds(), name)
			self.Gauge(e.successDesc, success, name)
		})
	}
	wg.Wait()
	// After the collectors, so that this scrape's own errors are in the count it reports.
	for _, name := range e.names {
		self.send(e.metricErrorsDesc, prometheus.CounterValue, float64(e.metricErrors[name].Load()), name)
		self.send(e.panicsDesc, prometheus.CounterValue, float64(e.panics[name].Load()), name)
	}
}

// update runs one collector. A panic (a bug meeting input nobody foresaw) must not take down the
// process and every other collector's series with it: it is logged, counted, and the collector
// reported failed for this scrape.
func (e *Exporter) update(ctx context.Context, name string, s *snapshot.Snapshot, out Sink) (err error) {
	defer func() {
		if r := recover(); r != nil {
			e.panics[name].Add(1)
			e.logger.Error("collector panicked", "collector", name, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = fmt.Errorf("collector %s panicked: %v", name, r)
		}
	}()
	if cc, ok := e.collectors[name].(contextCollector); ok {
		return cc.UpdateContext(ctx, s, out)
	}
	return e.collectors[name].Update(s, out)
}

func phaseDuration(s *snapshot.Snapshot, p phase) time.Duration {
	switch p {
	case phaseStatus:
		return s.MemberListDuration + s.StatusDuration
	case phaseProbe:
		return s.MemberListDuration + s.ProbeDuration
	case phaseNone:
		return 0
	default:
		return s.MemberListDuration
	}
}

type scrape struct {
	e *Exporter
	// ctx says whether the scraper is still there; deadline bounds the snapshot. Without a
	// deadline the snapshot is taken alone, under ctx.
	ctx      context.Context
	deadline time.Time
}

// Describe sends nothing: the metrics depend on the cluster, and the registry is per request.
func (*scrape) Describe(chan<- *prometheus.Desc) {}

func (sc *scrape) Collect(ch chan<- prometheus.Metric) {
	if sc.deadline.IsZero() {
		sc.e.CollectContext(sc.ctx, sc.e.taker.Take(sc.ctx, sc.e.needs), ch)
		return
	}
	s, err := sc.e.shared.Take(sc.ctx, sc.deadline)
	if err != nil {
		// The scraper has gone: nobody reads this answer.
		sc.e.logger.Debug("scrape abandoned", "err", err)
		return
	}
	// The collectors that read more than the snapshot (certificates) are bounded by the scrape's
	// deadline, which the snapshot's context no longer carries.
	ctx, cancel := context.WithDeadline(sc.ctx, sc.deadline)
	defer cancel()
	sc.e.CollectContext(ctx, s, ch)
}

// memberLabels are the labels every member series carries.
func memberLabels(m *snapshot.Member) []string {
	return []string{snapshot.IDString(m.ID), labelValue(m.Name)}
}

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
