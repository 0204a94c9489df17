// Package pushgatewaytest runs the pinned Pushgateway binary (./bin/pushgateway, built by
// `make tools`) on a free loopback port for tests.
package pushgatewaytest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/internal/toolbin"
)

// Start launches a Pushgateway, waits (bounded) until it is ready, stops it at the end of the test
// and returns its base URL. Without the binary the test skips (fails under `make test`).
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
	for attempt := 0; attempt < 150; attempt++ {
		if code, _, err := get(url + "/-/ready"); err == nil && code == http.StatusOK {
			return url
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the Pushgateway at %s did not become ready; logs:\n%s", url, logs.String())
	return ""
}

// Metrics returns the Pushgateway's /metrics page.
func Metrics(t testing.TB, url string) string {
	t.Helper()
	code, body, err := get(url + "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET %s/metrics: %d, %v", url, code, err)
	}
	return body
}

// get uses a transport of its own, closed afterwards, so that tests checking for leaks see none.
func get(url string) (int, string, error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
