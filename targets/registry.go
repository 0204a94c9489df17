package targets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-monitor/etcd-monitor/collector"
	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// Target is one configured cluster: its Taker, which keeps the cluster's connections, and the
// Exporter that turns the Taker's snapshots into metrics.
type Target struct {
	Name     string
	Taker    *snapshot.Taker
	Exporter *collector.Exporter
	// Status shares the in-flight snapshots of the status API and check (Options.StatusNeeds).
	Status *snapshot.Shared

	cluster Cluster
	probes  *atomic.Uint64 // shared by every Target of this name, so a rebuild keeps the count
	// release frees what NewExporter built beside the Exporter (a certificate checker).
	releaseExporter func()

	// refs counts the requests using the Target; retired is set when a reload removed or
	// replaced it. The last of the two to happen closes the Taker, so that a scrape in flight
	// during a reload finishes on the connections it started with.
	mu      sync.Mutex
	refs    int
	retired bool
	closed  bool
}

// Conn is the cluster's connection settings, as its entry in the file gives them.
func (t *Target) Conn() etcdconn.Config { return t.cluster.Conn() }

// Probed counts one /probe request for the cluster (etcd_monitor_probes_total).
func (t *Target) Probed() { t.probes.Add(1) }

func (t *Target) release() {
	t.mu.Lock()
	t.refs--
	closeNow := t.retired && t.refs == 0 && !t.closed
	if closeNow {
		t.closed = true
	}
	t.mu.Unlock()
	if closeNow {
		t.close()
	}
}

// close stops the cluster's Exporter (its background checks, such as the consistency
// collector's), what was built with it, and then its Taker (every kept connection).
func (t *Target) close() {
	t.Exporter.Close()
	if t.releaseExporter != nil {
		t.releaseExporter()
	}
	t.Taker.Close()
}

func (t *Target) retire() {
	t.mu.Lock()
	t.retired = true
	closeNow := t.refs == 0 && !t.closed
	if closeNow {
		t.closed = true
	}
	t.mu.Unlock()
	if closeNow {
		t.close()
	}
}

// NewExporter builds the Exporter of one cluster's Taker: the enabled collectors and their
// settings are the exporter's flags, the same for every cluster, with what the cluster's own
// entry decides (its TLS files, for the certificates collector). release, which may be nil, frees
// what it built beside the Exporter; it runs when the Target is closed.
type NewExporter func(c Cluster, tk collector.Taker) (exp *collector.Exporter, release func(), err error)

// Options are what every cluster's Target is built with.
type Options struct {
	NewExporter NewExporter
	// StatusNeeds is what Target.Status asks each member for (clusterapi.Needs).
	StatusNeeds snapshot.Needs
	Logger      *slog.Logger
}

// Registry maps cluster names to Targets and swaps the whole map at a reload. It is safe for
// concurrent use.
type Registry struct {
	path string
	o    Options

	reloadMu sync.Mutex // one reload at a time

	mu      sync.RWMutex
	targets map[string]*Target
	probes  map[string]*atomic.Uint64 // by cluster name, for the clusters configured now
	closed  bool

	lastSuccess   atomic.Bool
	lastSuccessAt atomic.Int64 // Unix nanoseconds of the last successful (re)load

	successDesc, timestampDesc, clustersDesc, probesDesc *prometheus.Desc
}

// New loads the config file at path and builds a Target per cluster. An error (the file, a
// cluster's files, a collector) is for start-up to report and exit on.
func New(path string, o Options) (*Registry, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.NewExporter == nil {
		o.NewExporter = func(_ Cluster, tk collector.Taker) (*collector.Exporter, func(), error) {
			exp, err := collector.New(tk, nil)
			return exp, nil, err
		}
	}
	r := &Registry{
		path: path, o: o,
		targets: map[string]*Target{},
		probes:  map[string]*atomic.Uint64{},
		successDesc: prometheus.NewDesc("etcd_monitor_config_last_reload_successful",
			"1 when the last load of --config.file succeeded, 0 when it failed (the previous configuration is still in use).", nil, nil),
		timestampDesc: prometheus.NewDesc("etcd_monitor_config_last_reload_success_timestamp_seconds",
			"Time of the last successful load of --config.file, in seconds since the epoch.", nil, nil),
		clustersDesc: prometheus.NewDesc("etcd_monitor_config_clusters",
			"Clusters in the configuration in use.", nil, nil),
		probesDesc: prometheus.NewDesc("etcd_monitor_probes_total",
			"Requests to /probe for a cluster since the exporter started (or since the cluster was added).", []string{"cluster"}, nil),
	}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the file again and applies it: new clusters get a Target, removed ones have their
// Taker closed (once no request uses it), changed ones are rebuilt, unchanged ones keep their
// Taker and connections. A bad file changes nothing and is returned (and recorded in the reload
// metrics).
func (r *Registry) Reload() error {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	err := r.reload()
	r.lastSuccess.Store(err == nil)
	if err != nil {
		return err
	}
	r.lastSuccessAt.Store(time.Now().UnixNano())
	return nil
}

var errClosed = errors.New("registry closed")

func (r *Registry) reload() error {
	cfg, err := Load(r.path)
	if err != nil {
		return err
	}
	r.mu.RLock()
	old := r.targets
	closed := r.closed
	r.mu.RUnlock()
	if closed {
		return errClosed
	}

	// Built beside the running map: a cluster that cannot be built leaves everything as it was.
	next := make(map[string]*Target, len(cfg.Clusters))
	var built []*Target
	fail := func(err error) error {
		for _, t := range built {
			t.close()
		}
		return err
	}
	for _, c := range cfg.Clusters {
		if t, ok := old[c.Name]; ok && t.cluster.equal(c) {
			next[c.Name] = t
			continue
		}
		t, err := r.build(c)
		if err != nil {
			return fail(fmt.Errorf("cluster %q: %w", c.Name, err))
		}
		built = append(built, t)
		next[c.Name] = t
	}

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return fail(errClosed)
	}
	r.targets = next
	probes := make(map[string]*atomic.Uint64, len(next))
	for name, t := range next {
		if p, ok := r.probes[name]; ok {
			t.probes = p
		}
		probes[name] = t.probes
	}
	r.probes = probes
	r.mu.Unlock()

	var added, removed, changed []string
	for name, t := range old {
		if n, ok := next[name]; !ok {
			removed = append(removed, name)
			t.retire()
		} else if n != t {
			changed = append(changed, name)
			t.retire()
		}
	}
	for name := range next {
		if _, ok := old[name]; !ok {
			added = append(added, name)
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	slices.Sort(changed)
	// The first load is the start-up's, which its caller reports.
	level := slog.LevelInfo
	if len(old) == 0 {
		level = slog.LevelDebug
	}
	r.o.Logger.Log(context.Background(), level, "configuration loaded", "file", r.path, "clusters", len(next), "added", added, "removed", removed, "changed", changed)
	return nil
}

func (r *Registry) build(c Cluster) (*Target, error) {
	taker, err := snapshot.NewTaker(c.Conn(), snapshot.WithLogger(r.o.Logger.With("cluster", c.Name)), snapshot.WithProbeKey(c.probeKey()))
	if err != nil {
		return nil, err
	}
	exp, release, err := r.o.NewExporter(c, taker)
	if err != nil {
		taker.Close()
		return nil, err
	}
	return &Target{
		Name: c.Name, Taker: taker, Exporter: exp, Status: snapshot.NewShared(taker.Take, r.o.StatusNeeds),
		cluster: c, probes: new(atomic.Uint64), releaseExporter: release,
	}, nil
}

// Acquire returns the Target of a cluster and a release function the caller must call once done
// with it; until then a reload does not close its Taker. ok is false for an unknown name.
func (r *Registry) Acquire(name string) (_ *Target, release func(), ok bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t, ok := r.targets[name]
	if !ok {
		return nil, nil, false
	}
	t.mu.Lock()
	t.refs++
	t.mu.Unlock()
	return t, t.release, true
}

// Names lists the configured clusters, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.targets))
	for name := range r.targets {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Close closes every Taker (those in use once their requests are done); reloads fail afterwards.
func (r *Registry) Close() {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	r.mu.Lock()
	targets := r.targets
	r.targets, r.closed = map[string]*Target{}, true
	r.mu.Unlock()
	for _, t := range targets {
		t.retire()
	}
}

// Describe sends the registry's own metric descriptions.
func (r *Registry) Describe(ch chan<- *prometheus.Desc) {
	ch <- r.successDesc
	ch <- r.timestampDesc
	ch <- r.clustersDesc
	ch <- r.probesDesc
}

// Collect sends the reload metrics and the per-cluster probe counts.
func (r *Registry) Collect(ch chan<- prometheus.Metric) {
	success := 0.0
	if r.lastSuccess.Load() {
		success = 1
	}
	ch <- prometheus.MustNewConstMetric(r.successDesc, prometheus.GaugeValue, success)
	ch <- prometheus.MustNewConstMetric(r.timestampDesc, prometheus.GaugeValue, float64(r.lastSuccessAt.Load())/1e9)
	r.mu.RLock()
	defer r.mu.RUnlock()
	ch <- prometheus.MustNewConstMetric(r.clustersDesc, prometheus.GaugeValue, float64(len(r.targets)))
	for name, p := range r.probes {
		// Names match namePattern, so the label value is always valid.
		ch <- prometheus.MustNewConstMetric(r.probesDesc, prometheus.CounterValue, float64(p.Load()), name)
	}
}
