package clusterapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/certcheck"
	"github.com/etcd-monitor/etcd-monitor/collector"
	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/certgen"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// TestStatusShowsCertificates: the status (and so the page, which lists its reasons) carries the
// exporter's last certificate check; a serving certificate with 3 of its 30 days left makes the
// verdict degraded. Before any scrape has checked, there is nothing to show and nothing is judged.
func TestStatusShowsCertificates(t *testing.T) {
	p := certgen.NewEtcdPKI(t, 1,
		func(int) certgen.Spec {
			return certgen.ServingSpec(0x71, certgen.At(-27*24*time.Hour), certgen.At(3*24*time.Hour))
		},
		func(int) certgen.Spec {
			return certgen.PeerSpec(0x72, certgen.At(-time.Hour), certgen.At(365*24*time.Hour))
		})
	c := p.Start(t)
	conn := etcdconn.Config{Endpoints: c.Endpoints(), CAFile: p.CAFile, CertFile: p.ClientCert, KeyFile: p.ClientKey}
	tk, err := snapshot.NewTaker(conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tk.Close)
	checker := certcheck.New(certcheck.Config{CAFile: p.CAFile, CertFile: p.ClientCert, TLS: true})
	t.Cleanup(checker.Close)
	exp, err := collector.New(tk, []string{"certificates"}, collector.WithCertificates(checker))
	if err != nil {
		t.Fatal(err)
	}
	api := New(Options{Snapshots: snapshot.NewShared(tk.Take, Needs), Timeout: 5 * time.Second, Certificates: checker})
	mux := http.NewServeMux()
	api.Register(mux)
	mux.Handle("/metrics", exp.Handler(collector.HandlerOpts{Timeout: 5 * time.Second}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	status := func() ClusterStatus {
		t.Helper()
		resp, err := http.Get(srv.URL + PathStatus)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r struct{ Data ClusterStatus }
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
		return r.Data
	}
	if st := status(); st.Certificates != nil || st.Cluster.Health.Verdict != snapshot.Healthy {
		t.Fatalf("before any check: certificates %+v, verdict %s", st.Certificates, st.Cluster.Health.Verdict)
	}
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	st := status()
	if st.Certificates == nil || len(st.Certificates.Items) != 4 {
		t.Fatalf("after a scrape: certificates %+v, want 2 listeners and 2 files", st.Certificates)
	}
	expiry := map[string]string{}
	for _, it := range st.Certificates.Items {
		expiry[it.Listener+it.File] = it.Expiry
	}
	if expiry["client"] != "expiring" || expiry["peer"] != "ok" || expiry["cert"] != "ok" || expiry["ca"] != "ok" {
		t.Errorf("expiry per listener and file: %v", expiry)
	}
	h := st.Cluster.Health
	if h.Verdict != snapshot.Degraded || !strings.Contains(strings.Join(h.Reasons, "; "), "certificate etcd-server (serial 71) of the client listener of member m0") {
		t.Errorf("health %+v: want degraded by the expiring certificate", h)
	}
}
