package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

// Every answer tells browsers not to sniff content types and carries a Content-Security-Policy:
// nothing may load from JSON and metrics; the page may run only its own inline script and style
// (by hash, no 'unsafe-inline') and fetch only from its own origin. The chromium test proves the
// page still works under it.
func TestSecurityHeaders(t *testing.T) {
	c := etcdtest.Start(t, 1)
	srv := httptest.NewServer(testExporterHandler(t, c.Endpoints()))
	defer srv.Close()
	for _, p := range []string{"/", "/api/v1/cluster/status", "/api/v1/nope", "/-/healthy", "/-/ready", "/metrics", "/nope"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q, want nosniff", p, got)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.HasPrefix(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe") {
			t.Errorf("%s: Content-Security-Policy %q", p, csp)
		}
		if p == "/" {
			for _, want := range []string{"script-src 'sha256-", "style-src 'sha256-", "connect-src 'self'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("page policy %q lacks %s", csp, want)
				}
			}
		} else if csp != apiPolicy {
			t.Errorf("%s: policy %q, want %q", p, csp, apiPolicy)
		}
	}
}

// With --web.max-requests=1 and one scrape waiting on a hung member, another scrape is refused at
// once with 503, while the page and the API still answer; 0 means no limit.
func TestMaxRequests(t *testing.T) {
	hung := startHungEndpoint(t)
	slow := func(p *exporterProcess, n int) *sync.WaitGroup {
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Go(func() { _, _, _ = p.get(t, "/metrics", 30*time.Second) })
		}
		return &wg
	}

	t.Run("limit 1", func(t *testing.T) {
		p := startExporter(t, "--etcd.endpoints="+hung.addr(), "--scrape.timeout=20s", "--web.max-requests=1")
		wg := slow(p, 1)
		defer func() { _ = p.cmd.Process.Kill(); wg.Wait() }()
		// The slow scrape was sent first; once it is in the handler every other scrape is refused.
		var code int
		var body string
		for i := 0; i < 20; i++ {
			code, body, _ = p.get(t, "/metrics", 2*time.Second)
			if code == http.StatusServiceUnavailable {
				break
			}
		}
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "--web.max-requests") {
			t.Fatalf("second scrape: %d %q, want 503 naming --web.max-requests", code, body)
		}
		if code, _, err := p.get(t, "/-/healthy", 5*time.Second); code != http.StatusOK {
			t.Errorf("/-/healthy during the limit: %d %v", code, err)
		}
	})

	t.Run("0 is no limit", func(t *testing.T) {
		p := startExporter(t, "--etcd.endpoints="+hung.addr(), "--scrape.timeout=1s", "--web.max-requests=0")
		var wg sync.WaitGroup
		codes := make([]int, 5)
		for i := range codes {
			wg.Go(func() { codes[i], _, _ = p.get(t, "/metrics", 20*time.Second) })
		}
		wg.Wait()
		for i, c := range codes {
			if c != http.StatusOK {
				t.Errorf("scrape %d: %d, want 200 (up 0 after the deadline)", i, c)
			}
		}
	})
}

func TestMaxRequestsMustNotBeNegative(t *testing.T) {
	code, _, stderr := runBinary(t, "--web.max-requests=-1")
	if code != 1 || !strings.Contains(stderr, "--web.max-requests") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// A client that never finishes its headers, and an idle keep-alive connection, are cut off.
func TestServerTimeouts(t *testing.T) {
	srv := newServer(http.NotFoundHandler())
	if srv.ReadHeaderTimeout <= 0 || srv.IdleTimeout <= 0 {
		t.Errorf("ReadHeaderTimeout %s, IdleTimeout %s: want both set", srv.ReadHeaderTimeout, srv.IdleTimeout)
	}
}
