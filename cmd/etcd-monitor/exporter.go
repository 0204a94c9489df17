package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	webflag "github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/etcd-monitor/etcd-monitor/collector"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

func addExporterCommand(app *kingpin.Application) (*kingpin.CmdClause, func(context.Context, *slog.Logger) error) {
	cmd := app.Command("exporter", "Serve Prometheus metrics about every member of an etcd cluster (the default command).")
	webCfg := webflag.AddFlags(cmd, ":9379")
	metricsPath := cmd.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").String()
	timeout := cmd.Flag("scrape.timeout", "Scrape deadline when Prometheus sends no X-Prometheus-Scrape-Timeout-Seconds header.").Default("10s").Duration()
	offset := cmd.Flag("scrape.timeout-offset", "Subtracted from Prometheus' scrape timeout header to leave time to send the answer.").Default("500ms").Duration()
	probeKey := cmd.Flag("probe.key", "Key the latency probes read (never written).").Default(snapshot.DefaultProbeKey).String()
	etcd := addEtcdFlags(cmd)

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
		conn, err := etcd.config()
		if err != nil {
			return err
		}
		if *timeout <= 0 {
			return errors.New("--scrape.timeout must be positive")
		}
		if *offset < 0 {
			return errors.New("--scrape.timeout-offset must not be negative")
		}
		if !strings.HasPrefix(*metricsPath, "/") || *metricsPath == "/" {
			return errors.New("--web.telemetry-path must start with / and not be /")
		}
		var names []string
		for name, on := range enabled {
			if *on {
				names = append(names, name)
			}
		}
		taker, err := snapshot.NewTaker(conn, snapshot.WithLogger(logger), snapshot.WithProbeKey(*probeKey))
		if err != nil {
			return err
		}
		defer taker.Close()
		exp, err := collector.New(taker, names, collector.WithLogger(logger))
		if err != nil {
			return err
		}

		self := prometheus.NewRegistry()
		self.MustRegister(
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
			versioncollector.NewCollector("etcd_monitor"),
		)
		mux := http.NewServeMux()
		mux.Handle(*metricsPath, exp.Handler(collector.HandlerOpts{Timeout: *timeout, Offset: *offset, Gatherer: self, Logger: logger}))
		mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "OK") })
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name:        appName,
			Description: "Prometheus exporter for every member of an etcd cluster",
			Version:     version.Info(),
			Links:       []web.LandingLinks{{Address: *metricsPath, Text: "Metrics"}},
		})
		if err != nil {
			return err
		}
		mux.Handle("/", landing)

		logger.Info("starting etcd-monitor", "version", version.Info(), "endpoints", strings.Join(conn.Endpoints, ","), "collectors", strings.Join(exp.Collectors(), ","))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		errc := make(chan error, 1)
		go func() { errc <- web.ListenAndServe(srv, webCfg, logger) }()
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
			logger.Info("shutting down")
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.Shutdown(sctx)
		}
	}
}
