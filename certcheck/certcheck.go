// Package certcheck reads the certificates an etcd cluster serves and the ones the exporter itself
// uses. A member's chain is read from a TLS handshake of the checker's own, never from a kept gRPC
// connection: that shows the certificate of the moment it connected, while etcd serves a renewed
// one to every new connection. The handshake stops as soon as the server's chain has arrived, before
// a client certificate would be sent, so peer listeners that require one are read too.
package certcheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// Listener names which of a member's listeners a chain came from.
const (
	ListenerClient = "client"
	ListenerPeer   = "peer"
)

// File kinds: the exporter's own client certificate and the CA files it trusts.
const (
	FileCert   = "cert"
	FileCA     = "ca"
	FilePeerCA = "peer_ca"
)

// Target is one listener of one member.
type Target struct {
	MemberID uint64
	Member   string
	Listener string
	// Address is host:port to dial.
	Address string
	// ServerName is the name the chain is verified for (and sent as SNI when not an IP).
	ServerName string
}

// TargetFor builds the target of a member's listener from one of its URLs. tlsDefault says whether a
// URL without a scheme (a configured host:port endpoint) is TLS. ok is false for plain-text URLs,
// which have no certificate.
func TargetFor(id uint64, member, listener, rawURL, serverName string, tlsDefault bool) (Target, bool) {
	hostport, secure := rawURL, tlsDefault
	if strings.Contains(rawURL, "://") {
		u, err := url.Parse(rawURL)
		if err != nil || u.Scheme != "https" {
			return Target{}, false
		}
		hostport, secure = u.Host, true
	}
	host, _, err := net.SplitHostPort(hostport)
	if !secure || err != nil {
		return Target{}, false
	}
	if serverName == "" {
		serverName = host
	}
	return Target{MemberID: id, Member: member, Listener: listener, Address: hostport, ServerName: serverName}, true
}

// Verification is the outcome of verifying a chain.
type Verification int

const (
	// VerifySkipped: nothing to verify against (no CA configured and verification disabled).
	VerifySkipped Verification = iota
	Verified
	NotVerified
)

// ListenerResult is what one target presented.
type ListenerResult struct {
	Target
	// Chain is the server's chain as sent, leaf first; nil when it could not be read (Err says why).
	Chain        []*x509.Certificate
	Err          error
	Verification Verification
	VerifyErr    error
}

// FileResult is one of the exporter's own files.
type FileResult struct {
	Kind string
	Path string
	// Certs are the file's certificates in order (for the client certificate file, leaf first).
	Certs        []*x509.Certificate
	Err          error
	Verification Verification
	VerifyErr    error
}

// Result is one check of every target and file.
type Result struct {
	// Time is when the check started; Duration how long it took.
	Time      time.Time
	Duration  time.Duration
	Listeners []ListenerResult
	Files     []FileResult
	targets   []Target
}

// ok reports whether every chain and file was read.
func (r *Result) ok() bool {
	for _, l := range r.Listeners {
		if l.Err != nil {
			return false
		}
	}
	for _, f := range r.Files {
		if f.Err != nil {
			return false
		}
	}
	return true
}

// Earliest returns the certificate of certs that expires first (nil for none).
func Earliest(certs []*x509.Certificate) *x509.Certificate {
	var e *x509.Certificate
	for _, c := range certs {
		if e == nil || c.NotAfter.Before(e.NotAfter) {
			e = c
		}
	}
	return e
}

// Config says what to check and against which CAs.
type Config struct {
	// Interval is how long a complete result is served before the next check.
	Interval time.Duration
	// RetryInterval is how long a result with a failure (a member that did not answer, an unreadable
	// file) is served: one slow scrape must not hide certificates for a whole Interval.
	RetryInterval time.Duration
	// CAFile verifies the client listeners' chains (empty: the system roots) and the client
	// certificate; PeerCAFile the peer listeners' (empty: CAFile).
	CAFile     string
	PeerCAFile string
	// CertFile is the exporter's own client certificate.
	CertFile string
	// SkipVerify leaves chains unverified when no CA file is given (--etcd.tls.insecure-skip-verify).
	SkipVerify bool
	// DefaultTimeout bounds a check started by a caller that gives no timeout.
	DefaultTimeout time.Duration
	// ServerName overrides the name client listeners are verified for (--etcd.tls.server-name);
	// TLS says whether a configured endpoint without a scheme is TLS.
	ServerName string
	TLS        bool
	// NoPeers checks no peer listener (their port is not reachable from the exporter).
	NoPeers bool
	// Fallback are the targets checked when a caller knows none and no check was made yet (the
	// configured endpoints, when no member list could be read: an expired certificate is one cause).
	Fallback []Target
}

// Checker checks one cluster's certificates at most every Interval and keeps its last result. It
// starts no goroutine until asked for a result; Close waits for a check in flight.
type Checker struct {
	cfg  Config
	base context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu      sync.Mutex
	last    *Result
	running chan struct{} // closed when the check in flight is done; nil when none is
	closed  bool
}

// New returns a checker for cfg.
func New(cfg Config) *Checker {
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Minute
	}
	if cfg.RetryInterval <= 0 || cfg.RetryInterval > cfg.Interval {
		cfg.RetryInterval = min(time.Minute, cfg.Interval)
	}
	if cfg.DefaultTimeout <= 0 {
		cfg.DefaultTimeout = 10 * time.Second
	}
	base, stop := context.WithCancel(context.Background())
	return &Checker{cfg: cfg, base: base, stop: stop}
}

// ClientTarget is the target of a member's client listener at url, the one the exporter uses; false
// when url is plain text.
func (c *Checker) ClientTarget(id uint64, member, url string) (Target, bool) {
	return TargetFor(id, member, ListenerClient, url, c.cfg.ServerName, c.cfg.TLS)
}

// PeerTarget is the target of a member's peer listener: its first https peer URL, verified for the
// URL's host as the member's peers do; false when it has none.
func (c *Checker) PeerTarget(id uint64, member string, urls []string) (Target, bool) {
	if c.cfg.NoPeers {
		return Target{}, false
	}
	for _, u := range urls {
		if t, ok := TargetFor(id, member, ListenerPeer, u, "", false); ok {
			return t, true
		}
	}
	return Target{}, false
}

// SnapshotTargets are the listeners of the snapshot's members: the client URL the Taker reaches each
// by, and its first https peer URL. nil when the snapshot has no member list (Result then checks the
// last targets, or the fallback).
func (c *Checker) SnapshotTargets(s *snapshot.Snapshot) []Target {
	if s.MemberListErr != nil {
		return nil
	}
	targets := []Target{}
	for _, m := range s.Members {
		if t, ok := c.ClientTarget(m.ID, m.Name, m.Endpoint); ok && m.Endpoint != "" {
			targets = append(targets, t)
		}
		if t, ok := c.PeerTarget(m.ID, m.Name, m.PeerURLs); ok {
			targets = append(targets, t)
		}
	}
	return targets
}

// Expiry is how close a certificate is to its end of validity.
type Expiry int

const (
	ExpiryOK Expiry = iota
	// ExpiringSoon: less than min(SoonWithin, SoonLifetimeRatio of its lifetime) is left, the
	// warning threshold of the mixin's EtcdCertificateExpiringSoon.
	ExpiringSoon
	Expired
)

// The mixin's defaults (certificateWarningDays, certificateWarningLifetimeRatio).
const (
	SoonWithin        = 28 * 24 * time.Hour
	SoonLifetimeRatio = 0.20
)

// ExpiryOf judges cert at now.
func ExpiryOf(cert *x509.Certificate, now time.Time) Expiry {
	left := cert.NotAfter.Sub(now)
	switch {
	case left <= 0:
		return Expired
	case left < min(SoonWithin, time.Duration(SoonLifetimeRatio*float64(cert.NotAfter.Sub(cert.NotBefore)))):
		return ExpiringSoon
	default:
		return ExpiryOK
	}
}

// Close stops a check in flight and waits for it; Result then serves the last result only.
func (c *Checker) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.stop()
	c.wg.Wait()
}

// Result returns the last result for targets, and starts a check when that result is older than
// the interval or was taken for other targets. A check runs for at most timeout (the scrape's whole
// budget, not what the snapshot left of it: a scrape whose members hang must not starve the check).
// Only a caller that finds no result at all waits for the check, until ctx is done; otherwise the
// previous result is served at once and the new one to the callers that follow, so a listener that
// never answers (a firewalled peer port) slows no scrape. nil targets mean those of the last check.
// The result is shared and must not be modified; nil means no check has finished yet.
func (c *Checker) Result(ctx context.Context, targets []Target, timeout time.Duration) *Result {
	c.mu.Lock()
	if targets == nil {
		targets = c.cfg.Fallback
		if c.last != nil {
			targets = c.last.targets
		}
	}
	if c.closed || c.fresh(targets) {
		r := c.last
		c.mu.Unlock()
		return r
	}
	done := c.running
	if done == nil {
		if timeout <= 0 {
			timeout = c.cfg.DefaultTimeout
		}
		cctx, cancel := context.WithTimeout(c.base, timeout)
		done = make(chan struct{})
		c.running = done
		c.wg.Go(func() {
			defer cancel()
			r := c.check(cctx, targets)
			c.mu.Lock()
			c.last, c.running = r, nil
			c.mu.Unlock()
			close(done)
		})
	}
	last := c.last
	c.mu.Unlock()
	if last != nil {
		return last
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// fresh reports whether the last result answers for targets; c.mu is held.
func (c *Checker) fresh(targets []Target) bool {
	if c.last == nil || !sameTargets(c.last.targets, targets) {
		return false
	}
	age := time.Since(c.last.Time)
	if !c.last.ok() {
		return age < c.cfg.RetryInterval
	}
	return age < c.cfg.Interval
}

func sameTargets(a, b []Target) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// check reads every target at once and the files, all bounded by ctx.
func (c *Checker) check(ctx context.Context, targets []Target) *Result {
	r := &Result{Time: time.Now(), targets: targets, Listeners: make([]ListenerResult, len(targets))}
	caPool, caErr := c.pool(c.cfg.CAFile)
	peerCA := c.cfg.PeerCAFile
	if peerCA == "" {
		peerCA = c.cfg.CAFile
	}
	peerPool, peerErr := c.pool(peerCA)
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			l := ListenerResult{Target: t}
			l.Chain, l.Err = ReadChain(ctx, t.Address, t.ServerName)
			if l.Err == nil {
				pool, perr := caPool, caErr
				if t.Listener == ListenerPeer {
					pool, perr = peerPool, peerErr
				}
				l.Verification, l.VerifyErr = c.verify(l.Chain, pool, perr, t.ServerName, x509.ExtKeyUsageServerAuth)
			}
			r.Listeners[i] = l
		})
	}
	if c.cfg.CertFile != "" {
		f := readFile(FileCert, c.cfg.CertFile)
		if f.Err == nil {
			f.Verification, f.VerifyErr = c.verify(f.Certs, caPool, caErr, "", x509.ExtKeyUsageClientAuth)
		}
		r.Files = append(r.Files, f)
	}
	if c.cfg.CAFile != "" {
		r.Files = append(r.Files, readFile(FileCA, c.cfg.CAFile))
	}
	if c.cfg.PeerCAFile != "" && c.cfg.PeerCAFile != c.cfg.CAFile {
		r.Files = append(r.Files, readFile(FilePeerCA, c.cfg.PeerCAFile))
	}
	wg.Wait()
	r.Duration = time.Since(r.Time)
	return r
}

// pool loads a CA file at each check, so that a rotated CA is seen; "" is the system roots, or
// nil when verification is off.
func (c *Checker) pool(path string) (*x509.CertPool, error) {
	if path == "" {
		if c.cfg.SkipVerify {
			return nil, nil
		}
		p, err := x509.SystemCertPool()
		if err != nil {
			return nil, fmt.Errorf("loading the system roots: %w", err)
		}
		return p, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading CA file: %w", err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", path)
	}
	return p, nil
}

func (c *Checker) verify(chain []*x509.Certificate, pool *x509.CertPool, poolErr error, name string, usage x509.ExtKeyUsage) (Verification, error) {
	if poolErr != nil {
		return NotVerified, poolErr
	}
	if pool == nil {
		return VerifySkipped, nil
	}
	inter := x509.NewCertPool()
	for _, ic := range chain[1:] {
		inter.AddCert(ic)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots: pool, Intermediates: inter, DNSName: name, KeyUsages: []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		return NotVerified, err
	}
	return Verified, nil
}

// readFile parses every certificate of a PEM file.
func readFile(kind, path string) FileResult {
	f := FileResult{Kind: kind, Path: path}
	b, err := os.ReadFile(path)
	if err != nil {
		f.Err = fmt.Errorf("reading %s file: %w", kind, err)
		return f
	}
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			f.Err = fmt.Errorf("parsing %s: %w", path, err)
			return f
		}
		f.Certs = append(f.Certs, cert)
	}
	if len(f.Certs) == 0 {
		f.Err = fmt.Errorf("%s holds no PEM certificate", path)
	}
	return f
}

// errChainRead aborts a handshake once the server's chain is in hand.
var errChainRead = errors.New("certificate chain read")

// ReadChain dials address and returns the certificate chain its server sends, leaf first. The
// handshake is abandoned as soon as the chain has arrived: the server's certificate comes before
// any client certificate is asked for (TLS 1.2 and 1.3 alike), so no client certificate is needed,
// and none is ever sent.
func ReadChain(ctx context.Context, address, serverName string) ([]*x509.Certificate, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", address, err)
	}
	defer raw.Close()
	var chain []*x509.Certificate
	var parseErr error
	conn := tls.Client(raw, &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
		// The chain is wanted whether or not it verifies; the checker verifies it itself, against
		// the CA files as they are now, and reports the outcome.
		InsecureSkipVerify: true, //nolint:gosec // verified by the caller
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			for _, rc := range rawCerts {
				cert, err := x509.ParseCertificate(rc)
				if err != nil {
					parseErr = fmt.Errorf("parsing the certificate of %s: %w", address, err)
					return parseErr
				}
				chain = append(chain, cert)
			}
			return errChainRead
		},
	})
	err = conn.HandshakeContext(ctx)
	switch {
	case parseErr != nil:
		return nil, parseErr
	case len(chain) > 0:
		return chain, nil
	case err == nil:
		return nil, fmt.Errorf("%s sent no certificate", address)
	default:
		return nil, fmt.Errorf("TLS handshake with %s: %w", address, err)
	}
}
