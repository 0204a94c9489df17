// Package etcdconn turns user-facing connection settings (endpoints, TLS files, credentials) into
// etcd clients. The exporter, the benchmark and the check command share it so that every command
// accepts the same flags with the same validation.
package etcdconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// Config holds how to reach and authenticate to an etcd cluster.
type Config struct {
	Endpoints []string

	CAFile             string
	CertFile           string
	KeyFile            string
	ServerName         string
	InsecureSkipVerify bool

	Username string
	// Password is used as given; PasswordFile instead is re-read when it changes (see Credentials).
	Password     string
	PasswordFile string
}

// ParseEndpoints splits a comma-separated endpoint list and validates each entry. Entries may be
// host:port or http(s)://host:port; the returned strings are what clientv3 accepts.
func ParseEndpoints(list string) ([]string, error) {
	var out []string
	for _, raw := range strings.Split(list, ",") {
		ep := strings.TrimSpace(raw)
		if ep == "" {
			continue
		}
		if err := validateEndpoint(ep); err != nil {
			return nil, err
		}
		out = append(out, ep)
	}
	if len(out) == 0 {
		return nil, errors.New("no etcd endpoint given")
	}
	return out, nil
}

func validateEndpoint(ep string) error {
	hostport := ep
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil {
			return fmt.Errorf("invalid etcd endpoint %q: %w", ep, err)
		}
		// Lower case only: url.Parse folds "HTTPS" but the checks for TLS (UsesTLS) and
		// clientv3's own test for credentials read the text.
		if (u.Scheme != "http" && u.Scheme != "https") || !strings.HasPrefix(ep, u.Scheme+"://") {
			return fmt.Errorf("invalid etcd endpoint %q: scheme must be http or https", ep)
		}
		// url.Parse drops an empty query ("?") and keeps a fragment apart: look at the text too.
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil || strings.ContainsAny(ep, "?#") {
			return fmt.Errorf("invalid etcd endpoint %q: want scheme://host:port without path, query or credentials", ep)
		}
		hostport = u.Host
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		// The error's text repeats the address unquoted (a newline in it would break the line).
		reason := "malformed address"
		if ae, ok := errors.AsType[*net.AddrError](err); ok {
			reason = ae.Err
		}
		return fmt.Errorf("invalid etcd endpoint %q: want host:port: %s", ep, reason)
	}
	if host == "" {
		return fmt.Errorf("invalid etcd endpoint %q: empty host", ep)
	}
	if err := validateHost(hostport, host); err != nil {
		return fmt.Errorf("invalid etcd endpoint %q: %w", ep, err)
	}
	// Atoi alone would take "+1"; the dialer would not.
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || strings.Trim(port, "0123456789") != "" {
		return fmt.Errorf("invalid etcd endpoint %q: port must be a number from 1 to 65535", ep)
	}
	return nil
}

// validateHost takes what a resolver or dialer takes: letters, digits, '.', '-' and '_' (an
// internationalised name goes in its ASCII form), and an IPv6 address, with an optional zone, in
// brackets. A typo is then a start-up error rather than a member down at every scrape.
func validateHost(hostport, host string) error {
	for _, r := range host {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_:%", r)) {
			return errors.New("host must be an IP address or an ASCII DNS name")
		}
	}
	if strings.HasPrefix(hostport, "[") {
		addr, _, _ := strings.Cut(host, "%") // an IPv6 zone, as in [fe80::1%eth0]
		if ip := net.ParseIP(addr); ip == nil || ip.To4() != nil {
			return errors.New("only an IPv6 address goes in brackets")
		}
	} else if strings.Contains(host, "%") {
		return errors.New("a zone (%) needs a bracketed IPv6 address")
	}
	return nil
}

// ReadPasswordFile reads a password kept in a file, dropping the trailing newline editors add.
func ReadPasswordFile(path string) (string, error) {
	cr, err := Config{PasswordFile: path}.Credentials(nil)
	if err != nil {
		return "", err
	}
	return cr.Password(), nil
}

// UsesTLS reports whether connections must be encrypted.
func (c Config) UsesTLS() bool {
	if c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" || c.InsecureSkipVerify || c.ServerName != "" {
		return true
	}
	for _, ep := range c.Endpoints {
		if strings.HasPrefix(ep, "https://") {
			return true
		}
	}
	return false
}

// TLSConfig loads the certificate files. It returns nil when TLS is not used, so that a bad file
// is reported once at start-up rather than at every scrape.
func (c Config) TLSConfig() (*tls.Config, error) {
	if !c.UsesTLS() {
		return nil, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify, //nolint:gosec // an explicit user choice, documented as unsafe
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading etcd CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd CA file %s holds no PEM certificate", c.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("etcd client certificate and key must be given together")
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading etcd client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Validate checks everything that can be checked without contacting etcd.
func (c Config) Validate() error {
	if len(c.Endpoints) == 0 {
		return errors.New("no etcd endpoint given")
	}
	for _, ep := range c.Endpoints {
		if err := validateEndpoint(ep); err != nil {
			return err
		}
	}
	if c.Password != "" && c.PasswordFile != "" {
		return errors.New("etcd password and password file are exclusive")
	}
	if (c.Username == "") != (c.Password == "" && c.PasswordFile == "") {
		return errors.New("etcd username and password must be given together")
	}
	if _, err := c.TLSConfig(); err != nil {
		return err
	}
	_, err := c.Credentials(nil)
	return err
}

// ClientConfig builds a clientv3 configuration for the given endpoints (a subset of, or members
// discovered from, c.Endpoints). tlsCfg is the result of TLSConfig, loaded once by the caller.
func (c Config) ClientConfig(endpoints []string, tlsCfg *tls.Config, dialTimeout time.Duration) clientv3.Config {
	return clientv3.Config{
		Endpoints:   endpoints,
		TLS:         tlsCfg,
		Username:    c.Username,
		Password:    c.Password,
		DialTimeout: dialTimeout,
		// clientv3 otherwise opens its own log stream next to slog.
		Logger: zap.NewNop(),
		// gRPC's default reconnect backoff grows to two minutes, which would keep a restarted
		// member looking down long after it is back.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		})},
		DialKeepAliveTime:    30 * time.Second,
		DialKeepAliveTimeout: 10 * time.Second,
	}
}

// New returns a client balancing over all of c.Endpoints, for workloads such as the benchmark.
func New(c Config, dialTimeout time.Duration) (*clientv3.Client, error) {
	cr, err := c.Credentials(nil)
	if err != nil {
		return nil, err
	}
	var tlsCfg *tls.Config
	if len(c.Endpoints) == 1 || c.ServerName != "" {
		// The name to verify is known whichever endpoint is dialed. clientv3 passes each endpoint's
		// host to gRPC as the server name, which overrides tls.Config.ServerName: only
		// Credentials' own verification honours --etcd.tls.server-name.
		tlsCfg = cr.TLSConfigFor(c.Endpoints[0])
	} else if tlsCfg, err = c.TLSConfig(); err != nil {
		// Over several endpoints, each connection is verified by crypto/tls against the host it
		// dialed, with the files as read now.
		return nil, err
	}
	cc := c.ClientConfig(c.Endpoints, tlsCfg, dialTimeout)
	cc.Password = cr.Password()
	cli, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("connecting to etcd: %w", err)
	}
	return cli, nil
}
