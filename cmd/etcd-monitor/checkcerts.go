package main

import (
	"context"
	"time"

	"github.com/etcd-monitor/etcd-monitor/certcheck"
	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

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
// certificate is critical, one expiring soon (the mixin's warning threshold) degraded.
func addCertificates(rep checkReport, r *certcheck.Result, now time.Time) checkReport {
	if r == nil {
		return rep
	}
	var findings []certcheck.Finding
	rep.Certificates, findings = r.Judge(now)
	h := certcheck.Worsen(snapshot.Health{Verdict: rep.Verdict, Reasons: rep.Reasons}, findings)
	rep.Verdict, rep.Reasons = h.Verdict, h.Reasons
	rep.ExitCode = rep.Verdict.ExitCode()
	return rep
}
