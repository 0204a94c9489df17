package main

import (
	"io"
	"net"
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

// With --web.max-requests=1 and one scrape waiting on a frozen member, another scrape is refused
// at once with 503, while the rest of the exporter still answers; 0 means no limit.
func TestMaxRequests(t *testing.T) {
	c := etcdtest.Start(t, 1)
	// frozenExporter runs the exporter through a forwarder to the member, scrapes once (so the
	// connection is up) and freezes the member.
	frozenExporter := func(t *testing.T, args ...string) (*exporterProcess, *freezer) {
		t.Helper()
		f := startFreezer(t, strings.TrimPrefix(c.Endpoints()[0], "http://"))
		p := startExporter(t, append(args, "--etcd.endpoints="+f.addr())...)
		if code, body, err := p.get(t, "/metrics", 30*time.Second); code != http.StatusOK || !strings.Contains(body, "\netcd_monitor_up 1\n") {
			t.Fatalf("scrape before the freeze: %d %v\n%s", code, err, body)
		}
		f.freeze()
		return p, f
	}

	t.Run("limit 1", func(t *testing.T) {
		p, f := frozenExporter(t, "--scrape.timeout=5m", "--web.max-requests=1")
		var wg sync.WaitGroup
		wg.Go(func() { _, _, _ = p.get(t, "/metrics", time.Minute) })
		defer func() { _ = p.cmd.Process.Kill(); wg.Wait() }()
		select {
		case <-f.held:
		case <-time.After(10 * time.Second):
			t.Fatal("the first scrape never reached the frozen member")
		}
		code, body, err := p.get(t, "/metrics", 10*time.Second)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "--web.max-requests") {
			t.Errorf("second scrape: %d %q %v, want 503 naming --web.max-requests", code, body, err)
		}
		if code, _, err := p.get(t, "/-/healthy", 10*time.Second); code != http.StatusOK {
			t.Errorf("/-/healthy while scrapes are refused: %d %v", code, err)
		}
	})

	t.Run("0 is no limit", func(t *testing.T) {
		p, _ := frozenExporter(t, "--scrape.timeout=2s", "--web.max-requests=0")
		var wg sync.WaitGroup
		codes := make([]int, 5)
		for i := range codes {
			wg.Go(func() { codes[i], _, _ = p.get(t, "/metrics", 30*time.Second) })
		}
		wg.Wait()
		for i, c := range codes {
			if c != http.StatusOK {
				t.Errorf("concurrent scrape %d: %d, want 200 (members down after the deadline)", i, c)
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

// The built exporter (exporter-toolkit serving newServer) cuts off a client that never finishes
// its headers, so slow clients cannot pile up connections.
func TestSlowHeadersAreCutOff(t *testing.T) {
	p := startExporter(t, "--etcd.endpoints=127.0.0.1:1")
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /metrics HTTP/1.1\r\nHost: exporter\r\n")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(readHeaderTimeout + 10*time.Second))
	_, err = io.ReadAll(conn)
	if err != nil {
		t.Fatalf("connection still open %s after half a request: %v", time.Since(start).Round(time.Second), err)
	}
	if since := time.Since(start); since < readHeaderTimeout/2 {
		t.Errorf("closed after %s, before the header timeout (%s)", since, readHeaderTimeout)
	}
}
