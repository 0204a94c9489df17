package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/exporter-toolkit/web"

	"github.com/etcd-monitor/etcd-monitor/collector"
	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// The status API is on the exporter's one handler, so --web.config.file guards it like /metrics.
func TestWebConfigProtectsTheAPI(t *testing.T) {
	c := etcdtest.Start(t, 1)
	handler := testExporterHandler(t, c.Endpoints())

	// bcrypt of "s3cret" (cost 4), as web-config files hold it.
	cfgPath := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(cfgPath, []byte("basic_auth_users:\n  monitor: $2a$04$c2./RKO49rXXA0B6jySQlORFkVYoAymqyR1jLlL0C3mBn2stJsm66\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))
	systemd := false
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() {
		errc <- web.ListenAndServe(srv, &web.FlagConfig{WebListenAddresses: &[]string{addr}, WebSystemdSocket: &systemd, WebConfigFile: &cfgPath}, slog.New(slog.DiscardHandler))
	}()
	defer func() {
		srv.Close()
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("server: %v", err)
		}
	}()

	get := func(path string, auth bool) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if auth {
			req.SetBasicAuth("monitor", "s3cret")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	for i := 0; i < 100; i++ { // until it listens
		if code, _ := get("/-/healthy", true); code != 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range []string{"/api/v1/cluster/status", "/api/v1/cluster/leader", "/api/v1/metrics/latency", "/api/v1/nope", "/-/ready", "/", "/metrics"} {
		if code, _ := get(p, false); code != http.StatusUnauthorized {
			t.Errorf("%s without credentials: %d, want 401", p, code)
		}
	}
	code, body := get("/api/v1/cluster/status", true)
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Cluster struct {
				MembersUp int `json:"members_up"`
			} `json:"cluster"`
		} `json:"data"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &r) != nil || r.Status != "success" || r.Data.Cluster.MembersUp != 1 {
		t.Errorf("with credentials: %d %s", code, body)
	}
}

// testExporterHandler is the exporter's whole handler (metrics, API, page) over endpoints, with a
// 3 s deadline when a request sends no timeout header.
func testExporterHandler(t *testing.T, endpoints []string) http.Handler {
	t.Helper()
	taker, err := snapshot.NewTaker(etcdconn.Config{Endpoints: endpoints})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(taker.Close)
	exp, err := collector.New(taker, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(exp.Close)
	handler, _, err := newExporterHandler(exporterHandlerConfig{
		metricsPath: "/metrics", timeout: 3 * time.Second, offset: 500 * time.Millisecond,
		taker: taker, exporter: exp, logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	return handler
}
