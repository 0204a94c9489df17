package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/etcd-monitor/etcd-monitor/certcheck"
	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// checkCertificate is one certificate chain or file `check` read, judged by its earliest-expiring
// certificate.
type checkCertificate struct {
	Member   string    `json:"member,omitempty"`
	ID       string    `json:"id,omitempty"`
	Listener string    `json:"listener,omitempty"`
	File     string    `json:"file,omitempty"`
	Path     string    `json:"path,omitempty"`
	Subject  string    `json:"subject_cn,omitempty"`
	Serial   string    `json:"serial,omitempty"`
	Issuer   string    `json:"issuer_cn,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`
	Expiry   string    `json:"expiry,omitempty"`
	Verified *bool     `json:"verified,omitempty"`
	Error    string    `json:"error,omitempty"`
}

var expiryNames = map[certcheck.Expiry]string{certcheck.ExpiryOK: "ok", certcheck.ExpiringSoon: "expiring", certcheck.Expired: "expired"}

// readCertificates reads, when etcd is reached over TLS, the members' certificates and the check's
// own files within what is left of ctx once the snapshot is taken; nil without TLS.
func readCertificates(ctx context.Context, conn etcdconn.Config, s *snapshot.Snapshot) *certcheck.Result {
	if !conn.UsesTLS() {
		return nil
	}
	var fallback []certcheck.Target
	for _, ep := range conn.Endpoints {
		if t, ok := certcheck.TargetFor(0, "", certcheck.ListenerClient, ep, conn.ServerName, true); ok {
			fallback = append(fallback, t)
		}
	}
	ch := certcheck.New(certcheck.Config{
		CAFile: conn.CAFile, CertFile: conn.CertFile, SkipVerify: conn.InsecureSkipVerify && conn.CAFile == "",
		ServerName: conn.ServerName, TLS: true, Fallback: fallback,
	})
	defer ch.Close()
	var left time.Duration
	if dl, ok := ctx.Deadline(); ok {
		left = time.Until(dl)
	}
	if left <= 0 {
		return nil
	}
	return ch.Result(ctx, ch.SnapshotTargets(s), left)
}

// addCertificates lists the certificates in the report and worsens its verdict: an expired
// certificate is critical, one expiring soon (the mixin's warning threshold) degraded. A chain that
// could not be read (a firewalled peer port) is listed with its error but judged by nothing.
func addCertificates(rep checkReport, r *certcheck.Result, now time.Time) checkReport {
	if r == nil {
		return rep
	}
	worsen := func(v snapshot.Verdict, reason string) {
		if v == snapshot.Critical || rep.Verdict == snapshot.Healthy {
			rep.Verdict = v
		}
		rep.Reasons = append(rep.Reasons, reason)
	}
	judge := func(c checkCertificate, where string, certs []*x509.Certificate, v certcheck.Verification, err error) checkCertificate {
		if err != nil {
			c.Error = err.Error()
			return c
		}
		e := certcheck.Earliest(certs)
		c.Subject, c.Serial, c.Issuer, c.NotAfter = e.Subject.CommonName, fmt.Sprintf("%X", e.SerialNumber), e.Issuer.CommonName, e.NotAfter
		if v != certcheck.VerifySkipped {
			ok := v == certcheck.Verified
			c.Verified = &ok
		}
		x := certcheck.ExpiryOf(e, now)
		c.Expiry = expiryNames[x]
		what := fmt.Sprintf("certificate %s (serial %s) of %s", c.Subject, c.Serial, where)
		switch x {
		case certcheck.Expired:
			worsen(snapshot.Critical, fmt.Sprintf("%s expired %s ago", what, now.Sub(e.NotAfter).Round(time.Minute)))
		case certcheck.ExpiringSoon:
			worsen(snapshot.Degraded, fmt.Sprintf("%s expires in %s", what, e.NotAfter.Sub(now).Round(time.Minute)))
		}
		return c
	}
	for _, l := range r.Listeners {
		c := checkCertificate{Member: l.Member, Listener: l.Listener}
		if l.MemberID != 0 {
			c.ID = snapshot.IDString(l.MemberID)
		}
		who := l.Address // no member list: a configured endpoint
		if c.ID != "" {
			who = fmt.Sprintf("%s (%s)", c.Member, c.ID)
		}
		rep.Certificates = append(rep.Certificates, judge(c, fmt.Sprintf("the %s listener of member %s", l.Listener, who), l.Chain, l.Verification, l.Err))
	}
	for _, f := range r.Files {
		c := checkCertificate{File: f.Kind, Path: f.Path}
		rep.Certificates = append(rep.Certificates, judge(c, fmt.Sprintf("the %s file %s", f.Kind, f.Path), f.Certs, f.Verification, f.Err))
	}
	rep.ExitCode = rep.Verdict.ExitCode()
	return rep
}
