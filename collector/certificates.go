package collector

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-monitor/etcd-monitor/certcheck"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

func init() {
	// Off in the default set: the exporter turns it on when it talks TLS to etcd (a plain-text
	// cluster has no certificate to report).
	registerCollector("certificates", false, snapshot.Needs{}, phaseMemberList, newCertificatesCollector)
}

// WithCertificates gives the certificates collector the checker of the cluster's certificates. The
// caller owns it and closes it with the Taker.
func WithCertificates(c *certcheck.Checker) Option { return func(e *Exporter) { e.certs = c } }

// Certificates is the checker WithCertificates gave, nil without one: the status API reports its
// last result.
func (e *Exporter) Certificates() *certcheck.Checker { return e.certs }

// Which certificate of a chain a series describes: the server's own, or the one that expires first
// (an intermediate that expires before the leaf takes the whole chain with it).
const (
	certLeaf     = "leaf"
	certEarliest = "earliest"
)

// certificatesCollector reports the last check of the certificates the members serve and the
// exporter uses. Handshakes run at most every --certificates.interval, not at every scrape; the
// check's time is a series of its own, so that a reader knows how old the facts are.
type certificatesCollector struct {
	notAfter, notBefore, verified, success *prometheus.Desc
	fileNotAfter, fileNotBefore            *prometheus.Desc
	fileVerified, fileSuccess              *prometheus.Desc
	timestamp, duration                    *prometheus.Desc

	checker *certcheck.Checker // from WithCertificates, set in configure
}

var (
	// One series per member, listener and certificate position: a renewal changes serial, not the
	// number of series, and the series of the certificate it replaced goes stale.
	certLabelNames = []string{"listener", "certificate", "serial", "subject_cn", "issuer_cn"}
	fileLabelNames = []string{"file", "path"}
)

func newCertificatesCollector() Collector {
	certDesc := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_certificate_"+name, help, append(append([]string{}, memberLabelNames...), extra...), nil)
	}
	fileDesc := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_certificate_file_"+name, help, append(append([]string{}, fileLabelNames...), extra...), nil)
	}
	return &certificatesCollector{
		notAfter:  certDesc("not_after_timestamp_seconds", "End of validity of a certificate a member serves on a listener (client or peer), as of the last check: the leaf, and the earliest-expiring certificate of the chain.", certLabelNames...),
		notBefore: certDesc("not_before_timestamp_seconds", "Start of validity of a certificate a member serves on a listener, as of the last check.", certLabelNames...),
		verified:  certDesc("chain_verified", "1 when the chain the member serves on the listener verifies against the configured CA for the name the exporter dials, as of the last check.", "listener"),
		success:   certDesc("check_success", "1 when the last check read the member's certificate chain on the listener, else 0.", "listener"),
		fileNotAfter: fileDesc("not_after_timestamp_seconds", "End of validity of a certificate in one of the exporter's own TLS files (file cert, ca or peer_ca), as of the last check: the first certificate of the file, and the earliest-expiring one.",
			certLabelNames[1:]...),
		fileNotBefore: fileDesc("not_before_timestamp_seconds", "Start of validity of a certificate in one of the exporter's own TLS files, as of the last check.", certLabelNames[1:]...),
		fileVerified:  fileDesc("verified", "1 when the exporter's client certificate verifies, for client authentication, against its CA file, as of the last check."),
		fileSuccess:   fileDesc("check_success", "1 when the last check read the exporter's TLS file, else 0."),
		timestamp:     prometheus.NewDesc(namespace+"_certificate_check_timestamp_seconds", "When the last certificate check started; the certificate series are as of then.", nil, nil),
		duration:      prometheus.NewDesc(namespace+"_certificate_check_duration_seconds", "How long the last certificate check took.", nil, nil),
	}
}

var (
	errNoChecker     = errors.New("certificates collector enabled without a certificate checker")
	errNoCertificate = errors.New("no certificate check has finished yet")
)

// configure takes the checker from the options; without one every scrape reports the collector
// failed, with errNoChecker.
func (c *certificatesCollector) configure(e *Exporter) error {
	c.checker = e.certs
	return nil
}

// Update is never called: the collector needs the scrape's context.
func (c *certificatesCollector) Update(*snapshot.Snapshot, Sink) error {
	return errNoChecker
}

func (c *certificatesCollector) UpdateContext(ctx context.Context, s *snapshot.Snapshot, out Sink) error {
	if c.checker == nil {
		return errNoChecker
	}
	// Without a member list the targets of the last check are checked again (or the configured
	// endpoints): an expired certificate is one reason nobody answers.
	targets := c.checker.SnapshotTargets(s)
	// The check may take the scrape's whole budget, not only what the snapshot left: members that
	// hang would otherwise leave it no time, scrape after scrape.
	var budget time.Duration
	if dl, ok := ctx.Deadline(); ok {
		budget = dl.Sub(s.Start)
	}
	r := c.checker.Result(ctx, targets, budget)
	if r == nil {
		return errNoCertificate
	}
	out.Gauge(c.timestamp, float64(r.Time.UnixNano())/1e9)
	out.Gauge(c.duration, r.Duration.Seconds())
	var errs []error
	for _, l := range r.Listeners {
		// Member names and certificate names come from the members: label values like any other.
		member := []string{"", labelValue(l.Member)}
		if l.MemberID != 0 {
			member[0] = snapshot.IDString(l.MemberID)
		}
		out.Gauge(c.success, boolValue(l.Err == nil), append(member, l.Listener)...)
		if l.Err != nil {
			errs = append(errs, l.Err)
			continue
		}
		if l.Verification != certcheck.VerifySkipped {
			out.Gauge(c.verified, boolValue(l.Verification == certcheck.Verified), append(member, l.Listener)...)
		}
		for _, p := range positions(l.Chain) {
			labels := append(append([]string{}, member...), l.Listener, p.name, serial(p.cert), labelValue(p.cert.Subject.CommonName), labelValue(p.cert.Issuer.CommonName))
			out.Gauge(c.notAfter, float64(p.cert.NotAfter.Unix()), labels...)
			out.Gauge(c.notBefore, float64(p.cert.NotBefore.Unix()), labels...)
		}
	}
	for _, f := range r.Files {
		path := labelValue(f.Path)
		out.Gauge(c.fileSuccess, boolValue(f.Err == nil), f.Kind, path)
		if f.Err != nil {
			errs = append(errs, f.Err)
			continue
		}
		if f.Kind == certcheck.FileCert && f.Verification != certcheck.VerifySkipped {
			out.Gauge(c.fileVerified, boolValue(f.Verification == certcheck.Verified), f.Kind, path)
		}
		for _, p := range positions(f.Certs) {
			labels := []string{f.Kind, path, p.name, serial(p.cert), labelValue(p.cert.Subject.CommonName), labelValue(p.cert.Issuer.CommonName)}
			out.Gauge(c.fileNotAfter, float64(p.cert.NotAfter.Unix()), labels...)
			out.Gauge(c.fileNotBefore, float64(p.cert.NotBefore.Unix()), labels...)
		}
	}
	// Every certificate that could be read is reported; the collector fails only when nothing was.
	if len(errs) > 0 && len(errs) == len(r.Listeners)+len(r.Files) {
		return fmt.Errorf("no certificate read: %w", errors.Join(errs...))
	}
	return nil
}

type position struct {
	name string
	cert *x509.Certificate
}

func positions(chain []*x509.Certificate) []position {
	if len(chain) == 0 {
		return nil
	}
	return []position{{certLeaf, chain[0]}, {certEarliest, certcheck.Earliest(chain)}}
}

// serial renders a serial number as openssl prints it (hex, upper case, no separators).
func serial(c *x509.Certificate) string { return fmt.Sprintf("%X", c.SerialNumber) }
