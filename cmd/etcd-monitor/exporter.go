package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	webflag "github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/etcd-monitor/etcd-monitor/clusterapi"
	"github.com/etcd-monitor/etcd-monitor/collector"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

func addExporterCommand(app *kingpin.Application) (*kingpin.CmdClause, func(context.Context, *slog.Logger) error) {
	cmd := app.Command("exporter", "Serve Prometheus metrics about every member of an etcd cluster (the default command).")
	webCfg := webflag.AddFlags(cmd, ":9379")
	metricsPath := cmd.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").String()
	timeout := cmd.Flag("scrape.timeout", "Scrape deadline when Prometheus sends no X-Prometheus-Scrape-Timeout-Seconds header.").Default("10s").Duration()
	maxRequests := cmd.Flag("web.max-requests", "Maximum number of scrapes of the metrics path served at once; more are answered 503 at once (0: no limit).").Default("40").Int()
	offset := cmd.Flag("scrape.timeout-offset", "Subtracted from Prometheus' scrape timeout header to leave time to send the answer.").Default("500ms").Duration()
	probeKey := cmd.Flag("probe.key", "Key the latency probes read (never written).").Default(snapshot.DefaultProbeKey).String()
	etcd := addEtcdFlags(cmd)
	backupDirs := cmd.Flag("backup.dir", "Directory, or glob, of snapshot files whose freshness the backup collector reports (repeatable; see docs/backup.md).").Strings()
	fleet := addFleetFlags(cmd) // fleet.go: --config.file

	enabled := map[string]*bool{}
	for _, c := range collector.Available() {
		def := "false"
		state := "disabled"
		if c.DefaultEnabled {
			def, state = "true", "enabled"
		}
		enabled[c.Name] = cmd.Flag("collector."+c.Name, fmt.Sprintf("Enable the %s collector (default: %s).", c.Name, state)).Default(def).Bool()
	}

	return cmd, func(ctx context.Context, logger *slog.Logger) error {
		if *timeout <= 0 {
			return errors.New("--scrape.timeout must be positive")
		}
		if *offset < 0 {
			return errors.New("--scrape.timeout-offset must not be negative")
		}
		if *maxRequests < 0 {
			return fmt.Errorf("--web.max-requests must not be negative, got %d", *maxRequests)
		}
		if err := validateTelemetryPath(*metricsPath); err != nil {
			return err
		}
		// Not nil even when every collector is switched off: nil asks for the default set.
		names := []string{}
		for name, on := range enabled {
			if *on {
				names = append(names, name)
			}
		}
		if fleet.configFile != "" {
			slices.Sort(names)
			// The same collector options as below, applied to every cluster of the file.
			return fleet.run(ctx, logger, fleetConfig{webCfg: webCfg, metricsPath: *metricsPath, timeout: *timeout, offset: *offset,
				maxRequests: *maxRequests, collectors: names, collectorOptions: []collector.Option{collector.WithLogger(logger), collector.WithBackupDirs(*backupDirs)}})
		}
		if fleet.lifecycle {
			return errors.New("--web.enable-lifecycle needs --config.file: it serves POST /-/reload, which reloads that file")
		}
		conn, err := etcd.config()
		if err != nil {
			return err
		}
		taker, err := snapshot.NewTaker(conn, snapshot.WithLogger(logger), snapshot.WithProbeKey(*probeKey))
		if err != nil {
			return err
		}
		defer taker.Close()
		exp, err := collector.New(taker, names, collector.WithLogger(logger), collector.WithBackupDirs(*backupDirs))
		if err != nil {
			return err
		}

		handler, api, err := newExporterHandler(exporterHandlerConfig{
			metricsPath: *metricsPath, timeout: *timeout, offset: *offset, maxRequests: *maxRequests,
			taker: taker, exporter: exp, logger: logger,
		})
		if err != nil {
			return err
		}

		logger.Info("starting etcd-monitor", "version", version.Info(), "endpoints", strings.Join(conn.Endpoints, ","), "collectors", strings.Join(exp.Collectors(), ","))
		// Every request's context derives from requests, canceled on SIGTERM: a scrape waiting on a
		// hung member then stops waiting and answers what it has (the member down), so that
		// Shutdown, which waits for in-flight requests, does not wait for their deadlines.
		requests, cancelRequests := context.WithCancel(context.Background())
		defer cancelRequests()
		srv := newServer(handler)
		srv.BaseContext = func(net.Listener) context.Context { return requests }
		errc := make(chan error, 1)
		go func() { errc <- web.ListenAndServe(srv, webCfg, logger) }()
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
			logger.Info("shutting down: answering in-flight requests with what they have")
			api.ShuttingDown()
			cancelRequests()
			sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				return fmt.Errorf("shutting down: %w", err)
			}
			return nil
		}
	}
}

// exporterHandlerConfig is what the exporter's HTTP handler is built from.
type exporterHandlerConfig struct {
	metricsPath     string
	timeout, offset time.Duration
	maxRequests     int // scrapes of metricsPath served at once, 0: no limit
	taker           *snapshot.Taker
	exporter        *collector.Exporter
	logger          *slog.Logger
}

// newExporterHandler builds everything the exporter serves on one mux, so that --web.config.file
// (TLS, basic auth) protects the metrics, the status API and the page alike.
func newExporterHandler(c exporterHandlerConfig) (_ http.Handler, _ *clusterapi.API, err error) {
	defer recoverPattern(c.metricsPath, &err)
	self := prometheus.NewRegistry()
	self.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector("etcd_monitor"),
	)
	mux := http.NewServeMux()
	mux.Handle(c.metricsPath, c.exporter.Handler(collector.HandlerOpts{Timeout: c.timeout, Offset: c.offset, Gatherer: self, Logger: c.logger}))
	api := clusterapi.New(clusterapi.Options{
		Snapshots: snapshot.NewShared(c.taker.Take, clusterapi.Needs),
		Timeout:   c.timeout,
		Offset:    c.offset,
		Logger:    c.logger,
	})
	api.Register(mux)
	landing, err := web.NewLandingPage(clusterapi.Landing(web.LandingConfig{
		Name:        appName,
		Description: "Prometheus exporter for every member of an etcd cluster",
		Version:     version.Info(),
		Links:       []web.LandingLinks{{Address: c.metricsPath, Text: "Metrics"}},
		// No pprof handlers are served, so the page must not link to them.
		Profiling: "false",
	}))
	if err != nil {
		return nil, nil, err
	}
	mux.Handle("/", withPagePolicy(landing))
	return securityHeaders(limitScrapes(mux, c.metricsPath, c.maxRequests)), api, nil
}
