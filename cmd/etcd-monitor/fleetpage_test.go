package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

var clusterRowPattern = regexp.MustCompile(`<tr data-cluster="([^"]+)" data-verdict="([a-z]+)">`)

// In config-file mode the landing page shows one row per cluster with its verdict.
func TestFleetLandingPageInChromium(t *testing.T) {
	chromium := chromiumPath(t)
	c := etcdtest.Start(t, 1)
	path := filepath.Join(t.TempDir(), "fleet.yml")
	fleetFile(t, path, "healthy-one="+c.Endpoints()[0], "broken="+closedPort(t))
	srv := testFleet(t, path, false)

	dom := dumpDOM(t, chromium, srv.URL+"/")
	rows := map[string]string{}
	for _, m := range clusterRowPattern.FindAllStringSubmatch(dom, -1) {
		rows[m[1]] = m[2]
	}
	if len(rows) != 2 || rows["healthy-one"] != "healthy" || rows["broken"] != "critical" {
		t.Fatalf("cluster rows %v, want healthy-one healthy and broken critical; DOM:\n%s", rows, dom)
	}
	for _, want := range []string{"1 of 1", "etcd unreachable", `href="/sd"`, `href="/api/v1/clusters"`, "2 configured"} {
		if !strings.Contains(dom, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}
