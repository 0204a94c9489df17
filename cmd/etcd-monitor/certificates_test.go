package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/internal/certgen"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/internal/toolbin"
)

// scrapeBinary runs the built exporter with args, returns one scrape once it answers, and stops it.
func scrapeBinary(t *testing.T, bin string, args ...string) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))
	var stderr bytes.Buffer
	cmd := exec.Command(bin, append([]string{"--web.listen-address=" + addr}, args...)...)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	client := &http.Client{Timeout: 10 * time.Second}
	for range 100 {
		resp, err := client.Get("http://" + addr + "/metrics")
		if err == nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK && strings.Contains(string(b), "etcd_monitor_up 1") {
				return string(b)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("exporter %v never answered with etcd_monitor_up 1; stderr:\n%s", args, stderr.String())
	return ""
}

// TestCertificatesCollectorFollowsTLS: the built exporter reports certificates without being asked
// when it reaches etcd over TLS, not over plain text, and the flag overrides either way.
func TestCertificatesCollectorFollowsTLS(t *testing.T) {
	bin := toolbin.Path(t, "etcd-monitor", "ETCD_MONITOR_BIN")
	p := certgen.NewEtcdPKI(t, 1,
		func(int) certgen.Spec {
			return certgen.ServingSpec(0x10, certgen.At(-time.Hour), certgen.At(48*time.Hour))
		},
		func(int) certgen.Spec {
			return certgen.PeerSpec(0x11, certgen.At(-time.Hour), certgen.At(48*time.Hour))
		})
	secure := p.Start(t)
	plain := etcdtest.Start(t, 1)
	tlsArgs := []string{"--etcd.endpoints=" + secure.Endpoints()[0], "--etcd.tls.ca-file=" + p.CAFile,
		"--etcd.tls.cert-file=" + p.ClientCert, "--etcd.tls.key-file=" + p.ClientKey}
	const success = `etcd_monitor_scrape_collector_success{collector="certificates"} 1`
	const peer = `etcd_monitor_certificate_not_after_timestamp_seconds{certificate="leaf",issuer_cn="etcd-ca",listener="peer"`

	if out := scrapeBinary(t, bin, tlsArgs...); !strings.Contains(out, success) || !strings.Contains(out, peer) {
		t.Errorf("TLS cluster, default flags: no certificate series:\n%s", out)
	}
	if out := scrapeBinary(t, bin, append(tlsArgs, "--no-certificates.peer-listeners")...); strings.Contains(out, peer) || !strings.Contains(out, `listener="client"`) {
		t.Errorf("--no-certificates.peer-listeners: want client and no peer series:\n%s", out)
	}
	if out := scrapeBinary(t, bin, append(tlsArgs, "--no-collector.certificates")...); strings.Contains(out, `collector="certificates"`) {
		t.Errorf("TLS cluster, --no-collector.certificates: the collector ran")
	}
	if out := scrapeBinary(t, bin, "--etcd.endpoints="+plain.Endpoints()[0]); strings.Contains(out, `collector="certificates"`) {
		t.Errorf("plain-text cluster, default flags: the collector ran")
	}
	if out := scrapeBinary(t, bin, "--etcd.endpoints="+plain.Endpoints()[0], "--collector.certificates"); !strings.Contains(out, success) {
		t.Errorf("plain-text cluster, --collector.certificates: the collector did not run:\n%s", out)
	}
}
