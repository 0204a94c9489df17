package collector

import (
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/etcd-monitor/etcd-monitor/scrapetimeout"
)

// HandlerOpts configures the scrape handler.
type HandlerOpts struct {
	// Timeout applies when Prometheus sends no X-Prometheus-Scrape-Timeout-Seconds header.
	Timeout time.Duration
	// Offset is subtracted from the header's timeout, leaving time to encode and send the answer.
	Offset time.Duration
	// Gatherer adds the exporter's own metrics (Go runtime, process, build info) to every scrape.
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger
}

// Handler serves /metrics: each request gets its own registry and a deadline, so a hung member
// can never make a scrape outlive Prometheus' patience. Concurrent requests share one in-flight
// snapshot whose deadline is no later than their own.
func (e *Exporter) Handler(o HandlerOpts) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		timeout, err := scrapetimeout.Parse(r.Header.Get(scrapetimeout.Header), o.Timeout, o.Offset)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		reg := prometheus.NewRegistry()
		// The request's context, not one ending at the deadline: the shared snapshot answers just
		// after its deadline, and the scrape must wait for that answer.
		reg.MustRegister(&scrape{e: e, ctx: r.Context(), deadline: time.Now().Add(timeout)})
		gatherers := concurrentGatherers{reg}
		if o.Gatherer != nil {
			gatherers = append(gatherers, o.Gatherer)
		}
		promhttp.HandlerFor(gatherers, promhttp.HandlerOpts{
			ErrorLog:      slog.NewLogLogger(o.Logger.Handler(), slog.LevelError),
			ErrorHandling: promhttp.ContinueOnError,
		}).ServeHTTP(w, r)
	})
}

// concurrentGatherers gathers every gatherer at once, then merges the results as
// prometheus.Gatherers does (which gathers one after the other): the exporter's own metrics (Go
// runtime, /proc reads, about a millisecond) are read while the snapshot waits on etcd, not after.
type concurrentGatherers []prometheus.Gatherer

func (gs concurrentGatherers) Gather() ([]*dto.MetricFamily, error) {
	done := make(prometheus.Gatherers, len(gs))
	var wg sync.WaitGroup
	for i, g := range gs {
		wg.Go(func() {
			mfs, err := g.Gather()
			done[i] = prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return mfs, err })
		})
	}
	wg.Wait()
	return done.Gather()
}
