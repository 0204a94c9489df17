// Package clusterapi serves the state of an etcd cluster as JSON (/api/v1/...) and the exporter's own
// liveness and readiness (/-/healthy, /-/ready). Every answer comes from a fresh snapshot taken under
// the same deadline rules as a scrape; concurrent requests share one in-flight snapshot. Everything
// here is read-only: no request writes to etcd or names the etcd it is about.
package clusterapi

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sync/atomic"
	"time"

	"github.com/etcd-monitor/etcd-monitor/certcheck"
	"github.com/etcd-monitor/etcd-monitor/scrapetimeout"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// Paths served by the API.
const (
	PathStatus  = "/api/v1/cluster/status"
	PathLeader  = "/api/v1/cluster/leader"
	PathLatency = "/api/v1/metrics/latency"
	PathHealthy = "/-/healthy"
	PathReady   = "/-/ready"
)

// Needs is what the API's snapshots ask every member for: Status and the probes.
var Needs = snapshot.Needs{Status: true, Probes: true}

// Options configures the API.
type Options struct {
	// Snapshots takes (or joins) the snapshot of each request; it must be built with Needs.
	Snapshots *snapshot.Shared
	// Timeout (positive) and Offset are the scrape deadline rules (see scrapetimeout.Parse).
	Timeout time.Duration
	Offset  time.Duration
	Logger  *slog.Logger
	// Certificates, when set, adds the last certificate check to the status and its verdict.
	Certificates *certcheck.Checker
}

// API serves the status endpoints.
type API struct {
	o        Options
	shutdown atomic.Bool
	routes   map[string]route
}

type route struct {
	params  []string // the only query parameters accepted
	handler func(w http.ResponseWriter, r *http.Request, q url.Values)
}

// New builds the API.
func New(o Options) *API {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	a := &API{o: o}
	a.routes = map[string]route{
		PathStatus:  {handler: a.withSnapshot(a.status)},
		PathLeader:  {handler: a.withSnapshot(a.leader)},
		PathLatency: {params: []string{"member"}, handler: a.withSnapshot(a.latency)},
		PathHealthy: {handler: func(w http.ResponseWriter, _ *http.Request, _ url.Values) { writeText(w, http.StatusOK, "OK") }},
		PathReady:   {handler: a.ready},
	}
	return a
}

// Register adds the API's paths to mux: every path under /api/ (unknown ones answer 404 JSON)
// and the two /-/ paths.
func (a *API) Register(mux *http.ServeMux) {
	mux.Handle("/api/", a)
	mux.Handle(PathHealthy, a)
	mux.Handle(PathReady, a)
}

// ShuttingDown makes /-/ready answer 503, so that a load balancer stops sending requests before
// the listener closes.
func (a *API) ShuttingDown() { a.shutdown.Store(true) }

// ServeHTTP routes a request: unknown path 404, wrong method 405, unknown parameter 400.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, ok := a.routes[r.URL.Path]
	if !ok {
		WriteError(w, http.StatusNotFound, fmt.Sprintf("unknown path %q", r.URL.Path))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		WriteError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed: the API is read-only (GET, HEAD)", r.Method))
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		WriteError(w, http.StatusBadRequest, fmt.Sprintf("bad query: %v", err))
		return
	}
	for k, v := range q {
		if !slices.Contains(rt.params, k) {
			WriteError(w, http.StatusBadRequest, fmt.Sprintf("unknown parameter %q", k))
			return
		}
		if len(v) != 1 {
			WriteError(w, http.StatusBadRequest, fmt.Sprintf("parameter %q given %d times", k, len(v)))
			return
		}
	}
	rt.handler(w, r, q)
}

// ready does not depend on etcd: an exporter reporting a broken etcd is doing its job, and taking
// it out of service then would hide the outage it exists to show.
func (a *API) ready(w http.ResponseWriter, _ *http.Request, _ url.Values) {
	if a.shutdown.Load() {
		writeText(w, http.StatusServiceUnavailable, "shutting down")
		return
	}
	writeText(w, http.StatusOK, "OK")
}

// withSnapshot applies the scrape deadline rules, takes (or joins) a snapshot and answers 503 when
// no endpoint answered.
func (a *API) withSnapshot(h func(w http.ResponseWriter, s *snapshot.Snapshot, q url.Values)) func(http.ResponseWriter, *http.Request, url.Values) {
	return func(w http.ResponseWriter, r *http.Request, q url.Values) {
		timeout, err := scrapetimeout.Parse(r.Header.Get(scrapetimeout.Header), a.o.Timeout, a.o.Offset)
		if err != nil {
			WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		s, err := a.o.Snapshots.Take(r.Context(), time.Now().Add(timeout))
		if err != nil {
			// The client has gone; nobody reads this.
			WriteError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		if !s.Up() {
			msg := "etcd unreachable: no endpoint answered"
			if s.MemberListErr != nil {
				msg += ": " + s.MemberListErr.Error()
			}
			a.o.Logger.Debug("status API: etcd unreachable", "path", r.URL.Path, "err", s.MemberListErr)
			WriteError(w, http.StatusServiceUnavailable, msg)
			return
		}
		h(w, s, q)
	}
}

func (a *API) status(w http.ResponseWriter, s *snapshot.Snapshot, _ url.Values) {
	st := ClusterStatusOf(s)
	if a.o.Certificates != nil {
		st = WithCertificates(st, a.o.Certificates.Last(), time.Now())
	}
	WriteData(w, http.StatusOK, st)
}

func (a *API) leader(w http.ResponseWriter, s *snapshot.Snapshot, _ url.Values) {
	l, ok := LeaderOf(s)
	if !ok {
		c := s.Cluster()
		WriteError(w, http.StatusServiceUnavailable, fmt.Sprintf("no leader: fewer than %d of %d voting members name the same leader (%d of %d members up)", c.Quorum, c.Members-c.Learners, c.MembersUp, c.Members))
		return
	}
	WriteData(w, http.StatusOK, l)
}

func (a *API) latency(w http.ResponseWriter, s *snapshot.Snapshot, q url.Values) {
	lat := LatencyOf(s)
	if want, ok := q["member"]; ok {
		var kept []MemberLatency
		for _, m := range lat.Members {
			if m.ID == want[0] || m.Name == want[0] {
				kept = append(kept, m)
			}
		}
		if len(kept) == 0 {
			WriteError(w, http.StatusNotFound, fmt.Sprintf("unknown member %q (give a member's name or hex id)", want[0]))
			return
		}
		lat.Members = kept
	}
	WriteData(w, http.StatusOK, lat)
}

// Response is the envelope of every JSON answer, in the style of Prometheus' HTTP API.
type Response struct {
	Status string `json:"status"` // "success" or "error"
	Data   any    `json:"data,omitempty"`
	Error  string `json:"error,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// WriteData answers data in the success envelope; config-file mode answers with it too.
func WriteData(w http.ResponseWriter, code int, data any) {
	writeJSON(w, code, Response{Status: "success", Data: data})
}

// WriteError answers msg in the error envelope.
func WriteError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, Response{Status: "error", Error: msg})
}

func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}
