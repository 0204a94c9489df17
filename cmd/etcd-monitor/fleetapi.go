package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/etcd-monitor/etcd-monitor/clusterapi"
	"github.com/etcd-monitor/etcd-monitor/scrapetimeout"
	"github.com/etcd-monitor/etcd-monitor/targets"
)

// pathClusters lists every configured cluster with its verdict (config-file mode).
const pathClusters = "/api/v1/clusters"

// fleetSnapshots bounds the snapshots one fleet-wide request takes at once: each asks every
// member of its cluster, so a fleet of hundreds must not open hundreds of rounds of calls at once.
const fleetSnapshots = 8

// FleetCluster is one cluster of /api/v1/clusters.
type FleetCluster struct {
	Name string `json:"name"`
	// Up is false when no endpoint answered; Cluster then holds the unreachable verdict.
	Up      bool               `json:"up"`
	Cluster clusterapi.Cluster `json:"cluster"`
	// Error is why no endpoint answered.
	Error string `json:"error,omitempty"`
}

// fleetStatus judges every cluster of reg, fleetSnapshots at a time, all under one deadline:
// a cluster still waiting for its turn when the deadline comes is reported unreachable rather
// than making the answer late.
func fleetStatus(ctx context.Context, reg *targets.Registry, names []string, deadline time.Time) ([]FleetCluster, error) {
	out := make([]FleetCluster, 0, len(names))
	type acquired struct {
		t       *targets.Target
		release func()
	}
	var ts []acquired
	for _, name := range names {
		if t, release, ok := reg.Acquire(name); ok {
			ts = append(ts, acquired{t, release})
			out = append(out, FleetCluster{Name: name})
		}
	}
	sem := make(chan struct{}, fleetSnapshots)
	var wg sync.WaitGroup
	var gone error
	var mu sync.Mutex
	for i, a := range ts {
		wg.Go(func() {
			defer a.release()
			sem <- struct{}{}
			defer func() { <-sem }()
			s, err := a.t.Status.Take(ctx, deadline)
			if err != nil {
				mu.Lock()
				gone = err
				mu.Unlock()
				return
			}
			out[i].Up = s.Up()
			st := clusterapi.ClusterStatusOf(s)
			if c := a.t.Exporter.Certificates(); c != nil {
				st = clusterapi.WithCertificates(st, c.Last(), time.Now())
			}
			out[i].Cluster = st.Cluster
			if !s.Up() && s.MemberListErr != nil {
				out[i].Error = s.MemberListErr.Error()
			}
		})
	}
	wg.Wait()
	return out, gone
}

// api serves the status API in config-file mode: /api/v1/clusters for the fleet, and the
// single-cluster paths with ?cluster=NAME, answered by that cluster's clusterapi.API as in flags
// mode.
func (s *fleetServer) api(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		clusterapi.WriteError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed: the API is read-only (GET, HEAD)", r.Method))
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		clusterapi.WriteError(w, http.StatusBadRequest, fmt.Sprintf("bad query: %v", err))
		return
	}
	if r.URL.Path == pathClusters {
		s.clusters(w, r, q)
		return
	}
	switch r.URL.Path {
	case clusterapi.PathStatus, clusterapi.PathLeader, clusterapi.PathLatency:
	default:
		clusterapi.WriteError(w, http.StatusNotFound, fmt.Sprintf("unknown path %q", r.URL.Path))
		return
	}
	t, release, msg := s.acquireOne(q, r.URL.Path, pathClusters)
	if msg != "" {
		clusterapi.WriteError(w, http.StatusBadRequest, msg)
		return
	}
	defer release()
	// The cluster's API checks the other parameters as in flags mode, where cluster is unknown.
	q.Del("cluster")
	r2 := r.Clone(r.Context())
	r2.URL.RawQuery = q.Encode()
	clusterapi.New(clusterapi.Options{Snapshots: t.Status, Timeout: s.timeout, Offset: s.offset, Logger: s.logger, Certificates: t.Exporter.Certificates()}).ServeHTTP(w, r2)
}

// clusters answers /api/v1/clusters: every cluster (or those named by cluster=, repeatable) with
// its verdict, under the scrape deadline rules.
func (s *fleetServer) clusters(w http.ResponseWriter, r *http.Request, q url.Values) {
	for k := range q {
		if k != "cluster" {
			clusterapi.WriteError(w, http.StatusBadRequest, fmt.Sprintf("unknown parameter %s", quoteName(k)))
			return
		}
	}
	names := s.reg.Names()
	if want, ok := q["cluster"]; ok {
		known := map[string]bool{}
		for _, n := range names {
			known[n] = true
		}
		for _, n := range want {
			if !known[n] {
				clusterapi.WriteError(w, http.StatusBadRequest, fmt.Sprintf("unknown cluster %s: not in --config.file", quoteName(n)))
				return
			}
		}
		names = want
	}
	timeout, err := scrapetimeout.Parse(r.Header.Get(scrapetimeout.Header), s.timeout, s.offset)
	if err != nil {
		clusterapi.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	out, err := fleetStatus(r.Context(), s.reg, names, time.Now().Add(timeout))
	if err != nil {
		// The client has gone; nobody reads this.
		clusterapi.WriteError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	clusterapi.WriteData(w, http.StatusOK, out)
}
