package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/etcd-monitor/etcd-monitor/clusterapi"
	"github.com/etcd-monitor/etcd-monitor/collector"
	"github.com/etcd-monitor/etcd-monitor/targets"
)

// Paths served in config-file mode only.
const (
	pathProbe  = "/probe"
	pathSD     = "/sd"
	pathReload = "/-/reload"
)

// fleetFlags are the flags of config-file mode: one exporter for the named clusters of a file.
type fleetFlags struct {
	configFile string
	lifecycle  bool
	given      singleClusterFlagsGiven
}

// singleClusterFlags are the flags the config file replaces (each cluster has its own there).
var singleClusterFlags = []string{
	"etcd.endpoints", "etcd.tls.ca-file", "etcd.tls.cert-file", "etcd.tls.key-file", "etcd.tls.server-name",
	"etcd.tls.insecure-skip-verify", "etcd.username", "etcd.password-file", "probe.key",
}

// singleClusterFlagsGiven records which single-cluster flags were given, since they mean nothing
// with a config file and silently ignoring one would leave its user wondering.
type singleClusterFlagsGiven map[string]*bool

// watchSingleClusterFlags is called after cmd's single-cluster flags are defined.
func watchSingleClusterFlags(cmd *kingpin.CmdClause) singleClusterFlagsGiven {
	given := singleClusterFlagsGiven{}
	for _, name := range singleClusterFlags {
		if fl := cmd.GetFlag(name); fl != nil {
			set := new(bool)
			fl.IsSetByUser(set)
			given[name] = set
		}
	}
	return given
}

// refuse names the first single-cluster flag given.
func (g singleClusterFlagsGiven) refuse() error {
	for _, name := range singleClusterFlags {
		if set := g[name]; set != nil && *set {
			return fmt.Errorf("--%s cannot be used with --config.file: each cluster's settings go in the file", name)
		}
	}
	return nil
}

// addFleetFlags is called after the single-cluster flags are defined.
func addFleetFlags(cmd *kingpin.CmdClause) *fleetFlags {
	f := &fleetFlags{given: watchSingleClusterFlags(cmd)}
	cmd.Flag("config.file", "YAML file naming the etcd clusters to monitor (see docs/fleet.md); each is scraped at /probe?cluster=NAME and listed at /sd. Without it, the --etcd.* flags describe one cluster served at the metrics path.").StringVar(&f.configFile)
	cmd.Flag("web.enable-lifecycle", "Serve POST /-/reload, which reloads --config.file (SIGHUP always does).").BoolVar(&f.lifecycle)
	return f
}

// fleetConfig is what config-file mode needs from the exporter's other flags.
type fleetConfig struct {
	webCfg          *web.FlagConfig
	metricsPath     string
	timeout, offset time.Duration
	maxRequests     int
	collectors      []string
	// collectorOptions are flags mode's collector.New options (logger, --backup.dir, ...).
	collectorOptions []collector.Option
	// certificates says which clusters get the certificates collector, each with a checker of
	// its own TLS files built by certFlags.
	certificates certificatesMode
	certFlags    *certificateFlags
}

// certificatesMode is --collector.certificates in config-file mode.
type certificatesMode int

const (
	certificatesAuto certificatesMode = iota // the clusters that use TLS (the flag not given)
	certificatesOn                           // every cluster
	certificatesOff                          // none
)

// newExporter builds one cluster's Exporter with the collectors of the flags, plus the
// certificates collector when c.certificates gives it to this cluster; release closes its checker.
func (c fleetConfig) newExporter(cl targets.Cluster, tk collector.Taker) (*collector.Exporter, func(), error) {
	conn := cl.Conn()
	if c.certificates == certificatesOff || (c.certificates == certificatesAuto && !conn.UsesTLS()) {
		exp, err := collector.New(tk, c.collectors, c.collectorOptions...)
		return exp, nil, err
	}
	checker, err := c.certFlags.checker(conn)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster %s: %w", cl.Name, err)
	}
	names := append(slices.Clone(c.collectors), "certificates")
	slices.Sort(names)
	exp, err := collector.New(tk, names, append(slices.Clone(c.collectorOptions), collector.WithCertificates(checker))...)
	if err != nil {
		checker.Close()
		return nil, nil, err
	}
	return exp, checker.Close, nil
}

// run serves config-file mode until ctx is done. Every error before serving is for start-up to
// print and exit 1 on.
func (f *fleetFlags) run(ctx context.Context, logger *slog.Logger, c fleetConfig) error {
	if err := f.given.refuse(); err != nil {
		return err
	}
	if c.metricsPath == pathProbe || c.metricsPath == pathSD {
		return fmt.Errorf("--web.telemetry-path %q is where --config.file mode serves %s", c.metricsPath, c.metricsPath)
	}
	reg, err := targets.New(f.configFile, targets.Options{NewExporter: c.newExporter, StatusNeeds: clusterapi.Needs, Logger: logger})
	if err != nil {
		return err
	}
	defer reg.Close()

	fs := &fleetServer{reg: reg, lifecycle: f.lifecycle, timeout: c.timeout, offset: c.offset, logger: logger}
	handler, err := fs.handler(c.metricsPath, c.maxRequests)
	if err != nil {
		return err
	}
	logger.Info("starting etcd-monitor", "version", version.Info(), "config_file", f.configFile, "clusters", strings.Join(reg.Names(), ","), "collectors", strings.Join(c.collectors, ","))

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	// As in flags mode: SIGTERM cancels in-flight requests, which answer what they have.
	requests, cancelRequests := context.WithCancel(context.Background())
	defer cancelRequests()
	srv := newServer(handler)
	srv.BaseContext = func(net.Listener) context.Context { return requests }
	errc := make(chan error, 1)
	go func() { errc <- web.ListenAndServe(srv, c.webCfg, logger) }()
	for {
		select {
		case err := <-errc:
			return err
		case <-hup:
			_ = fs.reload()
		case <-ctx.Done():
			logger.Info("shutting down: answering in-flight requests with what they have")
			fs.shutdown.Store(true)
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

// fleetServer answers the HTTP requests of config-file mode.
type fleetServer struct {
	reg             *targets.Registry
	lifecycle       bool
	timeout, offset time.Duration
	logger          *slog.Logger
	shutdown        atomic.Bool
}

// reload applies the file again; a bad file keeps the running configuration and is logged.
func (s *fleetServer) reload() error {
	if err := s.reg.Reload(); err != nil {
		s.logger.Error("reloading the configuration failed; the running configuration stays", "err", err)
		return err
	}
	return nil
}

// handler serves, on one mux (so --web.config.file guards them all): the exporter's own metrics
// at metricsPath, each cluster's at /probe, the target list at /sd, the reload and health paths
// and the landing page.
func (s *fleetServer) handler(metricsPath string, maxRequests int) (_ http.Handler, err error) {
	defer recoverPattern(metricsPath, &err)
	self := prometheus.NewRegistry()
	if err := self.Register(s.reg); err != nil {
		return nil, err
	}
	self.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector("etcd_monitor"),
	)
	mux := http.NewServeMux()
	mux.Handle(metricsPath, promhttp.HandlerFor(self, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(s.logger.Handler(), slog.LevelError),
	}))
	mux.HandleFunc(pathProbe, s.probe)
	mux.HandleFunc(pathSD, s.sd)
	mux.HandleFunc(pathReload, s.reloadHandler)
	mux.HandleFunc(clusterapi.PathHealthy, func(w http.ResponseWriter, _ *http.Request) { text(w, http.StatusOK, "OK") })
	mux.HandleFunc(clusterapi.PathReady, func(w http.ResponseWriter, _ *http.Request) {
		if s.shutdown.Load() {
			text(w, http.StatusServiceUnavailable, "shutting down")
			return
		}
		text(w, http.StatusOK, "OK")
	})
	mux.HandleFunc("/api/", s.api)
	landing, err := web.NewLandingPage(clusterapi.FleetLanding(web.LandingConfig{
		Name:        appName,
		Description: "Prometheus exporter for the etcd clusters of its --config.file",
		Version:     version.Info(),
		Links: []web.LandingLinks{
			{Address: metricsPath, Text: "Exporter metrics", Description: "the exporter's own metrics (reloads, probes per cluster)"},
			{Address: pathSD, Text: "Targets", Description: "every configured cluster, in Prometheus' HTTP service discovery format"},
			{Address: pathClusters, Text: "Clusters", Description: "every configured cluster with its verdict (JSON); the status API's other paths take ?cluster=NAME"},
		},
		Profiling: "false",
	}))
	if err != nil {
		return nil, err
	}
	mux.Handle("/", withPagePolicy(landing))
	return securityHeaders(limitScrapes(mux, pathProbe, maxRequests)), nil
}

func text(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

// maxQuotedName bounds how much of a request's cluster name an error repeats.
const maxQuotedName = 64

func quoteName(s string) string {
	if len(s) > maxQuotedName {
		return fmt.Sprintf("%q...", s[:maxQuotedName])
	}
	return fmt.Sprintf("%q", s)
}

// probe serves one cluster's metrics, as /metrics does in flags mode. The request only names a
// cluster of the file: an address, credential or file in a request would make the exporter a
// proxy into whatever network it runs in, so any other parameter is refused rather than ignored.
func (s *fleetServer) probe(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		text(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s (GET, HEAD)", r.Method, pathProbe))
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		text(w, http.StatusBadRequest, fmt.Sprintf("bad query: %v", err))
		return
	}
	for k := range q {
		if k != "cluster" {
			text(w, http.StatusBadRequest, fmt.Sprintf("unknown parameter %s: %s takes only cluster=NAME; addresses and credentials come from --config.file alone", quoteName(k), pathProbe))
			return
		}
	}
	t, release, msg := s.acquireOne(q, pathProbe, pathSD)
	if msg != "" {
		text(w, http.StatusBadRequest, msg)
		return
	}
	defer release()
	t.Probed()
	t.Exporter.Handler(collector.HandlerOpts{Timeout: s.timeout, Offset: s.offset, Logger: s.logger}).ServeHTTP(w, r)
}

// sdGroup is one target group of Prometheus' HTTP service discovery.
type sdGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// sd lists every configured cluster as a target: the exporter itself (the address the request
// reached it on), with the cluster label and the parameters of its /probe, so that one
// http_sd_configs entry scrapes the fleet without relabeling and follows every reload.
func (s *fleetServer) sd(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		text(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s (GET, HEAD)", r.Method, pathSD))
		return
	}
	if r.URL.RawQuery != "" {
		text(w, http.StatusBadRequest, fmt.Sprintf("%s takes no parameter", pathSD))
		return
	}
	if r.Host == "" {
		text(w, http.StatusBadRequest, "no Host header: the targets are the address the exporter is reached on")
		return
	}
	groups := []sdGroup{}
	for _, name := range s.reg.Names() {
		groups = append(groups, sdGroup{Targets: []string{r.Host}, Labels: map[string]string{
			"cluster":          name,
			"__param_cluster":  name,
			"__metrics_path__": pathProbe,
		}})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(groups)
}

// reloadHandler is POST /-/reload, served only with --web.enable-lifecycle as Prometheus does:
// anyone who reaches the port could otherwise make the exporter re-read its files at will.
func (s *fleetServer) reloadHandler(w http.ResponseWriter, r *http.Request) {
	if !s.lifecycle {
		text(w, http.StatusForbidden, "Lifecycle API is not enabled: start with --web.enable-lifecycle, or send SIGHUP")
		return
	}
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		w.Header().Set("Allow", "POST, PUT")
		text(w, http.StatusMethodNotAllowed, "reload with POST")
		return
	}
	if err := s.reload(); err != nil {
		text(w, http.StatusInternalServerError, fmt.Sprintf("reload failed, the running configuration stays: %v", err))
		return
	}
	text(w, http.StatusOK, "configuration reloaded")
}

// acquireOne acquires the one cluster that q's cluster parameter names, for a request to path;
// otherwise msg says what is wrong with the parameter (the clusters are listed at listedAt).
func (s *fleetServer) acquireOne(q url.Values, path, listedAt string) (t *targets.Target, release func(), msg string) {
	names := q["cluster"]
	switch {
	case len(names) == 0 || names[0] == "":
		return nil, nil, fmt.Sprintf("missing parameter cluster: %s?cluster=NAME, NAME one of the clusters of --config.file (listed at %s)", path, listedAt)
	case len(names) > 1:
		return nil, nil, fmt.Sprintf("parameter cluster given %d times: name one cluster", len(names))
	}
	t, release, ok := s.reg.Acquire(names[0])
	if !ok {
		return nil, nil, fmt.Sprintf("unknown cluster %s: not in --config.file (listed at %s)", quoteName(names[0]), listedAt)
	}
	return t, release, ""
}
