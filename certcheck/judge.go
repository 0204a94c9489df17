package certcheck

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// Summary is one listener's chain or one file, described by its earliest-expiring certificate,
// as the check command and the status API report it.
type Summary struct {
	Member   string    `json:"member,omitempty"`
	ID       string    `json:"id,omitempty"`
	Listener string    `json:"listener,omitempty"`
	Address  string    `json:"address,omitempty"`
	File     string    `json:"file,omitempty"`
	Path     string    `json:"path,omitempty"`
	Subject  string    `json:"subject_cn,omitempty"`
	Serial   string    `json:"serial,omitempty"`
	Issuer   string    `json:"issuer_cn,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`
	// Expiry is "ok", "expiring" (under the mixin's warning threshold) or "expired".
	Expiry string `json:"expiry,omitempty"`
	// Verified is absent when there was nothing to verify against.
	Verified *bool  `json:"verified,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Finding is a certificate that changes a verdict: expired (Critical) or expiring soon.
type Finding struct {
	Critical bool
	Reason   string
}

var expiryNames = map[Expiry]string{ExpiryOK: "ok", ExpiringSoon: "expiring", Expired: "expired"}

// Judge summarizes every chain and file of r at now, and finds those that expired or expire soon.
// A chain that could not be read (a firewalled peer port) is summarized with its error and found
// nothing about: it says nothing of the certificate.
func (r *Result) Judge(now time.Time) ([]Summary, []Finding) {
	out := []Summary{}
	var findings []Finding
	judge := func(s Summary, where string, certs []*x509.Certificate, v Verification, err error) Summary {
		if err != nil {
			s.Error = err.Error()
			return s
		}
		e := Earliest(certs)
		s.Subject, s.Serial, s.Issuer, s.NotAfter = e.Subject.CommonName, fmt.Sprintf("%X", e.SerialNumber), e.Issuer.CommonName, e.NotAfter
		if v != VerifySkipped {
			ok := v == Verified
			s.Verified = &ok
		}
		x := ExpiryOf(e, now)
		s.Expiry = expiryNames[x]
		what := fmt.Sprintf("certificate %s (serial %s) of %s", s.Subject, s.Serial, where)
		switch x {
		case Expired:
			findings = append(findings, Finding{Critical: true, Reason: fmt.Sprintf("%s expired %s ago", what, now.Sub(e.NotAfter).Round(time.Minute))})
		case ExpiringSoon:
			findings = append(findings, Finding{Reason: fmt.Sprintf("%s expires in %s", what, e.NotAfter.Sub(now).Round(time.Minute))})
		}
		return s
	}
	for _, l := range r.Listeners {
		s := Summary{Member: l.Member, Listener: l.Listener, Address: l.Address}
		who := l.Address // no member list: a configured endpoint
		if l.MemberID != 0 {
			s.ID = snapshot.IDString(l.MemberID)
			who = fmt.Sprintf("%s (%s)", l.Member, s.ID)
		}
		out = append(out, judge(s, fmt.Sprintf("the %s listener of member %s", l.Listener, who), l.Chain, l.Verification, l.Err))
	}
	for _, f := range r.Files {
		s := Summary{File: f.Kind, Path: f.Path}
		out = append(out, judge(s, fmt.Sprintf("the %s file %s", f.Kind, f.Path), f.Certs, f.Verification, f.Err))
	}
	return out, findings
}

// Last is the last result, nil before the first check; it never starts one.
func (c *Checker) Last() *Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// Worsen adds the findings to a verdict as snapshot.Health judges: an expired certificate is
// critical, one expiring soon degraded.
func Worsen(h snapshot.Health, findings []Finding) snapshot.Health {
	for _, f := range findings {
		v := snapshot.Degraded
		if f.Critical {
			v = snapshot.Critical
		}
		if v == snapshot.Critical || h.Verdict == snapshot.Healthy {
			h.Verdict = v
		}
		h.Reasons = append(h.Reasons, f.Reason)
	}
	return h
}
