package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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

// validPKI signs a 1-member cluster's certificates, valid from an hour ago for two days: the
// serving certificate with serial, the peer certificate with serial+1.
func validPKI(t *testing.T, serial int64) *certgen.EtcdPKI {
	return certgen.NewEtcdPKI(t, 1,
		func(int) certgen.Spec {
			return certgen.ServingSpec(serial, certgen.At(-time.Hour), certgen.At(48*time.Hour))
		},
		func(int) certgen.Spec {
			return certgen.PeerSpec(serial+1, certgen.At(-time.Hour), certgen.At(48*time.Hour))
		})
}

// secureAndPlainFleet starts a 1-member cluster over TLS, serving the given certificates, and a
// plain-text one, and returns a config file naming them secure and plain.
func secureAndPlainFleet(t *testing.T, serving, peer certgen.Spec) string {
	t.Helper()
	p := certgen.NewEtcdPKI(t, 1, func(int) certgen.Spec { return serving }, func(int) certgen.Spec { return peer })
	secure := p.Start(t)
	plain := etcdtest.Start(t, 1)
	path := filepath.Join(t.TempDir(), "fleet.yml")
	cfg := fmt.Sprintf("clusters:\n  - name: secure\n    endpoints: [%q]\n    tls: {ca_file: %q, cert_file: %q, key_file: %q}\n  - name: plain\n    endpoints: [%q]\n",
		secure.Endpoints()[0], p.CAFile, p.ClientCert, p.ClientKey, plain.Endpoints()[0])
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// apiStatus is the part of /api/v1/cluster/status the tests read.
type apiStatus struct {
	Data struct {
		Cluster struct {
			Health struct {
				Verdict string   `json:"verdict"`
				Reasons []string `json:"reasons"`
			} `json:"health"`
		} `json:"cluster"`
		Certificates *struct {
			Items []json.RawMessage `json:"items"`
		} `json:"certificates"`
	} `json:"data"`
}

// TestCertificatesCollectorFollowsTLS: the built exporter reports certificates without being asked
// when it reaches etcd over TLS, not over plain text, and the flag overrides either way.
func TestCertificatesCollectorFollowsTLS(t *testing.T) {
	bin := toolbin.Path(t, "etcd-monitor", "ETCD_MONITOR_BIN")
	p := validPKI(t, 0x10)
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

// TestFleetCertificatesFollowEachClusterTLS: in config-file mode each cluster that uses TLS gets
// the certificates collector with a checker of its own files (the peer listeners verified against
// its tls.ca_file), a plain-text cluster does not, and the flag overrides either way.
func TestFleetCertificatesFollowEachClusterTLS(t *testing.T) {
	path := secureAndPlainFleet(t, certgen.ServingSpec(0x20, certgen.At(-time.Hour), certgen.At(48*time.Hour)),
		certgen.PeerSpec(0x21, certgen.At(-time.Hour), certgen.At(48*time.Hour)))
	const success = `etcd_monitor_scrape_collector_success{collector="certificates"} 1`
	// The peer certificate's serial (0x21) and issuer: only a TLS handshake with the member's
	// peer listener, verified against the cluster's own CA, gives both.
	const peer = `etcd_monitor_certificate_not_after_timestamp_seconds{certificate="leaf",issuer_cn="etcd-ca",listener="peer"`
	probe := func(e *exporterProcess, cluster string) string {
		return e.waitBody(t, "/probe?cluster="+cluster, func(code int, body string) bool {
			return code == 200 && strings.Contains(body, "\netcd_monitor_up 1\n")
		})
	}

	e := startExporter(t, "--config.file="+path)
	if out := probe(e, "secure"); !strings.Contains(out, success) || !strings.Contains(out, peer) || !strings.Contains(out, `serial="21"`) {
		t.Errorf("TLS cluster, default flags: no certificate series:\n%s", out)
	}
	if out := probe(e, "plain"); strings.Contains(out, `collector="certificates"`) {
		t.Errorf("plain-text cluster, default flags: the collector ran:\n%s", out)
	}
	if out := e.waitBody(t, "/metrics", func(code int, _ string) bool { return code == 200 }); strings.Contains(out, "etcd_monitor_certificate_") {
		t.Errorf("config-file mode's /metrics carries a cluster's certificate series:\n%s", out)
	}

	off := startExporter(t, "--config.file="+path, "--no-collector.certificates")
	if out := probe(off, "secure"); strings.Contains(out, `collector="certificates"`) {
		t.Errorf("--no-collector.certificates: the collector ran:\n%s", out)
	}
	on := startExporter(t, "--config.file="+path, "--collector.certificates")
	if out := probe(on, "plain"); !strings.Contains(out, success) {
		t.Errorf("plain-text cluster, --collector.certificates: the collector did not run:\n%s", out)
	}
}

// TestFleetStatusAPICarriesEachClusterCertificates: in config-file mode the status API and the
// clusters list judge a cluster with its last certificate check, as flags mode's status API does:
// a serving certificate 3 days from expiry makes its cluster degraded, not the other one.
func TestFleetStatusAPICarriesEachClusterCertificates(t *testing.T) {
	path := secureAndPlainFleet(t, certgen.ServingSpec(0x71, certgen.At(-27*24*time.Hour), certgen.At(3*24*time.Hour)),
		certgen.PeerSpec(0x72, certgen.At(-time.Hour), certgen.At(365*24*time.Hour)))
	e := startExporter(t, "--config.file="+path)
	// The API never starts a check: a scrape does.
	e.waitBody(t, "/probe?cluster=secure", func(code int, body string) bool {
		return code == 200 && strings.Contains(body, `etcd_monitor_scrape_collector_success{collector="certificates"} 1`)
	})
	var status apiStatus
	_, body, _ := e.get(t, "/api/v1/cluster/status?cluster=secure", 10*time.Second)
	if err := json.Unmarshal([]byte(body), &status); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	h := status.Data.Cluster.Health
	if h.Verdict != "degraded" || !strings.Contains(strings.Join(h.Reasons, "; "), "etcd-server (serial 71)") || status.Data.Certificates == nil || len(status.Data.Certificates.Items) == 0 {
		t.Errorf("status of secure: want degraded by its serving certificate, with the certificates: %s", body)
	}
	var clusters struct {
		Data []struct {
			Name    string `json:"name"`
			Cluster struct {
				Health struct {
					Verdict string `json:"verdict"`
				} `json:"health"`
			} `json:"cluster"`
		} `json:"data"`
	}
	_, body, _ = e.get(t, "/api/v1/clusters", 10*time.Second)
	if err := json.Unmarshal([]byte(body), &clusters); err != nil || len(clusters.Data) != 2 {
		t.Fatalf("%v: %s", err, body)
	}
	for _, c := range clusters.Data {
		want := map[string]string{"secure": "degraded", "plain": "healthy"}[c.Name]
		if c.Cluster.Health.Verdict != want {
			t.Errorf("/api/v1/clusters: %s is %s, want %s", c.Name, c.Cluster.Health.Verdict, want)
		}
	}
}
