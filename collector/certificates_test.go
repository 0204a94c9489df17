package collector

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/helpers/templates"

	"github.com/etcd-monitor/etcd-monitor/certcheck"
	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/certgen"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/internal/toolbin"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// tlsExporter runs the default collectors and the certificates collector against a TLS cluster,
// the way the exporter command builds them.
func tlsExporter(t *testing.T, p *certgen.EtcdPKI, c *etcdtest.Cluster, interval time.Duration) *Exporter {
	t.Helper()
	conn := etcdconn.Config{Endpoints: c.Endpoints(), CAFile: p.CAFile, CertFile: p.ClientCert, KeyFile: p.ClientKey}
	taker, err := snapshot.NewTaker(conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(taker.Close)
	checker := certcheck.New(certcheck.Config{Interval: interval, CAFile: p.CAFile, CertFile: p.ClientCert, TLS: true,
		Fallback: fallback(c)})
	t.Cleanup(checker.Close)
	var names []string
	for _, i := range Available() {
		if i.DefaultEnabled || i.Name == "certificates" {
			names = append(names, i.Name)
		}
	}
	e, err := New(taker, names, WithCertificates(checker))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// fallback is what the exporter command checks when no member list can be read.
func fallback(c *etcdtest.Cluster) []certcheck.Target {
	var out []certcheck.Target
	for _, ep := range c.Endpoints() {
		if t, ok := certcheck.TargetFor(0, "", certcheck.ListenerClient, ep, "", true); ok {
			out = append(out, t)
		}
	}
	return out
}

// TestCertificatesExactNotAfter: three members with client and peer TLS and client-certificate
// authentication on both; every listener's certificate is reported with its own validity and
// identity, verified against the CA, and so are the exporter's own files.
func TestCertificatesExactNotAfter(t *testing.T) {
	base := certgen.At(0)
	servingAfter := func(i int) time.Time { return base.Add(time.Duration(3+i) * 24 * time.Hour) }
	peerAfter := func(i int) time.Time { return base.Add(time.Duration(40+i) * 24 * time.Hour) }
	notBefore := certgen.At(-2 * time.Hour)
	p := certgen.NewEtcdPKI(t, 3,
		func(i int) certgen.Spec { return certgen.ServingSpec(int64(0x100+i), notBefore, servingAfter(i)) },
		func(i int) certgen.Spec { return certgen.PeerSpec(int64(0x200+i), notBefore, peerAfter(i)) })
	c := p.Start(t)
	v := values(t, registryFor(tlsExporter(t, p, c, 10*time.Minute), 10*time.Second))

	for i, m := range c.Members {
		for _, l := range []struct {
			listener, serial, cn string
			after                time.Time
		}{
			{"client", fmt.Sprintf("%X", 0x100+i), "etcd-server", servingAfter(i)},
			{"peer", fmt.Sprintf("%X", 0x200+i), "etcd-peer", peerAfter(i)},
		} {
			for _, pos := range []string{"leaf", "earliest"} {
				labels := fmt.Sprintf(`{certificate=%q,issuer_cn="etcd-ca",listener=%q,member=%q,serial=%q,subject_cn=%q}`, pos, l.listener, m.Name, l.serial, l.cn)
				if got, want := v["etcd_monitor_certificate_not_after_timestamp_seconds"+labels], float64(l.after.Unix()); got != want {
					t.Errorf("not_after%s = %v, want %v", labels, got, want)
				}
				if got, want := v["etcd_monitor_certificate_not_before_timestamp_seconds"+labels], float64(notBefore.Unix()); got != want {
					t.Errorf("not_before%s = %v, want %v", labels, got, want)
				}
			}
			for _, name := range []string{"chain_verified", "check_success"} {
				k := fmt.Sprintf(`etcd_monitor_certificate_%s{listener=%q,member=%q}`, name, l.listener, m.Name)
				if v[k] != 1 {
					t.Errorf("%s = %v, want 1", k, v[k])
				}
			}
		}
	}
	fileLabels := fmt.Sprintf(`{certificate="leaf",file="cert",issuer_cn="etcd-ca",path=%q,serial="2",subject_cn="etcd-monitor"}`, p.ClientCert)
	if _, ok := v["etcd_monitor_certificate_file_not_after_timestamp_seconds"+fileLabels]; !ok {
		t.Errorf("no client certificate file series %s", fileLabels)
	}
	if k := fmt.Sprintf(`etcd_monitor_certificate_file_verified{file="cert",path=%q}`, p.ClientCert); v[k] != 1 {
		t.Errorf("%s = %v, want 1", k, v[k])
	}
	caLabels := fmt.Sprintf(`{certificate="earliest",file="ca",issuer_cn="etcd-ca",path=%q,serial="1",subject_cn="etcd-ca"}`, p.CAFile)
	if got, want := v["etcd_monitor_certificate_file_not_after_timestamp_seconds"+caLabels], float64(p.CA.Cert.NotAfter.Unix()); got != want {
		t.Errorf("CA file not_after = %v, want %v", got, want)
	}
	if v[`etcd_monitor_scrape_collector_success{collector="certificates"}`] != 1 {
		t.Error("certificates collector failed")
	}
	if ts := v["etcd_monitor_certificate_check_timestamp_seconds{}"]; time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("check timestamp %v is not the check just made", ts)
	}
	t.Logf("one check of 6 listeners and 2 files took %.1f ms", v["etcd_monitor_certificate_check_duration_seconds{}"]*1000)
}

// TestCertificateExpiryAlertFromScrape: a member whose serving certificate expires in three days
// (of a 30-day lifetime) fires EtcdCertificateExpiringSoon as a warning in promtool, fed with a
// real scrape; its 5-day peer certificate (of a 5-day lifetime: more than 20% left) fires nothing.
func TestCertificateExpiryAlertFromScrape(t *testing.T) {
	promtool := toolbin.Path(t, "promtool", "PROMTOOL")
	servingAfter := certgen.At(3 * 24 * time.Hour)
	p := certgen.NewEtcdPKI(t, 1,
		func(int) certgen.Spec { return certgen.ServingSpec(0x51, certgen.At(-27*24*time.Hour), servingAfter) },
		func(int) certgen.Spec {
			return certgen.PeerSpec(0x52, certgen.At(-time.Hour), certgen.At(5*24*time.Hour))
		})
	c := p.Start(t)
	g := registryFor(tlsExporter(t, p, c, 10*time.Minute), 10*time.Second)
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	scraped := time.Now()
	m := c.Members[0]
	series := promtoolSeries(mfs, scraped, map[string]string{"job": "etcd-monitor", "instance": "em:9379", "cluster": "c1"})
	if !strings.Contains(series, "etcd_monitor_certificate_not_after_timestamp_seconds") {
		t.Fatalf("the scrape has no certificate series:\n%s", series)
	}
	member := fmt.Sprintf("%s (%s)", m.Name, snapshot.IDString(m.ID()))
	// promtool renders $value with humanizeDuration: the remaining time at the 30m evaluation.
	remaining := servingAfter.Sub(scraped) - 30*time.Minute
	test := fmt.Sprintf(`rule_files:
  - %s
evaluation_interval: 1m
tests:
  - name: from a real scrape
    interval: 1m
    input_series:
%s
    alert_rule_test:
      - alertname: EtcdCertificateExpiringSoon
        eval_time: 30m
        exp_alerts:
          - exp_labels: { severity: warning, job: etcd-monitor, instance: "em:9379", cluster: c1, member_id: %q, member: %q, listener: client, certificate: earliest, serial: "51", subject_cn: etcd-server, issuer_cn: etcd-ca }
            exp_annotations:
              summary: "An etcd certificate expires soon."
              description: %q
              runbook_url: "https://github.com/etcd-monitor/etcd-monitor/blob/main/docs/runbooks.md#etcdcertificateexpiringsoon"
      - alertname: EtcdCertificateExpired
        eval_time: 30m
        exp_alerts: []
      - alertname: EtcdCertificateNotVerified
        eval_time: 30m
        exp_alerts: []
      - alertname: EtcdCertificateCheckFailing
        eval_time: 30m
        exp_alerts: []
`, filepath.Join(repoRoot(t), "alerts", "etcd-monitor.rules.yml"), series, snapshot.IDString(m.ID()), m.Name,
		fmt.Sprintf("The client listener of member %s of cluster c1 serves a certificate (CN etcd-server, serial 51, issued by etcd-ca) that expires in %s.",
			member, mustHumanize(t, remaining)))
	f := filepath.Join(t.TempDir(), "scrape_test.yml")
	if err := os.WriteFile(f, []byte(test), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, promtool, "test", "rules", f).CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s\n%s", err, out, test)
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	abs, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// promtoolSeries turns gathered gauges into promtool input series held for 40 minutes. promtool's
// clock starts at the Unix epoch, so every *_timestamp_seconds value is moved back by the scrape's
// time: the alerts then see the remaining lifetime the real scrape showed.
func promtoolSeries(mfs []*dto.MetricFamily, scraped time.Time, target map[string]string) string {
	var lines []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.GetGauge() == nil {
				continue
			}
			labels := map[string]string{}
			for k, v := range target {
				labels[k] = v
			}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			keys := make([]string, 0, len(labels))
			for k := range labels {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var parts []string
			for _, k := range keys {
				parts = append(parts, fmt.Sprintf("%s=%q", k, labels[k]))
			}
			v := m.GetGauge().GetValue()
			if strings.HasSuffix(mf.GetName(), "_timestamp_seconds") {
				v -= float64(scraped.UnixNano()) / 1e9
			}
			sel := strings.ReplaceAll(fmt.Sprintf("%s{%s}", mf.GetName(), strings.Join(parts, ", ")), "'", `\'`)
			lines = append(lines, fmt.Sprintf("      - series: '%s'\n        values: '%s'", sel, strconv.FormatFloat(v, 'f', -1, 64)+"+0x40"))
		}
	}
	return strings.Join(lines, "\n")
}

// mustHumanize renders d as Prometheus' humanizeDuration template function does.
func mustHumanize(t *testing.T, d time.Duration) string {
	t.Helper()
	s, err := templates.HumanizeDuration(d.Seconds())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCertificatesRenewedInPlace: certificate files replaced on a running member show in the
// scrapes after the next check (new serial, new not-after), and not in those before it.
func TestCertificatesRenewedInPlace(t *testing.T) {
	after := certgen.At(10 * 24 * time.Hour)
	p := certgen.NewEtcdPKI(t, 1,
		func(int) certgen.Spec { return certgen.ServingSpec(0x61, certgen.At(-time.Hour), after) },
		func(int) certgen.Spec { return certgen.PeerSpec(0x62, certgen.At(-time.Hour), after) })
	c := p.Start(t)
	const interval = 2 * time.Second
	g := registryFor(tlsExporter(t, p, c, interval), 10*time.Second)
	series := func(v map[string]float64, listener, serial, cn string) (float64, bool) {
		x, ok := v[fmt.Sprintf(`etcd_monitor_certificate_not_after_timestamp_seconds{certificate="leaf",issuer_cn="etcd-ca",listener=%q,member="m0",serial=%q,subject_cn=%q}`, listener, serial, cn)]
		return x, ok
	}
	v := values(t, g)
	if x, ok := series(v, "client", "61", "etcd-server"); !ok || x != float64(after.Unix()) {
		t.Fatalf("before renewal: client not_after %v (present %v), want %d: %v", x, ok, after.Unix(), v)
	}
	checked := v["etcd_monitor_certificate_check_timestamp_seconds{}"]

	renewed := certgen.At(365 * 24 * time.Hour)
	p.CA.Issue(t, certgen.ServingSpec(0x71, certgen.At(-time.Minute), renewed)).Write(t, p.Dir, "server0")
	p.CA.Issue(t, certgen.PeerSpec(0x72, certgen.At(-time.Minute), renewed)).Write(t, p.Dir, "peer0")

	// Within the interval the last check is served, renewal or not.
	v = values(t, g)
	if _, ok := series(v, "client", "61", "etcd-server"); !ok || v["etcd_monitor_certificate_check_timestamp_seconds{}"] != checked {
		t.Errorf("a scrape within the interval did not serve the last check: %v", v)
	}
	time.Sleep(interval)
	// The scrape that finds the check stale starts the next one; a following scrape reports it.
	for range 20 {
		if v = values(t, g); v["etcd_monitor_certificate_check_timestamp_seconds{}"] > checked {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, l := range []struct{ listener, serial, old, cn string }{{"client", "71", "61", "etcd-server"}, {"peer", "72", "62", "etcd-peer"}} {
		if x, ok := series(v, l.listener, l.serial, l.cn); !ok || x != float64(renewed.Unix()) {
			t.Errorf("after renewal: %s not_after %v (present %v), want %d", l.listener, x, ok, renewed.Unix())
		}
		if _, ok := series(v, l.listener, l.old, l.cn); ok {
			t.Errorf("after renewal: the replaced %s certificate (serial %s) is still reported", l.listener, l.old)
		}
	}
	if v["etcd_monitor_certificate_check_timestamp_seconds{}"] <= checked {
		t.Errorf("check timestamp did not move past %v", checked)
	}
}

// TestExpiredCertificateReportedWhenUnreachable: a member whose serving certificate has expired
// cannot be monitored (the exporter's own connection refuses the certificate), yet its expiry is
// reported from the configured endpoint.
func TestExpiredCertificateReportedWhenUnreachable(t *testing.T) {
	expired := certgen.At(-time.Hour)
	p := certgen.NewEtcdPKI(t, 1,
		func(int) certgen.Spec { return certgen.ServingSpec(0x81, certgen.At(-48*time.Hour), expired) },
		func(int) certgen.Spec {
			return certgen.PeerSpec(0x82, certgen.At(-time.Hour), certgen.At(48*time.Hour))
		})
	c := p.Start(t)
	v := values(t, registryFor(tlsExporter(t, p, c, 10*time.Minute), 3*time.Second))
	if v["etcd_monitor_up{}"] != 0 {
		t.Fatalf("the exporter reached a member with an expired certificate: %v", v)
	}
	k := `etcd_monitor_certificate_not_after_timestamp_seconds{certificate="earliest",issuer_cn="etcd-ca",listener="client",member="",serial="81",subject_cn="etcd-server"}`
	if got := v[k]; got != float64(expired.Unix()) {
		t.Errorf("%s = %v, want %d: %v", k, got, expired.Unix(), v)
	}
	if v[`etcd_monitor_certificate_chain_verified{listener="client",member=""}`] != 0 {
		t.Error("an expired chain verified")
	}
}

// TestCertificateChecksAddNothingToRaftLog: handshakes at every scrape leave the raft log alone.
func TestCertificateChecksAddNothingToRaftLog(t *testing.T) {
	p := certgen.NewEtcdPKI(t, 3,
		func(i int) certgen.Spec {
			return certgen.ServingSpec(int64(0x90+i), certgen.At(-time.Hour), certgen.At(time.Hour))
		},
		func(i int) certgen.Spec {
			return certgen.PeerSpec(int64(0xa0+i), certgen.At(-time.Hour), certgen.At(time.Hour))
		})
	c := p.Start(t)
	c.Settle()
	g := registryFor(tlsExporter(t, p, c, time.Nanosecond), 10*time.Second)
	before := values(t, g)
	var checks []float64
	for range 5 {
		checks = append(checks, values(t, g)["etcd_monitor_certificate_check_timestamp_seconds{}"])
	}
	after := values(t, g)
	// Each scrape serves the last finished check and starts the next one.
	for i := 1; i < len(checks); i++ {
		if checks[i] < checks[i-1] {
			t.Fatalf("check timestamps went back: %v", checks)
		}
	}
	if checks[len(checks)-1] <= checks[0] {
		t.Fatalf("the scrapes made no new check: timestamps %v", checks)
	}
	for _, m := range c.Members {
		k := `etcd_monitor_member_raft_index{member="` + m.Name + `"}`
		if before[k] == 0 || before[k] != after[k] {
			t.Errorf("%s moved from %v to %v over 6 scrapes with certificate checks", k, before[k], after[k])
		}
	}
}

// TestCertificatesCheckedWhenSnapshotUsesTheDeadline: with quorum lost, the linearizable read of
// the member left waits until the scrape's deadline, so every snapshot uses all of it. The
// certificate check, which has the scrape's whole budget rather than what the snapshot leaves of
// it, still runs, and the following scrapes report the expired certificate the member now serves
// to new connections.
func TestCertificatesCheckedWhenSnapshotUsesTheDeadline(t *testing.T) {
	p := certgen.NewEtcdPKI(t, 3,
		func(i int) certgen.Spec {
			return certgen.ServingSpec(int64(0xE0+i), certgen.At(-27*24*time.Hour), certgen.At(3*24*time.Hour))
		},
		func(i int) certgen.Spec {
			return certgen.PeerSpec(int64(0xF0+i), certgen.At(-time.Hour), certgen.At(5*24*time.Hour))
		})
	c := p.Start(t)
	const interval = time.Second
	g := registryFor(tlsExporter(t, p, c, interval), 1500*time.Millisecond)
	if v := values(t, g); v[`etcd_monitor_member_up{member="m0"}`] != 1 {
		t.Fatalf("member not up before the certificate expired: %v", v)
	}
	expired := certgen.At(-time.Hour)
	p.CA.Issue(t, certgen.ServingSpec(0xD1, certgen.At(-48*time.Hour), expired)).Write(t, p.Dir, "server0")
	c.Members[1].Stop()
	c.Members[2].Stop()
	k := `etcd_monitor_certificate_not_after_timestamp_seconds{certificate="leaf",issuer_cn="etcd-ca",listener="client",member="m0",serial="D1",subject_cn="etcd-server"}`
	var v map[string]float64
	for range 5 {
		time.Sleep(interval)
		if v = values(t, g); v[k] == float64(expired.Unix()) {
			break
		}
	}
	if v[k] != float64(expired.Unix()) {
		t.Fatalf("expired certificate not reported within 5 scrapes: %v", v)
	}
	t.Logf("probe collector: %.2f s of the 1.5 s deadline", v[`etcd_monitor_scrape_collector_duration_seconds{collector="probe"}`])
	if got, ok := v[`etcd_monitor_member_probe_success{member="m0",probe="read_linearizable"}`]; !ok || got != 0 {
		t.Errorf("the linearizable read answered without quorum: the snapshot did not run into the deadline and the test proves nothing")
	}
	if v[`etcd_monitor_certificate_check_success{listener="peer",member="m0"}`] != 1 {
		t.Errorf("peer listener not read: %v", v)
	}
}

// TestFirstCheckWaitedForUntilTheDeadlineOnly: the only endpoint accepts TCP and never answers (a
// frozen member), so the snapshot and the first certificate check both hang. A scrape joins the
// shared snapshot under its deadline, and the check it starts must be waited for only until that
// deadline, not until the check gives up: the scrape ends without certificate series.
func TestFirstCheckWaitedForUntilTheDeadlineOnly(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 16)
	go func() {
		for range 16 {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held <- c
		}
	}()
	defer func() {
		_ = l.Close()
		close(held)
		for c := range held {
			_ = c.Close()
		}
	}()
	p := certgen.NewEtcdPKI(t, 0, nil, nil)
	ep := "https://" + l.Addr().String()
	taker, err := snapshot.NewTaker(etcdconn.Config{Endpoints: []string{ep}, CAFile: p.CAFile, CertFile: p.ClientCert, KeyFile: p.ClientKey})
	if err != nil {
		t.Fatal(err)
	}
	defer taker.Close()
	tg, _ := certcheck.TargetFor(0, "", certcheck.ListenerClient, ep, "", true)
	// The check itself would wait for the frozen member for DefaultTimeout.
	checker := certcheck.New(certcheck.Config{CAFile: p.CAFile, CertFile: p.ClientCert, TLS: true,
		Fallback: []certcheck.Target{tg}, DefaultTimeout: 10 * time.Second})
	defer checker.Close()
	e, err := New(taker, []string{"certificates"}, WithCertificates(checker))
	if err != nil {
		t.Fatal(err)
	}
	v := values(t, registryFor(e, time.Second))
	if v["etcd_monitor_up{}"] != 0 {
		t.Fatalf("the frozen endpoint answered: %v", v)
	}
	if ts, ok := v["etcd_monitor_certificate_check_timestamp_seconds{}"]; ok {
		t.Errorf("the scrape waited past its deadline for the first check (taken at %v)", ts)
	}
	if got, ok := v[`etcd_monitor_scrape_collector_success{collector="certificates"}`]; !ok || got != 0 {
		t.Errorf("certificates collector success = %v (present %v), want 0: no check has finished", got, ok)
	}
}

// TestCertificateLabelsSanitized: the names in a certificate a member serves are untrusted like the
// rest of what comes from etcd: a subject of 600 bytes is cut as a long member name is, at 512
// bytes ending in an ellipsis, rather than copied into every series of the member.
func TestCertificateLabelsSanitized(t *testing.T) {
	long := strings.Repeat("etcd-server-", 50)
	p := certgen.NewEtcdPKI(t, 1,
		func(int) certgen.Spec {
			s := certgen.ServingSpec(0xA1, certgen.At(-time.Hour), certgen.At(30*24*time.Hour))
			s.CommonName = long
			return s
		},
		func(int) certgen.Spec {
			return certgen.PeerSpec(0xA2, certgen.At(-time.Hour), certgen.At(30*24*time.Hour))
		})
	if cn := p.Serving[0].Cert.Subject.CommonName; cn != long {
		t.Fatalf("test certificate's subject is %d bytes, want %d", len(cn), len(long))
	}
	c := p.Start(t)
	v := values(t, registryFor(tlsExporter(t, p, c, 10*time.Minute), 10*time.Second))
	cut := long[:maxLabelValue-len(ellipsis)] + ellipsis
	k := fmt.Sprintf(`etcd_monitor_certificate_not_after_timestamp_seconds{certificate="leaf",issuer_cn="etcd-ca",listener="client",member="m0",serial="A1",subject_cn=%q}`, cut)
	if got, want := v[k], float64(p.Serving[0].Cert.NotAfter.Unix()); got != want {
		t.Errorf("not_after of the client listener with its subject cut to %d bytes = %v, want %v; series: %v", len(cut), got, want, v)
	}
}
