package main

import (
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

// SIGTERM while a scrape and an API request wait on a frozen member (their deadline minutes away)
// cancels their snapshots: both are answered with what is known, and the process exits 0.
func TestSIGTERMDuringSlowScrape(t *testing.T) {
	c := etcdtest.Start(t, 1)
	frozen := startFreezer(t, strings.TrimPrefix(c.Endpoints()[0], "http://"))
	p := startExporter(t, "--etcd.endpoints="+frozen.addr(), "--scrape.timeout=5m")
	// One scrape first, so that the exporter's connection is up when the member freezes.
	if code, body, err := p.get(t, "/metrics", 30*time.Second); code != 200 || !strings.Contains(body, "\netcd_monitor_up 1\n") {
		t.Fatalf("scrape before the freeze: %d %v\n%s", code, err, body)
	}
	frozen.freeze()

	type answer struct {
		code int
		body string
		err  error
	}
	var wg sync.WaitGroup
	var scrape, api answer
	defer wg.Wait()
	// One request after the other, each until its etcd call is held by the freeze: both are in
	// flight when the signal comes.
	inFlight := func(what string, get func()) {
		t.Helper()
		wg.Go(get)
		select {
		case <-frozen.held:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s never reached the frozen member", what)
		}
	}
	inFlight("the API request", func() { api.code, api.body, api.err = p.get(t, "/api/v1/cluster/status", time.Minute) })
	inFlight("the scrape", func() { scrape.code, scrape.body, scrape.err = p.get(t, "/metrics", time.Minute) })

	if code := p.signalAndWait(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0\n%s", code, p.output)
	}
	wg.Wait()
	if scrape.err != nil || scrape.code != 200 || !strings.Contains(scrape.body, "\netcd_monitor_up 0\n") {
		t.Errorf("scrape in flight at SIGTERM: %d %v, want 200 with etcd_monitor_up 0\n%s", scrape.code, scrape.err, scrape.body)
	}
	if api.err != nil || api.code == 0 {
		t.Errorf("API request in flight at SIGTERM got no answer: %v", api.err)
	}
	t.Logf("API answer at SIGTERM: %d %s", api.code, api.body)
}
