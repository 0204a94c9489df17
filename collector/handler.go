package collector

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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
// can never make a scrape outlive Prometheus' patience.
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
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()

		reg := prometheus.NewRegistry()
		reg.MustRegister(e.Scrape(ctx))
		gatherers := prometheus.Gatherers{reg}
		if o.Gatherer != nil {
			gatherers = append(gatherers, o.Gatherer)
		}
		promhttp.HandlerFor(gatherers, promhttp.HandlerOpts{
			ErrorLog:      slog.NewLogLogger(o.Logger.Handler(), slog.LevelError),
			ErrorHandling: promhttp.ContinueOnError,
		}).ServeHTTP(w, r)
	})
}
