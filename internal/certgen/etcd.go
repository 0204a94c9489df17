package certgen

import (
	"crypto/x509"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

// EtcdPKI is a test cluster's certificates laid out as kubeadm does: one etcd CA signs every
// member's serving (client listener) and peer certificates and the monitor's client certificate.
type EtcdPKI struct {
	Dir                   string
	CA                    *CA
	CAFile                string
	ClientCert, ClientKey string
	Serving, Peer         []Issued
	ServingFiles          []etcdtest.TLSFiles
	PeerFiles             []etcdtest.TLSFiles
}

// At is now plus d to the second, the precision certificates keep.
func At(d time.Duration) time.Time { return time.Now().Add(d).Truncate(time.Second) }

// ServingSpec is a member's client-listener certificate for 127.0.0.1 and localhost. It is a client
// certificate too, as kubeadm's etcd-server is: etcd's gRPC gateway dials the member's own client
// listener with it when client certificates are required.
func ServingSpec(serial int64, notBefore, notAfter time.Time) Spec {
	return Spec{CommonName: "etcd-server", Serial: serial, NotBefore: notBefore, NotAfter: notAfter,
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, IPs: Loopback, DNS: []string{"localhost"}}
}

// PeerSpec is a member's peer certificate for 127.0.0.1: peers are servers and clients both.
func PeerSpec(serial int64, notBefore, notAfter time.Time) Spec {
	return Spec{CommonName: "etcd-peer", Serial: serial, NotBefore: notBefore, NotAfter: notAfter,
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, IPs: Loopback}
}

// NewEtcdPKI writes the CA (serial 1, ten years), the monitor's client certificate (serial 2,
// 30 days) and, for each member i, the certificates serving(i) and peer(i) describe, as
// server<i>.pem and peer<i>.pem.
func NewEtcdPKI(t testing.TB, members int, serving, peer func(i int) Spec) *EtcdPKI {
	t.Helper()
	p := &EtcdPKI{Dir: t.TempDir()}
	p.CA = NewCA(t, "etcd-ca", 1, At(-time.Hour), At(10*365*24*time.Hour))
	p.CAFile = filepath.Join(p.Dir, "ca.pem")
	WriteFile(t, p.CAFile, p.CA.PEM)
	p.ClientCert, p.ClientKey = p.CA.Issue(t, Spec{
		CommonName: "etcd-monitor", Serial: 2, NotBefore: At(-time.Hour), NotAfter: At(30 * 24 * time.Hour),
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}).Write(t, p.Dir, "client")
	for i := range members {
		s, pe := p.CA.Issue(t, serving(i)), p.CA.Issue(t, peer(i))
		sc, sk := s.Write(t, p.Dir, fmt.Sprintf("server%d", i))
		pc, pk := pe.Write(t, p.Dir, fmt.Sprintf("peer%d", i))
		p.Serving, p.Peer = append(p.Serving, s), append(p.Peer, pe)
		p.ServingFiles = append(p.ServingFiles, etcdtest.TLSFiles{CertFile: sc, KeyFile: sk, TrustedCAFile: p.CAFile})
		p.PeerFiles = append(p.PeerFiles, etcdtest.TLSFiles{CertFile: pc, KeyFile: pk, TrustedCAFile: p.CAFile})
	}
	return p
}

// Start runs a cluster of len(p.Serving) members with client and peer TLS and client-certificate
// NewNamedEtcdPKI is NewEtcdPKI for one member whose serving certificate (valid for two days)
// names dnsName alone, no IP: a client that reaches it by address must be told the name.
func NewNamedEtcdPKI(t testing.TB, dnsName string) *EtcdPKI {
	return NewEtcdPKI(t, 1,
		func(int) Spec {
			s := ServingSpec(0x10, At(-time.Hour), At(48*time.Hour))
			s.IPs, s.DNS = nil, []string{dnsName}
			return s
		},
		func(int) Spec { return PeerSpec(0x11, At(-time.Hour), At(48*time.Hour)) })
}

// authentication on both.
func (p *EtcdPKI) Start(t testing.TB, opts ...etcdtest.Option) *etcdtest.Cluster {
	t.Helper()
	return etcdtest.Start(t, len(p.Serving), append([]etcdtest.Option{etcdtest.WithTLS(
		func(i int) etcdtest.TLSFiles { return p.ServingFiles[i] },
		func(i int) etcdtest.TLSFiles { return p.PeerFiles[i] },
	)}, opts...)...)
}
