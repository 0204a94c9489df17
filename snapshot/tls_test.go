package snapshot

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

// writeServerCert writes a CA and a server certificate for 127.0.0.1 into dir.
func writeServerCert(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "server"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", der), write("server-key.pem", "EC PRIVATE KEY", kder)
}

// With TLS configured, a member advertising a plain http:// URL is not contacted on it (the
// password would cross the network in clear): it is down with an error that says why, and no
// connection reaches that URL.
func TestTLSRefusesPlainAdvertisedURL(t *testing.T) {
	caFile, certFile, keyFile := writeServerCert(t, t.TempDir())
	plain := newForwarder(t)
	c := etcdtest.Start(t, 2, func(i int, cfg *embed.Config) {
		if i == 0 {
			u := mustParseURL(t, strings.Replace(cfg.ListenClientUrls[0].String(), "http://", "https://", 1))
			cfg.ListenClientUrls = []url.URL{u}
			cfg.AdvertiseClientUrls = []url.URL{u}
			cfg.ClientTLSInfo.CertFile, cfg.ClientTLSInfo.KeyFile = certFile, keyFile
			return
		}
		plain.setTargets(listenHost(cfg))
		cfg.AdvertiseClientUrls = []url.URL{mustParseURL(t, plain.URL())}
	})
	enableAuth(t, []string{"http://" + plain.ln.Addr().String()})
	before := plain.accepted.Load()
	tk := newTaker(t, etcdconn.Config{
		Endpoints: []string{c.Members[0].ClientURL}, CAFile: caFile, Username: "root", Password: "rootpw",
	})
	s := take(t, tk)
	if s.MemberListErr != nil {
		t.Fatalf("member list: %v", s.MemberListErr)
	}
	logMembers(t, s)
	ms := byName(s)
	if m := ms["m0"]; m == nil || !m.Up() {
		t.Fatalf("m0 (https) not up: %+v", m)
	}
	m1 := ms["m1"]
	if m1 == nil {
		t.Fatal("m1 missing from the member list")
	}
	if m1.Up() {
		t.Errorf("m1 up over plain http though TLS is configured")
	}
	want := fmt.Sprintf("refusing %s: TLS is configured and credentials would be sent in clear", plain.URL())
	if !errors.Is(m1.StatusErr, ErrPlaintextURL) || !strings.Contains(fmt.Sprint(m1.StatusErr), want) {
		t.Errorf("m1 status error = %v, want %q", m1.StatusErr, want)
	}
	if got := plain.accepted.Load() - before; got != 0 {
		t.Errorf("%d connections made to the plain http URL", got)
	}
}

// A configured plain http:// endpoint is refused as well when TLS is configured: nothing is dialed.
func TestTLSRefusesPlainConfiguredEndpoint(t *testing.T) {
	caFile, _, _ := writeServerCert(t, t.TempDir())
	plain := newForwarder(t)
	tk := newTaker(t, etcdconn.Config{Endpoints: []string{plain.URL()}, CAFile: caFile})
	s := take(t, tk)
	want := fmt.Sprintf("member list: refusing %s: TLS is configured and credentials would be sent in clear", plain.URL())
	if !errors.Is(s.MemberListErr, ErrPlaintextURL) || fmt.Sprint(s.MemberListErr) != want {
		t.Errorf("member list error = %v, want %q", s.MemberListErr, want)
	}
	if got := plain.accepted.Load(); got != 0 {
		t.Errorf("%d connections made to the plain http endpoint", got)
	}
}
