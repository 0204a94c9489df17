package etcdconn

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Credentials are a Config's client certificate, CA and password, re-read from their files when
// what the files hold changes: kubeadm and cert-manager renew certificates in place, and a
// Kubernetes Secret volume swaps a symlink, so comparing content (not names or mtimes) sees both.
// A file that turns bad keeps the last good value in use and is logged once.
//
// The certificate and CA are read at every TLS handshake, so a new connection always uses what is
// on disk; kept connections go on with what they were opened with, as etcd itself allows. clientv3
// keeps the password per client, so a changed password needs new clients: their owner compares
// Password with the one a client was built with (snapshot.Taker does at every snapshot).
type Credentials struct {
	conf   Config
	logger *slog.Logger
	cert   *fileValue[*tls.Certificate] // nil without a client certificate
	ca     *fileValue[*x509.CertPool]   // nil without a CA file: the system roots apply
	pw     *fileValue[string]           // nil without a password file
}

// Credentials reads every file now: a bad file is an error here, since there is no last good
// value yet to keep.
func (c Config) Credentials(logger *slog.Logger) (*Credentials, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cr := &Credentials{conf: c, logger: logger}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("etcd client certificate and key must be given together")
	}
	if c.CertFile != "" {
		cr.cert = &fileValue[*tls.Certificate]{what: "etcd client certificate", paths: []string{c.CertFile, c.KeyFile}, parse: parseKeyPair}
		if err := cr.cert.load(); err != nil {
			return nil, err
		}
	}
	if c.CAFile != "" {
		cr.ca = &fileValue[*x509.CertPool]{what: "etcd CA", paths: []string{c.CAFile}, parse: parseCAPool}
		if err := cr.ca.load(); err != nil {
			return nil, err
		}
	}
	if c.PasswordFile != "" {
		cr.pw = &fileValue[string]{what: "etcd password", paths: []string{c.PasswordFile}, parse: parsePassword}
		if err := cr.pw.load(); err != nil {
			return nil, err
		}
	}
	return cr, nil
}

// Password is the password from the password file as it is now (the last good one if the file
// turned bad), or Config.Password when no file is given.
func (cr *Credentials) Password() string {
	if cr.pw == nil {
		return cr.conf.Password
	}
	return cr.pw.get(cr.logger)
}

// ClientConfig is Config.ClientConfig for a client bound to one endpoint, with certificates and
// CA read at each handshake and the current password.
func (cr *Credentials) ClientConfig(endpoint string, dialTimeout time.Duration) clientv3.Config {
	cc := cr.conf.ClientConfig([]string{endpoint}, cr.TLSConfigFor(endpoint), dialTimeout)
	cc.Password = cr.Password()
	return cc
}

// TLSConfigFor returns the TLS configuration of a client that dials endpoint alone, nil when TLS is
// not used. The server is verified by VerifyConnection against the CA file's current content and
// the name the client expects (Config.ServerName, else the endpoint's host), exactly as crypto/tls
// would with a fixed RootCAs; InsecureSkipVerify only turns off crypto/tls's own check, which can
// only use a pool fixed when the connection starts. The expected name is bound here, per endpoint,
// because the handshake does not tell VerifyConnection an IP address it dialed.
func (cr *Credentials) TLSConfigFor(endpoint string) *tls.Config {
	if !cr.conf.UsesTLS() {
		return nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cr.conf.ServerName}
	if cr.cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return cr.cert.get(cr.logger), nil
		}
	}
	if cr.conf.InsecureSkipVerify {
		cfg.InsecureSkipVerify = true //nolint:gosec // an explicit user choice, documented as unsafe
		return cfg
	}
	name := cr.conf.ServerName
	if name == "" {
		name = endpointHost(endpoint)
	}
	cfg.InsecureSkipVerify = true //nolint:gosec // verification is done by VerifyConnection below
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		return cr.verifyServer(cs, name)
	}
	return cfg
}

// verifyServer is what crypto/tls does for a client with RootCAs set (handshake_client.go,
// verifyServerCertificate): the chain to a trusted root, server-auth usage, validity now, and the
// name, which also matches IP addresses against the certificate's IP SANs.
func (cr *Credentials) verifyServer(cs tls.ConnectionState, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("etcd server presented no certificate")
	}
	opts := x509.VerifyOptions{DNSName: name, Intermediates: x509.NewCertPool()}
	if cr.ca != nil {
		opts.Roots = cr.ca.get(cr.logger)
	}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
	}
	return nil
}

// endpointHost is the host a client dialing endpoint expects in the server's certificate: what
// clientv3 passes to gRPC as the server name (host:port of the URL, or the bare host:port), less
// the port and any IPv6 brackets.
func endpointHost(endpoint string) string {
	hostport := endpoint
	if strings.Contains(endpoint, "://") {
		if u, err := url.Parse(endpoint); err == nil {
			hostport = u.Host
		}
	}
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		return host
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
}

func parseKeyPair(b [][]byte) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(b[0], b[1])
	if err != nil {
		return nil, err
	}
	return &cert, nil
}

func parseCAPool(b [][]byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b[0]) {
		return nil, errors.New("holds no PEM certificate")
	}
	return pool, nil
}

func parsePassword(b [][]byte) (string, error) {
	pw := strings.TrimRight(string(b[0]), "\r\n")
	if pw == "" {
		return "", errors.New("empty")
	}
	return pw, nil
}

// fileValue is a value parsed from files, kept with the bytes it was parsed from.
type fileValue[T any] struct {
	what  string
	paths []string
	parse func([][]byte) (T, error)

	mu     sync.Mutex
	value  T
	source [][]byte
	// failed identifies the last failure logged (the error, and the content when it was read), so
	// that a file that stays bad is logged once and not at every handshake or snapshot.
	failed string
}

func (f *fileValue[T]) read() ([][]byte, error) {
	out := make([][]byte, len(f.paths))
	for i, p := range f.paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", f.what, err)
		}
		out[i] = b
	}
	return out, nil
}

func (f *fileValue[T]) load() error {
	src, err := f.read()
	if err != nil {
		return err
	}
	v, err := f.parse(src)
	if err != nil {
		return f.parseError(err)
	}
	f.value, f.source = v, src
	return nil
}

func (f *fileValue[T]) parseError(err error) error {
	return fmt.Errorf("%s file %s: %w", f.what, strings.Join(f.paths, ", "), err)
}

// get re-reads the files and returns the value they hold, or the last good value when they cannot
// be read or parsed.
func (f *fileValue[T]) get(logger *slog.Logger) T {
	f.mu.Lock()
	defer f.mu.Unlock()
	src, err := f.read()
	if err == nil && sameContent(src, f.source) {
		f.failed = ""
		return f.value
	}
	var failure string
	if err == nil {
		v, perr := f.parse(src)
		if perr == nil {
			f.value, f.source, f.failed = v, src, ""
			logger.Info("reloaded "+f.what+" from changed files", "files", f.paths)
			return f.value
		}
		err = f.parseError(perr)
		sum := sha256.Sum256(bytes.Join(src, []byte{0}))
		failure = fmt.Sprintf("%x", sum)
	}
	failure += err.Error()
	if failure != f.failed {
		f.failed = failure
		logger.Warn("keeping the last good "+f.what+": its files changed and cannot be used", "files", f.paths, "err", err)
	}
	return f.value
}

func sameContent(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
