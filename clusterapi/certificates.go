package clusterapi

import (
	"time"

	"github.com/etcd-monitor/etcd-monitor/certcheck"
)

// Certificates is the exporter's last certificate check, as of CheckedAt: the scrapes run it every
// --certificates.interval; the API never starts one.
type Certificates struct {
	CheckedAt time.Time           `json:"checked_at"`
	Items     []certcheck.Summary `json:"items"`
}

// WithCertificates adds the last check to a status and its verdict: an expired certificate is
// critical, one expiring soon degraded, as in `check`. A nil result (no check yet, or none
// configured) leaves st as it is.
func WithCertificates(st ClusterStatus, r *certcheck.Result, now time.Time) ClusterStatus {
	if r == nil {
		return st
	}
	items, findings := r.Judge(now)
	st.Certificates = &Certificates{CheckedAt: r.Time, Items: items}
	st.Cluster.Health = certcheck.Worsen(st.Cluster.Health, findings)
	return st
}
