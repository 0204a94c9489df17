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

// StartEtcd starts the members (each with its own data dir and four loopback ports: client,
// peer, metrics) and waits until every member reports healthy.
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
	c := &Cluster{env: e}
	var initial []string
	for i := range opts.Members {
		name := fmt.Sprintf("etcd%d", i)
		m := &Member{
			Index:      i,
			ClientURL:  fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[3*i]),
			PeerURL:    fmt.Sprintf("http://127.0.0.1:%d", ports[3*i+1]),
			MetricsURL: fmt.Sprintf("http://127.0.0.1:%d", ports[3*i+2]),
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
		args = append(args, opts.Flags...)
		m.Process = e.Start(name, bin, args...)
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
