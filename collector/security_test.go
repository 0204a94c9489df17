package collector

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

func TestNoSpaceAlarm(t *testing.T) {
	c := etcdtest.Start(t, 1, func(_ int, cfg *embed.Config) { cfg.QuotaBackendBytes = 2 << 20 })
	cli := client(t, c.Endpoints())
	val := strings.Repeat("x", 60<<10)
	raised := false
	for i := range 200 {
		if _, err := cli.Put(context.Background(), "/fill/"+string(rune('a'+i%26))+strings.Repeat("k", i), val); err != nil {
			if !strings.Contains(err.Error(), "space exceeded") {
				t.Fatalf("put %d: %v", i, err)
			}
			raised = true
			break
		}
	}
	if !raised {
		t.Fatal("quota never reached after 200 puts of 60 KiB")
	}
	e, _ := newExporter(t, etcdconn.Config{Endpoints: c.Endpoints()})
	v := values(t, registryFor(e, 5*time.Second))
	if got := v[`etcd_monitor_member_alarm{alarm="NOSPACE",member="m0"}`]; got != 1 {
		t.Errorf("NOSPACE = %v, want 1: %v", got, v)
	}
	if got := v[`etcd_monitor_member_alarm{alarm="CORRUPT",member="m0"}`]; got != 0 {
		t.Errorf("CORRUPT = %v, want 0", got)
	}
	if got := v[`etcd_monitor_member_db_quota_bytes{member="m0"}`]; got != 2<<20 {
		t.Errorf("db_quota_bytes = %v, want %d", got, 2<<20)
	}
}

func TestReadOnlyUserWithAuth(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := client(t, c.Endpoints())
	ctx := context.Background()
	steps := []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.RoleAdd(ctx, "reader"); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, "reader", "\x00", "\x00", clientv3.PermissionType(clientv3.PermRead))
			return err
		},
		func() error { _, err := cli.UserAdd(ctx, "monitor", "monitorpw"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "monitor", "reader"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	}
	for i, s := range steps {
		if err := s(); err != nil {
			t.Fatalf("auth setup step %d: %v", i, err)
		}
	}
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("monitorpw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pw, err := etcdconn.ReadPasswordFile(pwFile)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := newExporter(t, etcdconn.Config{Endpoints: c.Endpoints(), Username: "monitor", Password: pw})
	v := values(t, registryFor(e, 5*time.Second))
	for _, k := range []string{
		"etcd_monitor_up{}", `etcd_monitor_member_up{member="m0"}`, "etcd_monitor_cluster_has_quorum{}",
		`etcd_monitor_member_probe_success{member="m0",probe="read_linearizable"}`,
		`etcd_monitor_member_probe_success{member="m0",probe="read_serializable"}`,
	} {
		if v[k] != 1 {
			t.Errorf("%s = %v, want 1", k, v[k])
		}
	}
	// A wrong password is a down cluster, not a crash.
	bad, _ := newExporter(t, etcdconn.Config{Endpoints: c.Endpoints(), Username: "monitor", Password: "wrong"})
	if got := values(t, registryFor(bad, 2*time.Second))["etcd_monitor_up{}"]; got != 0 {
		t.Errorf("wrong password: up = %v, want 0", got)
	}
}

// writeCerts creates a CA, a server certificate for 127.0.0.1 and a client certificate.
func writeCerts(t *testing.T) (dir string) {
	t.Helper()
	dir = t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.pem", "CERTIFICATE", caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		write(name+".pem", "CERTIFICATE", der)
		write(name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	leaf("server", 2, x509.ExtKeyUsageServerAuth)
	leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return dir
}

func TestTLSWithClientCertificates(t *testing.T) {
	dir := writeCerts(t)
	c := etcdtest.Start(t, 1, func(_ int, cfg *embed.Config) {
		u, _ := url.Parse(strings.Replace(cfg.ListenClientUrls[0].String(), "http://", "https://", 1))
		cfg.ListenClientUrls = []url.URL{*u}
		cfg.AdvertiseClientUrls = []url.URL{*u}
		cfg.ClientTLSInfo.CertFile = filepath.Join(dir, "server.pem")
		cfg.ClientTLSInfo.KeyFile = filepath.Join(dir, "server-key.pem")
		cfg.ClientTLSInfo.TrustedCAFile = filepath.Join(dir, "ca.pem")
		cfg.ClientTLSInfo.ClientCertAuth = true
	})
	conn := etcdconn.Config{
		Endpoints: c.Endpoints(),
		CAFile:    filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "client.pem"), KeyFile: filepath.Join(dir, "client-key.pem"),
	}
	e, _ := newExporter(t, conn)
	v := values(t, registryFor(e, 5*time.Second))
	if v["etcd_monitor_up{}"] != 1 || v[`etcd_monitor_member_up{member="m0"}`] != 1 ||
		v[`etcd_monitor_member_probe_success{member="m0",probe="read_linearizable"}`] != 1 {
		t.Errorf("TLS cluster not seen: %v", v)
	}
	// Without the client certificate the server refuses us: reported, not fatal.
	conn.CertFile, conn.KeyFile = "", ""
	noCert, _ := newExporter(t, conn)
	if got := values(t, registryFor(noCert, 2*time.Second))["etcd_monitor_up{}"]; got != 0 {
		t.Errorf("without client certificate: up = %v, want 0", got)
	}
}
