// Package pushgwtest runs the pinned Pushgateway (<repo>/bin/pushgateway) on a free loopback port
// for tests, and reads back what was pushed.
package pushgwtest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/internal/toolbin"
)

// Start runs a Pushgateway until the test ends and returns its URL once it is ready.
func Start(t testing.TB) string {
	t.Helper()
	bin := toolbin.Path(t, "pushgateway", "PUSHGATEWAY_BIN")
	addr := fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--web.listen-address="+addr, "--log.level=error")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the Pushgateway: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	url := "http://" + addr
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := client.Get(url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
	}
	t.Fatalf("the Pushgateway at %s did not become ready; logs:\n%s", url, logs.String())
	return ""
}

// Metrics returns the Pushgateway's /metrics page.
func Metrics(t testing.TB, url string) string {
	t.Helper()
	// A transport of its own, closed afterwards, so that tests checking for leaks see none.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/metrics: %s, %v", url, resp.Status, err)
	}
	return string(b)
}

// Families returns every metric family the Pushgateway exposes.
func Families(t testing.TB, url string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(Metrics(t, url)))
	if err != nil {
		t.Fatal(err)
	}
	return fams
}
