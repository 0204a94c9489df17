//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// EtcdOptions describes a cluster of real etcd processes.
type EtcdOptions struct {
	Members int      // default 3
	Binary  string   // BinEtcd (default) or BinEtcd35
	Flags   []string // extra flags for every member, e.g. "--quota-backend-bytes=2097152"
	// ClientTLS, when set, serves the client URLs over https with these files
	// (--client-cert-auth when ClientCertAuth). Metrics URLs stay plain http.
	ClientTLS *TLSFiles
	// PeerTLS, when set, serves the peer URLs over https with these files
	// (--peer-client-cert-auth when ClientCertAuth).
	PeerTLS *TLSFiles
	// PerMember places member i elsewhere than a plain process on 127.0.0.1 (for example in a
	// network namespace); members past the end of the slice use the defaults.
	PerMember []MemberOptions
}

// MemberOptions places one member.
type MemberOptions struct {
	// Prefix runs etcd through a command that execs it, e.g. {"ip", "netns", "exec", ns}, so the
	// process the harness signals is etcd itself.
	Prefix []string
	// ClientHost is the address of the client and metrics listeners (default 127.0.0.1).
	ClientHost string
	// PeerHost is the address of the peer listener (default 127.0.0.1).
	PeerHost string
}

// TLSFiles are PEM files for a server (or a client).
type TLSFiles struct {
	CAFile, CertFile, KeyFile string
	ClientCertAuth            bool
}

// Member is one etcd process; Stop, Kill, Pause, Resume and Restart come from Process.
type Member struct {
	*Process
	Index      int
	ClientURL  string // http(s)://127.0.0.1:port
	PeerURL    string
	MetricsURL string // http://127.0.0.1:port, serves /metrics and /health
	DataDir    string
}

// MetricsAddr is host:port of the member's metrics listener (its Prometheus target).
func (m *Member) MetricsAddr() string { return strings.TrimPrefix(m.MetricsURL, "http://") }

// ClientAddr is host:port of the member's client listener.
func (m *Member) ClientAddr() string {
	return strings.TrimPrefix(strings.TrimPrefix(m.ClientURL, "http://"), "https://")
}

// Cluster is a set of etcd members started together.
type Cluster struct {
	env     *Env
	Members []*Member
}

// StartEtcd starts the members (each with its own data dir and three ports: client, peer,
// metrics; on loopback unless PerMember says otherwise) and waits until every member reports
// healthy.
func (e *Env) StartEtcd(opts EtcdOptions) *Cluster {
	e.t.Helper()
	if opts.Members == 0 {
		opts.Members = 3
	}
	if opts.Binary == "" {
		opts.Binary = BinEtcd
	}
	bin := Binary(e.t, opts.Binary)
	ports := FreePorts(e.t, 3*opts.Members)
	scheme := "http"
	if opts.ClientTLS != nil {
		scheme = "https"
	}
	peerScheme := "http"
	if opts.PeerTLS != nil {
		peerScheme = "https"
	}
	c := &Cluster{env: e}
	var initial []string
	place := make([]MemberOptions, opts.Members)
	for i := range place {
		if i < len(opts.PerMember) {
			place[i] = opts.PerMember[i]
		}
		if place[i].ClientHost == "" {
			place[i].ClientHost = "127.0.0.1"
		}
		if place[i].PeerHost == "" {
			place[i].PeerHost = "127.0.0.1"
		}
	}
	for i := range opts.Members {
		name := fmt.Sprintf("etcd%d", i)
		ch, ph := place[i].ClientHost, place[i].PeerHost
		m := &Member{
			Index:      i,
			ClientURL:  fmt.Sprintf("%s://%s:%d", scheme, ch, ports[3*i]),
			PeerURL:    fmt.Sprintf("%s://%s:%d", peerScheme, ph, ports[3*i+1]),
			MetricsURL: fmt.Sprintf("http://%s:%d", ch, ports[3*i+2]),
			DataDir:    filepath.Join(e.Subdir(name), "data"),
		}
		c.Members = append(c.Members, m)
		initial = append(initial, name+"="+m.PeerURL)
	}
	// A token of its own so two clusters never join each other, even on reused ports.
	token := fmt.Sprintf("e2e-%d-%d", os.Getpid(), time.Now().UnixNano())
	for i, m := range c.Members {
		name := fmt.Sprintf("etcd%d", i)
		args := []string{
			"--name=" + name,
			"--data-dir=" + m.DataDir,
			"--listen-client-urls=" + m.ClientURL,
			"--advertise-client-urls=" + m.ClientURL,
			"--listen-peer-urls=" + m.PeerURL,
			"--initial-advertise-peer-urls=" + m.PeerURL,
			"--listen-metrics-urls=" + m.MetricsURL,
			"--initial-cluster=" + strings.Join(initial, ","),
			"--initial-cluster-token=" + token,
			"--initial-cluster-state=new",
		}
		if t := opts.ClientTLS; t != nil {
			args = append(args, "--cert-file="+t.CertFile, "--key-file="+t.KeyFile, "--trusted-ca-file="+t.CAFile)
			if t.ClientCertAuth {
				args = append(args, "--client-cert-auth")
			}
		}
		if t := opts.PeerTLS; t != nil {
			args = append(args, "--peer-cert-file="+t.CertFile, "--peer-key-file="+t.KeyFile, "--peer-trusted-ca-file="+t.CAFile)
			if t.ClientCertAuth {
				args = append(args, "--peer-client-cert-auth")
			}
		}
		args = append(args, opts.Flags...)
		if pre := place[i].Prefix; len(pre) > 0 {
			m.Process = e.Start(name, pre[0], append(append(append([]string(nil), pre[1:]...), bin), args...)...)
		} else {
			m.Process = e.Start(name, bin, args...)
		}
	}
	c.WaitHealthy(startTimeout)
	return c
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// WaitHealthy waits until every member answers /health with "health":"true" (it has a leader
// and no alarm).
func (c *Cluster) WaitHealthy(timeout time.Duration) {
	c.env.t.Helper()
	for _, m := range c.Members {
		m.WaitHealthy(timeout)
	}
}

// Health asks the member's /health (on its metrics listener, so TLS clusters need no client cert).
func (m *Member) Health() (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	code, body, err := httpGet(ctx, m.MetricsURL+"/health")
	if err != nil {
		return false, err.Error()
	}
	var h struct {
		Health string `json:"health"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(body, &h); err != nil {
		return false, fmt.Sprintf("HTTP %d: %.200s", code, body)
	}
	return code == http.StatusOK && h.Health == "true", fmt.Sprintf("HTTP %d: %s", code, strings.TrimSpace(string(body)))
}

// WaitHealthy waits until the member reports healthy; failing at once if it exits.
func (m *Member) WaitHealthy(timeout time.Duration) {
	m.env.t.Helper()
	Eventually(m.env.t, timeout, m.Name+" healthy", func() (bool, string) {
		if exited, err := m.Exited(); exited {
			m.env.t.Fatalf("e2e: %s is not running (%v); log: %s", m.Name, err, m.LogPath())
		}
		return m.Health()
	})
}
