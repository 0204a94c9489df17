//go:build e2e

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// testPKI writes a CA, a server certificate for 127.0.0.1 and a client certificate (all ECDSA
// P-256, valid for an hour) into dir.
func testPKI(t *testing.T, dir string) (server, client TLSFiles) {
	t.Helper()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "etcd-monitor e2e CA"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	writePEM := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	caFile := writePEM("ca.pem", "CERTIFICATE", caDER)
	leaf := func(name string, serial int64, tmpl *x509.Certificate) (certFile, keyFile string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Minute), now.Add(time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return writePEM(name+".pem", "CERTIFICATE", der), writePEM(name+"-key.pem", "EC PRIVATE KEY", keyDER)
	}
	// The server certificate is also a client one: etcd's gRPC gateway dials its own listener
	// with it when client certificates are required.
	sc, sk := leaf("server", 2, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "etcd-server"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:    []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
	// The CN is no etcd user: the exporter authenticates as its user with a password, and the
	// certificate alone grants nothing.
	cc, ck := leaf("client", 3, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "etcd-monitor-e2e-client"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return TLSFiles{CAFile: caFile, CertFile: sc, KeyFile: sk, ClientCertAuth: true},
		TLSFiles{CAFile: caFile, CertFile: cc, KeyFile: ck}
}

func clientTLS(t *testing.T, f TLSFiles, withCert bool) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	b, err := os.ReadFile(f.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("no certificate in %s", f.CAFile)
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if withCert {
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg
}

// Scenario 7 of the End-to-end issue: a TLS cluster that requires client certificates, with
// auth enabled, and the exporter (the real binary) given a client certificate and a user whose
// only role reads the keyspace - the least privilege the README documents. Prometheus sees
// every member up, the quorum, and every probe and collector succeeding.
func TestExporterTLSAndReadOnlyUser(t *testing.T) {
	env := NewEnv(t)
	server, client := testPKI(t, env.Subdir("pki"))
	c := env.StartEtcd(EtcdOptions{ClientTLS: &server})
	for _, ep := range c.Endpoints() {
		if !strings.HasPrefix(ep, "https://") {
			t.Fatalf("endpoint %s is not https", ep)
		}
	}

	const user, rootPassword, password = "etcd-monitor", "root-e2e-password", "etcd-monitor-e2e-password"
	admin, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, TLS: clientTLS(t, client, true)})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	steps := []struct {
		what string
		do   func() error
	}{
		{"add root", func() error { _, err := admin.UserAdd(ctx, "root", rootPassword); return err }},
		{"grant root", func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err }},
		{"add role", func() error { _, err := admin.RoleAdd(ctx, user); return err }},
		// What `etcdctl role grant-permission etcd-monitor read --prefix ''` sends: the whole keyspace.
		{"grant read", func() error {
			_, err := admin.RoleGrantPermission(ctx, user, "\x00", "\x00", clientv3.PermissionType(clientv3.PermRead))
			return err
		}},
		{"add user", func() error { _, err := admin.UserAdd(ctx, user, password); return err }},
		{"grant role", func() error { _, err := admin.UserGrantRole(ctx, user, user); return err }},
		{"enable auth", func() error { _, err := admin.AuthEnable(ctx); return err }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
	}

	// The exporter's user really is read-only, and the cluster really requires the certificate.
	ro, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second,
		TLS: clientTLS(t, client, true), Username: user, Password: password})
	if err != nil {
		t.Fatalf("etcd client as %s: %v", user, err)
	}
	defer ro.Close()
	if _, err := ro.Get(ctx, "health"); err != nil {
		t.Fatalf("read as %s: %v", user, err)
	}
	if _, err := ro.Put(ctx, "/e2e-auth/x", "v"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("write as %s: %v, want permission denied", user, err)
	}
	noCert, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 2 * time.Second,
		TLS: clientTLS(t, client, false), Username: user, Password: password})
	if err == nil {
		ctx2, cancel2 := context.WithTimeout(context.Background(), 3*time.Second)
		_, err = noCert.Get(ctx2, "health")
		cancel2()
		noCert.Close()
	}
	if err == nil {
		t.Fatal("a client without a certificate could read: --client-cert-auth is not in force")
	}

	pwFile := filepath.Join(env.Subdir("secrets"), "password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	x := env.StartExporter(
		"--etcd.endpoints="+strings.Join(c.Endpoints(), ","),
		"--etcd.tls.ca-file="+client.CAFile,
		"--etcd.tls.cert-file="+client.CertFile,
		"--etcd.tls.key-file="+client.KeyFile,
		"--etcd.username="+user,
		"--etcd.password-file="+pwFile,
	)
	p := env.StartPrometheus(PrometheusOptions{Etcd: c, Exporters: []string{x.Addr}})

	p.WaitQuery(waitFor, `etcd_monitor_up{job="etcd-monitor"}`, AllEqual(1, 1))
	p.WaitQuery(waitFor, `etcd_monitor_member_up{job="etcd-monitor"}`, AllEqual(3, 1))
	p.WaitQuery(waitFor, `etcd_monitor_cluster_members{job="etcd-monitor"}`, AllEqual(1, 3))
	p.WaitQuery(waitFor, `etcd_monitor_cluster_has_quorum{job="etcd-monitor"}`, AllEqual(1, 1))
	p.WaitQuery(waitFor, `etcd_monitor_cluster_leaders{job="etcd-monitor"}`, AllEqual(1, 1))
	p.WaitQuery(waitFor, `etcd_monitor_member_probe_success{job="etcd-monitor"}`, AllEqual(6, 1))
	// members, status, alarms, probe, cluster, consistency and, over TLS by default, certificates:
	// every collector got its data as this user. etcd answers HashKV for the root role only, so
	// the consistency collector's check leaves every member unknown, by reason permission_denied,
	// and compares nobody.
	p.WaitQuery(waitFor, `etcd_monitor_scrape_collector_success{job="etcd-monitor"}`, AllEqual(7, 1))
	p.WaitQuery(waitFor, `etcd_monitor_consistency_unknown_total{job="etcd-monitor", reason="permission_denied"}`, func(s []Sample) bool { return len(s) == 1 && s[0].Value >= 3 })
	p.WaitQuery(waitFor, `etcd_monitor_consistency_check_success{job="etcd-monitor"}`, AllEqual(1, 0))
	p.WaitQuery(waitFor, `etcd_monitor_member_alarm{job="etcd-monitor"}`, AllEqual(6, 0))
	info := p.WaitQuery(waitFor, `etcd_monitor_member_info{job="etcd-monitor"}`, func(s []Sample) bool { return len(s) == 3 })
	for _, i := range info {
		if !strings.HasPrefix(i.Labels["client_urls"], "https://127.0.0.1:") {
			t.Errorf("member_info %v: want an https client URL", i)
		}
	}
	for _, i := range p.WaitQuery(waitFor, `etcd_monitor_member_version_info{job="etcd-monitor"}`, func(s []Sample) bool { return len(s) == 3 }) {
		if i.Labels["version"] == "" {
			t.Errorf("member_version_info %v: want a version", i)
		}
	}
}
