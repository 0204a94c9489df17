package main

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

// chromiumPath finds Debian's chromium, skipping the test without it unless tools are required.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "chromium not found; install it with: DEBIAN_FRONTEND=noninteractive apt-get install -y chromium"
	if os.Getenv("ETCD_MONITOR_REQUIRE_TOOLS") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// dumpDOM loads url in headless chromium and returns the DOM after the page's scripts ran.
func dumpDOM(t *testing.T, chromium, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=3000", "--dump-dom", url)
	// chromium forks renderers and helpers: kill the whole process group, not just the parent.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // leftovers of a run that exited normally
	}
	if err != nil {
		t.Fatalf("chromium --dump-dom %s: %v\n%s", url, err, stderr.String())
	}
	return string(out)
}

var rowPattern = regexp.MustCompile(`<tr data-member="([^"]+)" data-state="(up|down)">`)

// memberStates reads the members table the page's script rendered.
func memberStates(dom string) map[string]string {
	out := map[string]string{}
	for _, m := range rowPattern.FindAllStringSubmatch(dom, -1) {
		out[m[1]] = m[2]
	}
	return out
}

var verdictPattern = regexp.MustCompile(`id="etcd-verdict" data-verdict="([a-z]+)"`)

func TestLandingPageShowsMembersInChromium(t *testing.T) {
	chromium := chromiumPath(t)
	c := etcdtest.Start(t, 3)
	handler := testExporterHandler(t, c.Endpoints())
	srv := httptest.NewServer(handler)
	defer srv.Close()

	// pageUntil loads the page until want holds (an election after a stop takes a moment), bounded.
	pageUntil := func(what string, want func(states map[string]string, verdict string) bool) string {
		t.Helper()
		var dom string
		for i := 0; i < 10; i++ {
			dom = dumpDOM(t, chromium, srv.URL+"/")
			v := verdictPattern.FindStringSubmatch(dom)
			verdict := ""
			if v != nil {
				verdict = v[1]
			}
			if want(memberStates(dom), verdict) {
				return dom
			}
		}
		t.Fatalf("page never showed %s; last DOM:\n%s", what, dom)
		return ""
	}

	dom := pageUntil("3 members up and a healthy verdict", func(s map[string]string, v string) bool {
		return len(s) == 3 && s["m0"] == "up" && s["m1"] == "up" && s["m2"] == "up" && v == "healthy"
	})
	for _, want := range []string{`href="/metrics"`, `href="/api/v1/cluster/status"`, ">leader<", " ms<"} {
		if !strings.Contains(dom, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if strings.Contains(dom, "debug/pprof") {
		t.Error("page links to pprof, which is not served")
	}

	c.Members[1].Stop()
	dom = pageUntil("m1 down", func(s map[string]string, v string) bool {
		return len(s) == 3 && s["m0"] == "up" && s["m1"] == "down" && s["m2"] == "up" && v == "degraded"
	})
	if !strings.Contains(dom, "member m1") {
		t.Errorf("page does not give the reason for the verdict:\n%s", dom)
	}

	// With no member left the API answers 503: the page says so and lists no member.
	c.Members[0].Stop()
	c.Members[2].Stop()
	dom = pageUntil("etcd unreachable", func(s map[string]string, v string) bool { return len(s) == 0 && v == "unknown" })
	if !strings.Contains(dom, "Status unavailable: etcd unreachable") {
		t.Errorf("page does not say etcd is unreachable:\n%s", dom)
	}
}
