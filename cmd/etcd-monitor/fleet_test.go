package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/clusterapi"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/targets"
)

// fleetFile writes a config file with one cluster per name=endpoint pair.
func fleetFile(t *testing.T, path string, clusters ...string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("clusters:\n")
	for _, c := range clusters {
		name, ep, _ := strings.Cut(c, "=")
		fmt.Fprintf(&b, "  - name: %s\n    endpoints: [%q]\n", name, ep)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// testFleet serves config-file mode over the file at path (3 s deadline without a header).
func testFleet(t *testing.T, path string, lifecycle bool) *httptest.Server {
	t.Helper()
	return testFleetLimited(t, path, lifecycle, 40)
}

// testFleetLimited is testFleet with --web.max-requests=maxRequests.
func testFleetLimited(t *testing.T, path string, lifecycle bool, maxRequests int) *httptest.Server {
	t.Helper()
	reg, err := targets.New(path, targets.Options{StatusNeeds: clusterapi.Needs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	fs := &fleetServer{reg: reg, lifecycle: lifecycle, timeout: 3 * time.Second, offset: 500 * time.Millisecond, logger: slog.New(slog.DiscardHandler)}
	h, err := fs.handler("/metrics", maxRequests)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func request(t *testing.T, method, u string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// closedPort is a loopback address nothing listens on: a cluster there is down.
func closedPort(t *testing.T) string {
	return fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))
}

// /probe?cluster= answers that cluster's metrics; /metrics only the exporter's own.
func TestProbeServesTheNamedCluster(t *testing.T) {
	c := etcdtest.Start(t, 1)
	path := filepath.Join(t.TempDir(), "fleet.yml")
	fleetFile(t, path, "good="+c.Endpoints()[0], "down="+closedPort(t))
	srv := testFleet(t, path, false)

	code, body := request(t, http.MethodGet, srv.URL+"/probe?cluster=good")
	if code != 200 || !strings.Contains(body, "\netcd_monitor_up 1\n") || !strings.Contains(body, "etcd_monitor_cluster_members ") {
		t.Errorf("probe good: %d\n%s", code, body)
	}
	if strings.Contains(body, "go_goroutines") || strings.Contains(body, "etcd_monitor_config_") {
		t.Error("a probe carries the exporter's own metrics")
	}
	code, body = request(t, http.MethodGet, srv.URL+"/probe?cluster=down")
	if code != 200 || !strings.Contains(body, "\netcd_monitor_up 0\n") {
		t.Errorf("probe down: %d\n%s", code, body)
	}
	// The deadline rules of a scrape: a bad timeout header is 400.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/probe?cluster=good", nil)
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", "NaN")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 400 {
		t.Errorf("NaN timeout header: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	code, body = request(t, http.MethodGet, srv.URL+"/metrics")
	for _, want := range []string{
		"\netcd_monitor_config_last_reload_successful 1\n",
		"\netcd_monitor_config_clusters 2\n",
		"\netcd_monitor_probes_total{cluster=\"good\"} 2\n",
		"\netcd_monitor_probes_total{cluster=\"down\"} 1\n",
		"etcd_monitor_config_last_reload_success_timestamp_seconds ",
		"go_goroutines", "process_open_fds", "etcd_monitor_build_info",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code != 200 || strings.Contains(body, "etcd_monitor_up") || strings.Contains(body, "etcd_monitor_member_") {
		t.Errorf("/metrics in config-file mode serves cluster metrics: %d\n%s", code, body)
	}
}

// listenCounter accepts and counts connections on loopback: an address a request tries to
// smuggle in, to see whether the exporter dials it.
type listenCounter struct {
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
}

func newListenCounter(t *testing.T) *listenCounter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &listenCounter{ln: ln}
	l.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.accepted.Add(1)
			c.Close()
		}
	})
	t.Cleanup(func() { ln.Close(); l.wg.Wait() })
	return l
}

// No request supplies an address, credential or file: every way of trying is a 400 (or 405), and
// the address offered is never dialed.
func TestProbeTakesNoAddressFromTheRequest(t *testing.T) {
	c := etcdtest.Start(t, 1)
	bait := newListenCounter(t)
	addr := bait.ln.Addr().String()
	path := filepath.Join(t.TempDir(), "fleet.yml")
	fleetFile(t, path, "a="+c.Endpoints()[0])
	srv := testFleet(t, path, false)
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"",
		"cluster=",
		"target=" + addr,
		"target=http://" + addr,
		"endpoints=" + addr,
		"cluster=a&target=" + addr,
		"cluster=a&endpoints=" + addr,
		"cluster=a&etcd.endpoints=" + addr,
		"cluster=a&module=" + addr,
		"cluster=a&password_file=" + url.QueryEscape(pwFile),
		"cluster=a&ca_file=/etc/passwd",
		"cluster=a&username=root&password=x",
		"cluster=" + addr,
		"cluster=http://" + addr,
		"cluster=" + url.QueryEscape("a&target="+addr),
		"cluster=a%26target%3D" + addr,
		"cluster=a;target=" + addr,
		"cluster=a&cluster=" + addr,
		"Cluster=a",
		"CLUSTER=" + addr,
		"cluster=%zz",
		"cluster=a%00",
		"cluster=" + url.QueryEscape("a\n"),
		"cluster=" + url.QueryEscape("../../etc/passwd"),
		"cluster=" + url.QueryEscape(pwFile),
		"cluster=" + strings.Repeat("a", 10000),
		"cluster[]=a",
		"%63luster=" + addr, // "cluster" percent-encoded, naming an address
	} {
		code, body := request(t, http.MethodGet, srv.URL+"/probe?"+q)
		if code != http.StatusBadRequest {
			t.Errorf("/probe?%.80s: %d, want 400\n%.300s", q, code, body)
		}
		if strings.Count(strings.TrimSuffix(body, "\n"), "\n") > 0 || len(body) > 400 {
			t.Errorf("/probe?%.80s: not one short line: %.300q", q, body)
		}
	}
	// A form body, another method, another path.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/probe?cluster=a", strings.NewReader("target="+addr))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /probe: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	for _, p := range []string{"/probe/" + addr, "/probe/http://" + addr + "?cluster=a", "/metrics?target=" + addr, "/sd?target=" + addr} {
		if code, _ := request(t, http.MethodGet, srv.URL+p); code == 200 && !strings.HasPrefix(p, "/metrics") {
			t.Errorf("%s: 200", p)
		}
	}
	if n := bait.accepted.Load(); n != 0 {
		t.Errorf("the exporter dialed the address a request named, %d times", n)
	}
	// The legitimate request still works, and asked only the configured cluster.
	if code, body := request(t, http.MethodGet, srv.URL+"/probe?cluster=a"); code != 200 || !strings.Contains(body, "\netcd_monitor_up 1\n") {
		t.Errorf("probe a: %d", code)
	}
}

func TestProbeErrorsSayWhatIsWrong(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.yml")
	fleetFile(t, path, "a="+closedPort(t))
	srv := testFleet(t, path, false)
	for q, want := range map[string]string{
		"":                                    "missing parameter cluster",
		"cluster=nope":                        `unknown cluster "nope": not in --config.file (listed at /sd)`,
		"cluster=a&cluster=a":                 "given 2 times",
		"cluster=a&target=x":                  `unknown parameter "target"`,
		"cluster=%zz":                         "bad query",
		"cluster=" + strings.Repeat("x", 200): `..." not in --config.file`,
	} {
		code, body := request(t, http.MethodGet, srv.URL+"/probe?"+q)
		if code != 400 || !strings.Contains(body, strings.TrimPrefix(want, `..."`)) {
			t.Errorf("/probe?%.40s: %d %q, want 400 with %q", q, code, body, want)
		}
	}
}

// The target list names every configured cluster with what a scrape of it needs.
func TestServiceDiscovery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.yml")
	fleetFile(t, path, "b="+closedPort(t), "a="+closedPort(t))
	srv := testFleet(t, path, true)
	code, body := request(t, http.MethodGet, srv.URL+"/sd")
	var groups []sdGroup
	if code != 200 || json.Unmarshal([]byte(body), &groups) != nil {
		t.Fatalf("/sd: %d %s", code, body)
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	want := `[{"targets":["` + host + `"],"labels":{"__metrics_path__":"/probe","__param_cluster":"a","cluster":"a"}},{"targets":["` + host + `"],"labels":{"__metrics_path__":"/probe","__param_cluster":"b","cluster":"b"}}]`
	if strings.TrimSpace(body) != want {
		t.Errorf("/sd:\n%s\nwant\n%s", body, want)
	}

	fleetFile(t, path, "c="+closedPort(t))
	if code, body := request(t, http.MethodPost, srv.URL+"/-/reload"); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	if _, body := request(t, http.MethodGet, srv.URL+"/sd"); !strings.Contains(body, `"cluster":"c"`) || strings.Contains(body, `"cluster":"a"`) {
		t.Errorf("/sd after the reload: %s", body)
	}
}

// POST /-/reload needs --web.enable-lifecycle; a bad file is a 500 that keeps the configuration.
func TestReloadEndpoint(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fleet.yml")
	fleetFile(t, path, "a="+closedPort(t))
	off := testFleet(t, path, false)
	if code, body := request(t, http.MethodPost, off.URL+"/-/reload"); code != http.StatusForbidden || !strings.Contains(body, "--web.enable-lifecycle") {
		t.Errorf("reload without --web.enable-lifecycle: %d %s", code, body)
	}
	on := testFleet(t, path, true)
	if code, _ := request(t, http.MethodGet, on.URL+"/-/reload"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /-/reload: %d", code)
	}
	if err := os.WriteFile(path, []byte("clusters:\n  - name: a\n    endpointz: [127.0.0.1:2379]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, body := request(t, http.MethodPost, on.URL+"/-/reload")
	if code != http.StatusInternalServerError || !strings.Contains(body, "field endpointz not found") {
		t.Errorf("reload of a bad file: %d %s", code, body)
	}
	if _, body := request(t, http.MethodGet, on.URL+"/metrics"); !strings.Contains(body, "\netcd_monitor_config_last_reload_successful 0\n") {
		t.Errorf("after a failed reload:\n%s", body)
	}
	if code, _ := request(t, http.MethodGet, on.URL+"/probe?cluster=a"); code != 200 {
		t.Errorf("a, configured before the failed reload: %d", code)
	}
}

// --web.max-requests bounds the probes in flight, across clusters; /metrics is not limited.
func TestProbeMaxRequests(t *testing.T) {
	c := etcdtest.Start(t, 1)
	frozen := startFreezer(t, strings.TrimPrefix(c.Endpoints()[0], "http://"))
	path := filepath.Join(t.TempDir(), "fleet.yml")
	fleetFile(t, path, "frozen="+frozen.addr(), "other="+c.Endpoints()[0])
	srv := testFleetLimited(t, path, false, 1)
	if code, _ := request(t, http.MethodGet, srv.URL+"/probe?cluster=frozen"); code != 200 {
		t.Fatalf("probe before the freeze: %d", code)
	}
	frozen.freeze()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { request(t, http.MethodGet, srv.URL+"/probe?cluster=frozen") })
	select {
	case <-frozen.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the probe never reached the frozen member")
	}
	if code, body := request(t, http.MethodGet, srv.URL+"/probe?cluster=other"); code != http.StatusServiceUnavailable || !strings.Contains(body, "--web.max-requests") {
		t.Errorf("second probe while one is in flight: %d %s, want 503", code, body)
	}
	if code, _ := request(t, http.MethodGet, srv.URL+"/metrics"); code != 200 {
		t.Errorf("/metrics while a probe is in flight: %d", code)
	}
}
