// Package targets owns the exporter's --config.file: the named etcd clusters one exporter watches,
// each with its own snapshot.Taker, and the reload that replaces them. It is the only place that
// reads the file; handlers ask it for the cluster a request names, and the collector and
// clusterapi packages stay unaware of files and reloads.
package targets

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"

	"gopkg.in/yaml.v3"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// maxFileSize bounds what is read of the config file: a fleet of thousands of clusters is far
// below it, and a file named by mistake (a log, a disk image) must not be read into memory.
const maxFileSize = 16 << 20

// Config is the parsed config file.
type Config struct {
	Clusters []Cluster `yaml:"clusters"`
}

// Cluster is one named etcd cluster of the file.
type Cluster struct {
	// Name is the value of the cluster label and of /probe's cluster parameter.
	Name      string   `yaml:"name"`
	Endpoints []string `yaml:"endpoints"`
	TLS       TLS      `yaml:"tls"`
	Username  string   `yaml:"username"`
	// PasswordFile is a path: a password never goes in this file, which is often world-readable
	// or kept in a repository, while a Secret volume holds the password alone.
	PasswordFile string `yaml:"password_file"`
	ProbeKey     string `yaml:"probe_key"`
}

// TLS are a cluster's certificate files, as the --etcd.tls.* flags give them.
type TLS struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// namePattern is what a cluster name may be: it goes unescaped into label values, URLs' query and
// log lines, so it is kept to characters that need no quoting anywhere. 63 characters, as a DNS
// label, is enough for any naming scheme.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// Conn is the cluster's connection settings.
func (c Cluster) Conn() etcdconn.Config {
	return etcdconn.Config{
		Endpoints:          slices.Clone(c.Endpoints),
		CAFile:             c.TLS.CAFile,
		CertFile:           c.TLS.CertFile,
		KeyFile:            c.TLS.KeyFile,
		ServerName:         c.TLS.ServerName,
		InsecureSkipVerify: c.TLS.InsecureSkipVerify,
		Username:           c.Username,
		PasswordFile:       c.PasswordFile,
	}
}

// probeKey is the key the cluster's probes read.
func (c Cluster) probeKey() string {
	if c.ProbeKey == "" {
		return snapshot.DefaultProbeKey
	}
	return c.ProbeKey
}

// equal reports whether two clusters are configured alike, so that a reload keeps the Taker (and
// its connections) of a cluster whose settings did not change.
func (c Cluster) equal(o Cluster) bool {
	return c.Name == o.Name && slices.Equal(c.Endpoints, o.Endpoints) && c.TLS == o.TLS &&
		c.Username == o.Username && c.PasswordFile == o.PasswordFile && c.probeKey() == o.probeKey()
}

// Load reads and validates the config file, reading every file it names, so that any mistake is
// an error here: at start-up (exit 1) or at a reload (the running configuration stays).
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading config file %s: %w", path, err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("config file %s is larger than %d MiB", path, maxFileSize>>20)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return c, nil
}

// Parse validates a config file's content. Unknown fields are errors, not ignored: a misspelt
// "pasword_file" would otherwise silently connect without credentials.
func Parse(b []byte) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("no clusters: the file is empty")
		}
		return nil, fmt.Errorf("%s", oneLine(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document")
	}
	if len(c.Clusters) == 0 {
		return nil, errors.New("no clusters: want at least one entry under clusters")
	}
	seen := map[string]bool{}
	for i, cl := range c.Clusters {
		if !namePattern.MatchString(cl.Name) {
			return nil, fmt.Errorf("clusters[%d]: name %q must be 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit", i, cl.Name)
		}
		if seen[cl.Name] {
			return nil, fmt.Errorf("clusters[%d]: duplicate cluster name %q", i, cl.Name)
		}
		seen[cl.Name] = true
		if len(cl.Endpoints) == 0 {
			return nil, fmt.Errorf("cluster %q: no endpoints", cl.Name)
		}
		if err := cl.Conn().Validate(); err != nil {
			return nil, fmt.Errorf("cluster %q: %w", cl.Name, err)
		}
	}
	return &c, nil
}

// oneLine joins a multi-line error (yaml.v3 lists every unknown field on its own line) into one.
func oneLine(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return "yaml: " + joinSemi(te.Errors)
	}
	return string(bytes.ReplaceAll([]byte(err.Error()), []byte("\n"), []byte("; ")))
}

func joinSemi(s []string) string {
	var b bytes.Buffer
	for i, e := range s {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e)
	}
	return b.String()
}
