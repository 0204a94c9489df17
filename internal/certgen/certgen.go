// Package certgen makes small certificate authorities and certificates for tests: a CA, optional
// intermediates, and server, peer or client certificates with chosen validity and serial numbers,
// written as PEM files the way etcd and the exporter read them.
package certgen

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA signs certificates; an intermediate CA's certificates are issued with the intermediates a
// server sends after its own certificate.
type CA struct {
	Cert  *x509.Certificate
	key   *ecdsa.PrivateKey
	PEM   []byte
	chain []byte // this CA's PEM followed by its issuers' up to, not including, the root
}

// Spec describes a certificate to issue.
type Spec struct {
	CommonName string
	Serial     int64
	NotBefore  time.Time
	NotAfter   time.Time
	// Usages: x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth or both (etcd peers).
	Usages []x509.ExtKeyUsage
	IPs    []net.IP
	DNS    []string
}

// Loopback is the IP every test listener binds to.
var Loopback = []net.IP{net.ParseIP("127.0.0.1")}

func encode(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// NewCA makes a self-signed root CA.
func NewCA(t testing.TB, cn string, serial int64, notBefore, notAfter time.Time) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore, NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, key: key, PEM: encode("CERTIFICATE", der)}
}

// Intermediate makes a CA signed by ca.
func (ca *CA) Intermediate(t testing.TB, cn string, serial int64, notBefore, notAfter time.Time) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore, NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := encode("CERTIFICATE", der)
	return &CA{Cert: cert, key: key, PEM: p, chain: append(append([]byte{}, p...), ca.chain...)}
}

// Issued is a certificate and its key.
type Issued struct {
	Cert *x509.Certificate
	// CertPEM is the certificate followed by its intermediates, as a server sends it.
	CertPEM []byte
	KeyPEM  []byte
}

// Issue signs a certificate for s.
func (ca *CA) Issue(t testing.TB, s Spec) Issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(s.Serial), Subject: pkix.Name{CommonName: s.CommonName},
		NotBefore: s.NotBefore, NotAfter: s.NotAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: s.Usages,
		IPAddresses: s.IPs, DNSNames: s.DNS,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return Issued{Cert: cert, CertPEM: append(encode("CERTIFICATE", der), ca.chain...), KeyPEM: encode("EC PRIVATE KEY", kder)}
}

// Write writes the certificate and key as <dir>/<name>.pem and <dir>/<name>-key.pem, replacing
// files already there by rename so that a reader never sees half a file, and returns both paths.
func (i Issued) Write(t testing.TB, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	WriteFile(t, keyFile, i.KeyPEM)
	WriteFile(t, certFile, i.CertPEM)
	return certFile, keyFile
}

// WriteFile replaces path with b atomically.
func WriteFile(t testing.TB, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
