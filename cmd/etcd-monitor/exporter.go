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

	"github.com/etcd-monitor/etcd-monitor/certcheck"
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
	certFlags := addCertificateFlags(cmd)
	backupDirs := cmd.Flag("backup.dir", "Directory, or glob, of snapshot files whose freshness the backup collector reports (repeatable; see docs/backup.md).").Strings()
	consistencyInterval := cmd.Flag("consistency.interval", "Least time between two comparisons of the members' HashKV by the consistency collector (see docs/consistency.md).").Default(collector.DefaultConsistencyInterval.String()).Duration()
	consistencyTimeout := cmd.Flag("consistency.timeout", "Deadline of one comparison of the members' HashKV; a scrape waits for it until its own deadline.").Default(collector.DefaultConsistencyTimeout.String()).Duration()
	fleet := addFleetFlags(cmd) // fleet.go: --config.file

	enabled := map[string]*bool{}
	// The certificates collector is on by default only when etcd is reached over TLS.
	var certificatesSet bool
	for _, c := range collector.Available() {
		def := "false"
		state := "disabled"
		if c.DefaultEnabled {
			def, state = "true", "enabled"
		}
		if c.Name == "certificates" {
			state = "enabled when etcd is reached over TLS"
		}
		f := cmd.Flag("collector."+c.Name, fmt.Sprintf("Enable the %s collector (default: %s).", c.Name, state))
		if c.Name == "certificates" {
			f = f.IsSetByUser(&certificatesSet)
		}
		enabled[c.Name] = f.Default(def).Bool()
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
		if *consistencyInterval <= 0 || *consistencyTimeout <= 0 {
			return fmt.Errorf("--consistency.interval and --consistency.timeout must be positive, got %s and %s", *consistencyInterval, *consistencyTimeout)
		}
		// Clusters of a fleet rarely share one peer CA; each cluster's tls.ca_file is its.
		if fleet.configFile != "" && certFlags.peerCAFile != "" {
			return errors.New("--certificates.peer-ca-file cannot be used with --config.file: each cluster's peer certificates are verified against its own tls.ca_file")
		}
		if err := certFlags.validate(); err != nil {
			return err
		}
		consistency := collector.WithConsistency(*consistencyInterval, *consistencyTimeout)
		if fleet.configFile != "" {
			// As in flags mode, the certificates collector follows TLS unless the flag says otherwise,
			// but cluster by cluster: the fleet adds it to each cluster that uses TLS.
			certs := certificatesAuto
			if on := enabled["certificates"]; on != nil {
				if certificatesSet && *on {
					certs = certificatesOn
				} else if certificatesSet {
					certs = certificatesOff
				}
				*on = false
			}
			names := enabledNames(enabled)
			slices.Sort(names)
			// The same collector options as below, applied to every cluster of the file.
			return fleet.run(ctx, logger, fleetConfig{webCfg: webCfg, metricsPath: *metricsPath, timeout: *timeout, offset: *offset,
				maxRequests: *maxRequests, collectors: names, collectorOptions: []collector.Option{collector.WithLogger(logger), collector.WithBackupDirs(*backupDirs), consistency},
				certificates: certs, certFlags: certFlags})
		}
		if fleet.lifecycle {
			return errors.New("--web.enable-lifecycle needs --config.file: it serves POST /-/reload, which reloads that file")
		}
		conn, err := etcd.config()
		if err != nil {
			return err
		}
		if on := enabled["certificates"]; on != nil && !certificatesSet {
			*on = conn.UsesTLS()
		}
		names := enabledNames(enabled)
		taker, err := snapshot.NewTaker(conn, snapshot.WithLogger(logger), snapshot.WithProbeKey(*probeKey))
		if err != nil {
			return err
		}
		defer taker.Close()
		opts := []collector.Option{collector.WithLogger(logger), collector.WithBackupDirs(*backupDirs), consistency}
		var checker *certcheck.Checker
		if on := enabled["certificates"]; on != nil && *on {
			if checker, err = certFlags.checker(conn); err != nil {
				return err
			}
			defer checker.Close()
			opts = append(opts, collector.WithCertificates(checker))
		}
		exp, err := collector.New(taker, names, opts...)
		if err != nil {
			return err
		}
		defer exp.Close()

		handler, api, err := newExporterHandler(exporterHandlerConfig{
			metricsPath: *metricsPath, timeout: *timeout, offset: *offset, maxRequests: *maxRequests,
			taker: taker, exporter: exp, logger: logger, certificates: checker,
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

// enabledNames lists the collectors switched on; not nil even when every collector is switched
// off, since nil asks collector.New for the default set.
func enabledNames(enabled map[string]*bool) []string {
	names := []string{}
	for name, on := range enabled {
		if *on {
			names = append(names, name)
		}
	}
	return names
}

// exporterHandlerConfig is what the exporter's HTTP handler is built from.
type exporterHandlerConfig struct {
	metricsPath     string
	timeout, offset time.Duration
	maxRequests     int // scrapes of metricsPath served at once, 0: no limit
	taker           *snapshot.Taker
	exporter        *collector.Exporter
	logger          *slog.Logger
	// certificates is the certificates collector's checker, nil when it is off.
	certificates *certcheck.Checker
}

// withDataCheck takes a snapshot for the status API with the consistency collector's last
// comparison in it, so that a member whose data differs is part of the health verdict. It starts
// no comparison: HashKV reads every member's whole keyspace, and the API may be asked often.
func (c exporterHandlerConfig) withDataCheck(ctx context.Context, needs snapshot.Needs) *snapshot.Snapshot {
	s := c.taker.Take(ctx, needs)
	s.DataCheck = c.exporter.DataCheck()
	return s
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
		Snapshots:    snapshot.NewShared(c.withDataCheck, clusterapi.Needs),
		Timeout:      c.timeout,
		Offset:       c.offset,
		Logger:       c.logger,
		Certificates: c.certificates,
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
