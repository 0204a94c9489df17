package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/internal/certgen"
)

// TestCheckCertificates: over TLS, `check` reads the members' certificates: a serving certificate
// with 3 of its 30 days left makes a healthy cluster degraded (exit 1), an expired peer
// certificate critical (exit 2); every chain and file is in the JSON report.
func TestCheckCertificates(t *testing.T) {
	for _, tc := range []struct {
		name           string
		serving, peer  certgen.Spec
		code           int
		reason, expiry string
	}{
		{"expiring serving certificate", certgen.ServingSpec(0x31, certgen.At(-27*24*time.Hour), certgen.At(3*24*time.Hour)),
			certgen.PeerSpec(0x32, certgen.At(-time.Hour), certgen.At(365*24*time.Hour)), 1, "etcd-server (serial 31) of the client listener of member m0", "expiring"},
		{"expired peer certificate", certgen.ServingSpec(0x41, certgen.At(-time.Hour), certgen.At(365*24*time.Hour)),
			certgen.PeerSpec(0x42, certgen.At(-48*time.Hour), certgen.At(-time.Hour)), 2, "etcd-peer (serial 42) of the peer listener of member m0", "expired"},
		{"healthy", certgen.ServingSpec(0x51, certgen.At(-time.Hour), certgen.At(365*24*time.Hour)),
			certgen.PeerSpec(0x52, certgen.At(-time.Hour), certgen.At(365*24*time.Hour)), 0, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := certgen.NewEtcdPKI(t, 1, func(int) certgen.Spec { return tc.serving }, func(int) certgen.Spec { return tc.peer })
			c := p.Start(t)
			args := []string{"check", "--etcd.endpoints=" + c.Endpoints()[0], "--etcd.tls.ca-file=" + p.CAFile,
				"--etcd.tls.cert-file=" + p.ClientCert, "--etcd.tls.key-file=" + p.ClientKey, "--output=json"}
			var code int
			out := captureStdout(t, func() { code = run(args) })
			var rep checkReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("json output: %v\n%s", err, out)
			}
			if code != tc.code || rep.ExitCode != tc.code {
				t.Fatalf("exit %d (report %d), want %d: %s", code, rep.ExitCode, tc.code, out)
			}
			if tc.reason != "" && !strings.Contains(strings.Join(rep.Reasons, "; "), tc.reason) {
				t.Errorf("reasons %q do not name %q", rep.Reasons, tc.reason)
			}
			// client and peer listeners, the client certificate and CA files
			if len(rep.Certificates) != 4 {
				t.Fatalf("%d certificates in the report, want 4: %s", len(rep.Certificates), out)
			}
			// The status line a monitoring system reads carries the certificates' verdict too.
			status := statusLineOf(t, captureStdout(t, func() { run(args[:len(args)-1]) }))
			if want := "ETCD " + strings.ToUpper(string(rep.Verdict)) + " - "; !strings.HasPrefix(status.text, want) || !strings.Contains(status.text, tc.reason) {
				t.Errorf("status line %q, want it to start with %q and name %q", status.text, want, tc.reason)
			}
			for _, cc := range rep.Certificates {
				if cc.Error != "" || cc.NotAfter.IsZero() || cc.Expiry == "" {
					t.Errorf("certificate %+v: want read and judged", cc)
				}
				if tc.expiry != "" && strings.Contains(tc.reason, cc.Subject+" (serial "+cc.Serial+")") && cc.Expiry != tc.expiry {
					t.Errorf("certificate %+v: expiry %q, want %q", cc, cc.Expiry, tc.expiry)
				}
			}
		})
	}
}

// check --config.file reads the certificates of each cluster that uses TLS, with that cluster's
// files: an expiring serving certificate makes its cluster, and so the fleet, degraded.
func TestCheckFleetCertificates(t *testing.T) {
	path := secureAndPlainFleet(t, certgen.ServingSpec(0x61, certgen.At(-27*24*time.Hour), certgen.At(3*24*time.Hour)),
		certgen.PeerSpec(0x62, certgen.At(-time.Hour), certgen.At(365*24*time.Hour)))
	var code int
	out := captureStdout(t, func() { code = run([]string{"check", "--config.file=" + path, "--timeout=5s"}) })
	first, _, _ := strings.Cut(out, "\n")
	if code != 1 || !strings.HasPrefix(first, "ETCD DEGRADED - secure degraded: ") || !strings.Contains(first, "etcd-server (serial 61) of the client listener of member m0") {
		t.Errorf("exit %d, want 1 with secure's expiring certificate in the status line:\n%s", code, out)
	}
	out = captureStdout(t, func() { code = run([]string{"check", "--config.file=" + path, "--output=json", "--timeout=5s"}) })
	var rep struct {
		Clusters []struct {
			Name         string            `json:"name"`
			Verdict      string            `json:"verdict"`
			Certificates []json.RawMessage `json:"certificates"`
		} `json:"clusters"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Clusters) != 2 {
		t.Fatalf("json: %v\n%s", err, out)
	}
	for _, c := range rep.Clusters {
		want := map[string]int{"secure": 4, "plain": 0}[c.Name]
		if len(c.Certificates) != want {
			t.Errorf("cluster %s: %d certificates in the report, want %d", c.Name, len(c.Certificates), want)
		}
	}
}
