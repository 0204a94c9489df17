// Package testpki makes certificate authorities and certificates for tests, and writes them the way
// certificate renewers do: in place (kubeadm) or by the atomic symlink swap of a Kubernetes Secret
// volume.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

var serial atomic.Int64

// CA is a self-signed certificate authority.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// PEM is the CA certificate, what a trust file holds.
	PEM []byte
}

// NewCA makes a CA valid from an hour ago for a day.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Leaf is a certificate and its key, PEM encoded.
type Leaf struct {
	CertPEM, KeyPEM []byte
}

// LeafOptions describe a leaf certificate. Hosts are IP addresses or DNS names.
type LeafOptions struct {
	Name     string
	Hosts    []string
	Client   bool // client authentication instead of server authentication
	NotAfter time.Time
}

// Leaf signs a certificate. Without NotAfter it is valid for a day.
func (ca *CA) Leaf(t testing.TB, o LeafOptions) Leaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	usage := x509.ExtKeyUsageServerAuth
	if o.Client {
		usage = x509.ExtKeyUsageClientAuth
	}
	notAfter := o.NotAfter
	if notAfter.IsZero() {
		notAfter = time.Now().Add(24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: o.Name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	for _, h := range o.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return Leaf{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	}
}

// WriteFile writes data to path in place (truncate and write), as kubeadm renews certificates.
func WriteFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// SecretVolume lays files out as the kubelet does for a Secret volume: each name is a symlink
// through ..data to a timestamped directory, and an update swaps ..data atomically.
type SecretVolume struct {
	t   testing.TB
	Dir string
	gen int
}

// NewSecretVolume creates an empty volume in a temp dir.
func NewSecretVolume(t testing.TB) *SecretVolume {
	return &SecretVolume{t: t, Dir: t.TempDir()}
}

// Path is the path a consumer of the volume opens for name.
func (v *SecretVolume) Path(name string) string { return filepath.Join(v.Dir, name) }

// Update writes every file into a new generation directory and swaps ..data to it in one rename.
func (v *SecretVolume) Update(files map[string][]byte) {
	v.t.Helper()
	v.gen++
	genDir := fmt.Sprintf("..gen_%d", v.gen)
	if err := os.Mkdir(filepath.Join(v.Dir, genDir), 0o700); err != nil {
		v.t.Fatal(err)
	}
	for name, data := range files {
		WriteFile(v.t, filepath.Join(v.Dir, genDir, name), data)
		link := filepath.Join(v.Dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				v.t.Fatal(err)
			}
		}
	}
	tmp := filepath.Join(v.Dir, "..data_tmp")
	if err := os.Symlink(genDir, tmp); err != nil {
		v.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.Dir, "..data")); err != nil {
		v.t.Fatal(err)
	}
}
