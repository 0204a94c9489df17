//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/internal/certgen"
	"github.com/etcd-monitor/etcd-monitor/mixin"
)

// The Certificates issue's expiry scenario on real processes, through Prometheus and Alertmanager:
// three members serve TLS on their client and peer URLs, both requiring client certificates.
//   - The serving certificate has 3 of its 30 days left: EtcdCertificateExpiringSoon (warning) reaches
//     the webhook for each member's client listener; the peer certificate (5 of 5 days left, over
//     20% of its lifetime) fires nothing.
//   - The files are renewed in place (1 year): after the next check the new serial is reported and
//     the alert resolves, without restarting anything.
//   - They are replaced by an expired certificate: EtcdCertificateExpired (critical) reaches the
//     webhook, although the exporter's own Status calls now fail (each dials a new connection, which
//     refuses the certificate) and take every scrape's whole deadline.
func TestCertificateExpiryAlerts(t *testing.T) {
	root := RepoRoot(t)
	servingAfter, peerAfter := certgen.At(3*24*time.Hour), certgen.At(5*24*time.Hour)
	p := certgen.NewEtcdPKI(t, 1,
		func(int) certgen.Spec { return certgen.ServingSpec(0xE1, certgen.At(-27*24*time.Hour), servingAfter) },
		func(int) certgen.Spec { return certgen.PeerSpec(0xE2, certgen.At(-time.Hour), peerAfter) })
	serving, peer := p.ServingFiles[0], p.PeerFiles[0]
	files, err := mixin.Render(`{ certificateExpiringFor: '2s' }`)
	if err != nil {
		t.Fatalf("rendering mixin: %v", err)
	}
	env := NewEnv(t)
	rules := env.WriteFile("etcd-monitor.rules.yml", files["alerts/etcd-monitor.rules.yml"])
	s := startStackIn(t, env, StackOptions{
		Etcd: EtcdOptions{
			ClientTLS: &TLSFiles{CAFile: p.CAFile, CertFile: serving.CertFile, KeyFile: serving.KeyFile, ClientCertAuth: true},
			PeerTLS:   &TLSFiles{CAFile: p.CAFile, CertFile: peer.CertFile, KeyFile: peer.KeyFile, ClientCertAuth: true},
		},
		Exporter: true,
		ExporterArgs: []string{"--etcd.tls.ca-file=" + p.CAFile, "--etcd.tls.cert-file=" + p.ClientCert,
			"--etcd.tls.key-file=" + p.ClientKey, "--certificates.interval=3s"},
		AlertmanagerConfig: filepath.Join(root, "alerts", "alertmanager.yml"),
		Prometheus:         PrometheusOptions{ScrapeInterval: 2 * time.Second, RuleFiles: []string{rules}},
	})
	prom, hook := s.Prometheus, s.Alertmanager.Webhook
	leaf := func(listener, serial string) string {
		return fmt.Sprintf(`etcd_monitor_certificate_not_after_timestamp_seconds{job="etcd-monitor",certificate="leaf",listener=%q,serial=%q}`, listener, serial)
	}
	prom.WaitQuery(waitFor, `etcd_monitor_member_up{job="etcd-monitor"}`, AllEqual(3, 1))
	prom.WaitQuery(waitFor, leaf("client", "E1"), AllEqual(3, float64(servingAfter.Unix())))
	prom.WaitQuery(waitFor, leaf("peer", "E2"), AllEqual(3, float64(peerAfter.Unix())))
	prom.WaitQuery(waitFor, `etcd_monitor_certificate_chain_verified{job="etcd-monitor"}`, AllEqual(6, 1))

	for _, m := range s.Etcd.Members {
		_, a := hook.WaitAlertLabels(60*time.Second, "", "EtcdCertificateExpiringSoon", "firing",
			map[string]string{"member": m.Name, "listener": "client", "severity": "warning", "serial": "E1"})
		if a.Labels["cluster"] != ClusterLabel {
			t.Errorf("EtcdCertificateExpiringSoon labels %v", a.Labels)
		}
	}
	if got, err := prom.Query(`ALERTS{alertname="EtcdCertificateExpiringSoon", listener="peer"} or ALERTS{alertname="EtcdCertificateExpiringSoon", severity="critical"}`); err != nil || len(got) != 0 {
		t.Errorf("peer or critical expiry alerts: %v (%v)", got, err)
	}
	// The status API (and the landing page, which lists its reasons) says the same.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code, body, err := httpGet(ctx, s.Exporter.URL+"/api/v1/cluster/status")
	var st struct {
		Data struct {
			Cluster struct {
				Health struct {
					Verdict string
					Reasons []string
				}
			}
		}
	}
	if err != nil || code != 200 || json.Unmarshal(body, &st) != nil {
		t.Fatalf("status API: %d %v %s", code, err, body)
	}
	if h := st.Data.Cluster.Health; h.Verdict != "degraded" || !strings.Contains(strings.Join(h.Reasons, "; "), "certificate etcd-server (serial E1) of the client listener") {
		t.Errorf("status API health %+v: want degraded by the expiring certificate", h)
	}

	// Renewed in place on the running members: etcd reads the files at each new TLS connection.
	renewedAfter := certgen.At(365 * 24 * time.Hour)
	p.CA.Issue(t, certgen.ServingSpec(0xF1, certgen.At(-time.Minute), renewedAfter)).Write(t, p.Dir, "server0")
	prom.WaitQuery(waitFor, leaf("client", "F1"), AllEqual(3, float64(renewedAfter.Unix())))
	prom.WaitQuery(waitFor, `ALERTS{alertname="EtcdCertificateExpiringSoon"}`, func(s []Sample) bool { return len(s) == 0 })
	hook.WaitAlertLabels(60*time.Second, "", "EtcdCertificateExpiringSoon", "resolved", map[string]string{"listener": "client"})

	// Expired: every new connection refuses the certificate.
	expired := certgen.At(-time.Hour)
	p.CA.Issue(t, certgen.ServingSpec(0xD1, certgen.At(-48*time.Hour), expired)).Write(t, p.Dir, "server0")
	_, a := hook.WaitAlertLabels(60*time.Second, "", "EtcdCertificateExpired", "firing",
		map[string]string{"listener": "client", "serial": "D1"})
	if a.Labels["severity"] != "critical" {
		t.Errorf("EtcdCertificateExpired labels %v", a.Labels)
	}
	prom.WaitQuery(waitFor, `etcd_monitor_certificate_chain_verified{job="etcd-monitor",listener="client"}`, AllEqual(3, 0))
}
