package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/etcd-monitor/etcd-monitor/certcheck"
	"github.com/etcd-monitor/etcd-monitor/etcdconn"
)

// certificateFlags configure the certificates collector's checker.
type certificateFlags struct {
	interval   time.Duration
	peerCAFile string
	peers      bool
}

func addCertificateFlags(cmd *kingpin.CmdClause) *certificateFlags {
	f := &certificateFlags{}
	cmd.Flag("certificates.interval", "How often the certificates collector reads the members' certificates (a TLS handshake per listener); scrapes in between serve the last result.").
		Default("10m").DurationVar(&f.interval)
	cmd.Flag("certificates.peer-listeners", "Also read the certificates the members serve on their peer URLs (turn off when the exporter cannot reach port 2380).").
		Default("true").BoolVar(&f.peers)
	cmd.Flag("certificates.peer-ca-file", "PEM file of the CA that signed the members' peer certificates (default: --etcd.tls.ca-file).").StringVar(&f.peerCAFile)
	return f
}

// validate checks the flags whether or not the collector is on, so that a typo fails at start-up.
func (f *certificateFlags) validate() error {
	if f.interval <= 0 {
		return errors.New("--certificates.interval must be positive")
	}
	if f.peerCAFile != "" {
		b, err := os.ReadFile(f.peerCAFile)
		if err != nil {
			return fmt.Errorf("reading --certificates.peer-ca-file: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(b) {
			return fmt.Errorf("--certificates.peer-ca-file %s holds no PEM certificate", f.peerCAFile)
		}
	}
	return nil
}

// checker builds the certificate checker of the cluster conn reaches; the caller closes it.
func (f *certificateFlags) checker(conn etcdconn.Config) (*certcheck.Checker, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	var fallback []certcheck.Target
	for _, ep := range conn.Endpoints {
		if t, ok := certcheck.TargetFor(0, "", certcheck.ListenerClient, ep, conn.ServerName, conn.UsesTLS()); ok {
			fallback = append(fallback, t)
		}
	}
	return certcheck.New(certcheck.Config{
		Interval:   f.interval,
		CAFile:     conn.CAFile,
		PeerCAFile: f.peerCAFile,
		CertFile:   conn.CertFile,
		// The user chose not to verify and gave no CA: there is nothing to verify against.
		SkipVerify: conn.InsecureSkipVerify && conn.CAFile == "",
		ServerName: conn.ServerName,
		TLS:        conn.UsesTLS(),
		NoPeers:    !f.peers,
		Fallback:   fallback,
	}), nil
}
