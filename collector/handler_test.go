package collector

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/scrapetimeout"
)

// TestScrapeTimeoutHeaderRefused: a header that is not a positive finite number is a 400 before
// any etcd call, never a scrape without a deadline (NaN passed the old range checks).
func TestScrapeTimeoutHeaderRefused(t *testing.T) {
	e, _ := newExporter(t, etcdconn.Config{Endpoints: []string{fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))}})
	srv := httptest.NewServer(e.Handler(HandlerOpts{Timeout: 300 * time.Millisecond, Offset: 100 * time.Millisecond}))
	defer srv.Close()
	defer srv.Client().CloseIdleConnections()
	for _, tc := range []struct {
		header string
		code   int
	}{
		{"NaN", http.StatusBadRequest},
		{"-Inf", http.StatusBadRequest},
		{"+Inf", http.StatusBadRequest},
		{"0", http.StatusBadRequest},
		{"-3", http.StatusBadRequest},
		{"0.4", http.StatusOK},
	} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		req.Header.Set(scrapetimeout.Header, tc.header)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp)
		if resp.StatusCode != tc.code {
			t.Errorf("header %q: %d %s, want %d", tc.header, resp.StatusCode, body, tc.code)
		}
		if tc.code == http.StatusBadRequest && !strings.Contains(body, scrapetimeout.Header) {
			t.Errorf("header %q: body %q does not name the header", tc.header, body)
		}
	}
}
