package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/etcd-monitor/etcd-monitor/clusterapi"
)

// telemetryPathChars are the characters a --web.telemetry-path may hold: RFC 3986's path
// characters without percent-encoding, so that the path is one literal ServeMux pattern (no
// method, host or {wildcard}) and goes into the landing page's link as it is.
const telemetryPathChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/"

// validateTelemetryPath refuses a metrics path the mux would panic on, never match, or that would
// take over the status API, the exporter's /-/ endpoints or the landing page.
func validateTelemetryPath(p string) error {
	bad := func(why string) error { return fmt.Errorf("--web.telemetry-path %q %s", p, why) }
	if !strings.HasPrefix(p, "/") {
		return bad("must start with /")
	}
	if i := strings.IndexFunc(p, func(r rune) bool { return !strings.ContainsRune(telemetryPathChars, r) }); i >= 0 {
		return bad(fmt.Sprintf("holds %q: only letters, digits and -._~!$&'()*+,;=:@/ are allowed", p[i:i+1]))
	}
	// The mux redirects requests for unclean paths to their clean form, so an unclean pattern
	// would never be reached.
	if clean := path.Clean(p); clean != p && clean+"/" != p {
		return bad(fmt.Sprintf("is not a clean path (%s)", clean))
	}
	if p == "/" {
		return bad("is the landing page")
	}
	for reserved, what := range map[string]string{
		"/api": "the status API (" + clusterapi.PathStatus + ", ...)",
		"/-":   clusterapi.PathHealthy + " and " + clusterapi.PathReady,
	} {
		if p == reserved || strings.HasPrefix(p, reserved+"/") {
			return bad(fmt.Sprintf("is under %s/, reserved for %s", reserved, what))
		}
	}
	return nil
}

// recoverPattern turns the panic ServeMux raises for an invalid or conflicting pattern into an
// error in *err: a telemetry path that slipped past validateTelemetryPath must not crash the
// exporter. Deferred by the function that registers the handlers.
func recoverPattern(metricsPath string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("--web.telemetry-path %q cannot be served: %v", metricsPath, r)
	}
}

// Server timeouts. Scrapes are long (their deadline is the scrape timeout), so there is no read or
// write timeout on a whole request; only a client that is slow to send its headers or an idle
// keep-alive connection is cut off. Two minutes idle outlasts a 1-minute scrape interval, so
// Prometheus keeps its connection between scrapes.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	// shutdownTimeout bounds sending the answers of canceled requests on SIGTERM.
	shutdownTimeout = 5 * time.Second
)

func newServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: idleTimeout}
}

// apiPolicy is the Content-Security-Policy of every answer but the page: JSON, text and metrics
// load nothing and may not be framed.
const apiPolicy = "default-src 'none'; frame-ancestors 'none'"

// securityHeaders marks every answer nosniff (a browser must not run JSON holding member names
// from etcd as HTML) with apiPolicy; the page's handler replaces the policy with its own.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", apiPolicy)
		h.ServeHTTP(w, r)
	})
}

var inlinePattern = regexp.MustCompile(`(?s)<(script|style)>(.*?)</(?:script|style)>`)

// withPagePolicy serves page under a policy that allows exactly the inline scripts and styles
// it serves (by their SHA-256, computed from the rendered page so that it follows any change to
// it) and fetches from its own origin (the status API), nothing else.
func withPagePolicy(page http.Handler) http.Handler {
	rec := &pageRecorder{header: http.Header{}}
	page.ServeHTTP(rec, &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/"}, Header: http.Header{}})
	sources := map[string][]string{"script": nil, "style": nil}
	for _, m := range inlinePattern.FindAllSubmatch(rec.body.Bytes(), -1) {
		sum := sha256.Sum256(m[2])
		sources[string(m[1])] = append(sources[string(m[1])], "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
	}
	src := func(kind string) string {
		if len(sources[kind]) == 0 {
			return "'none'"
		}
		return strings.Join(sources[kind], " ")
	}
	policy := fmt.Sprintf("default-src 'none'; script-src %s; style-src %s; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'", src("script"), src("style"))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" { // anything else is the handler's 404
			w.Header().Set("Content-Security-Policy", policy)
		}
		page.ServeHTTP(w, r)
	})
}

// pageRecorder keeps what the page handler writes, to compute the page's policy once.
type pageRecorder struct {
	header http.Header
	body   bytes.Buffer
}

func (p *pageRecorder) Header() http.Header         { return p.header }
func (p *pageRecorder) Write(b []byte) (int, error) { return p.body.Write(b) }
func (p *pageRecorder) WriteHeader(int)             {}

// limitScrapes answers a request for metricsPath with 503 at once when max of them are already
// being served (0: no limit), like node_exporter's --web.max-requests: a burst of scrapes must not
// pile up etcd calls. Other paths are not limited.
func limitScrapes(mux *http.ServeMux, metricsPath string, max int) http.Handler {
	if max <= 0 {
		return mux
	}
	sem := make(chan struct{}, max)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != metricsPath {
			mux.ServeHTTP(w, r)
			return
		}
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
			mux.ServeHTTP(w, r)
		default:
			http.Error(w, fmt.Sprintf("%d scrapes already in flight (--web.max-requests); try again later", max), http.StatusServiceUnavailable)
		}
	})
}
