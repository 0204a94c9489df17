package etcdconn

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/internal/testpki"
)

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

func certSerial(t *testing.T, c *tls.Certificate) string {
	t.Helper()
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.String()
}

func leafSerial(t *testing.T, l testpki.Leaf) string {
	t.Helper()
	c, err := tls.X509KeyPair(l.CertPEM, l.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certSerial(t, &c)
}

// The files are re-read at each use: a change in place and a Secret volume's symlink swap are
// both seen, and a change that cannot be used keeps the last good value, logged once.
func TestCredentialsFollowTheFiles(t *testing.T) {
	ca := testpki.NewCA(t, "ca")
	vol := testpki.NewSecretVolume(t)
	first := ca.Leaf(t, testpki.LeafOptions{Name: "first", Client: true})
	vol.Update(map[string][]byte{"tls.crt": first.CertPEM, "tls.key": first.KeyPEM, "ca.crt": ca.PEM, "password": []byte("one\n")})
	logs := &logBuffer{}
	cr, err := Config{
		Endpoints: []string{"https://127.0.0.1:2379"},
		CertFile:  vol.Path("tls.crt"), KeyFile: vol.Path("tls.key"), CAFile: vol.Path("ca.crt"),
		Username: "u", PasswordFile: vol.Path("password"),
	}.Credentials(slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	current := func() string { t.Helper(); return certSerial(t, cr.cert.get(cr.logger)) }
	if got, want := current(), leafSerial(t, first); got != want {
		t.Fatalf("certificate serial %s, want %s", got, want)
	}

	second := ca.Leaf(t, testpki.LeafOptions{Name: "second", Client: true})
	vol.Update(map[string][]byte{"tls.crt": second.CertPEM, "tls.key": second.KeyPEM, "ca.crt": ca.PEM, "password": []byte("two\n")})
	if got, want := current(), leafSerial(t, second); got != want {
		t.Errorf("after the symlink swap: serial %s, want %s", got, want)
	}
	if got := cr.Password(); got != "two" {
		t.Errorf("after the symlink swap: password %q, want two", got)
	}

	// In place, and half done: the certificate is new, the key still the old one.
	third := ca.Leaf(t, testpki.LeafOptions{Name: "third", Client: true})
	certPath, _ := filepath.EvalSymlinks(vol.Path("tls.crt"))
	keyPath, _ := filepath.EvalSymlinks(vol.Path("tls.key"))
	testpki.WriteFile(t, certPath, third.CertPEM)
	for range 3 {
		if got, want := current(), leafSerial(t, second); got != want {
			t.Errorf("with a mismatched key: serial %s, want the last good %s", got, want)
		}
	}
	if n := logs.count("keeping the last good etcd client certificate"); n != 1 {
		t.Errorf("mismatched key logged %d times, want once", n)
	}
	testpki.WriteFile(t, keyPath, third.KeyPEM)
	if got, want := current(), leafSerial(t, third); got != want {
		t.Errorf("after the key followed: serial %s, want %s", got, want)
	}
	if n := logs.count("reloaded etcd client certificate"); n != 2 {
		t.Errorf("reload logged %d times, want 2", n)
	}

	// A removed file, an empty password file and a CA file without a certificate.
	pwPath, _ := filepath.EvalSymlinks(vol.Path("password"))
	caPath, _ := filepath.EvalSymlinks(vol.Path("ca.crt"))
	pool := cr.ca.get(cr.logger)
	testpki.WriteFile(t, pwPath, []byte("\n"))
	testpki.WriteFile(t, caPath, []byte("not a certificate"))
	if err := os.Remove(keyPath); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if got := cr.Password(); got != "two" {
			t.Errorf("with an empty password file: %q, want the last good two", got)
		}
		if cr.ca.get(cr.logger) != pool {
			t.Error("with a bad CA file the pool changed")
		}
		if got, want := current(), leafSerial(t, third); got != want {
			t.Errorf("with the key file removed: serial %s, want the last good %s", got, want)
		}
	}
	for _, w := range []string{"keeping the last good etcd password", "keeping the last good etcd CA", "keeping the last good etcd client certificate"} {
		want := 1
		if w == "keeping the last good etcd client certificate" {
			want = 2 // the mismatched key earlier, the removed file now
		}
		if n := logs.count(w); n != want {
			t.Errorf("%q logged %d times, want %d", w, n, want)
		}
	}
}

// At start-up a bad file is an error, not a kept value: there is no last good one.
func TestCredentialsBadFilesAtStart(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	testpki.WriteFile(t, empty, nil)
	missing := filepath.Join(dir, "missing")
	for name, c := range map[string]Config{
		"missing CA":      {CAFile: missing},
		"empty CA":        {CAFile: empty},
		"cert, no key":    {CertFile: empty},
		"bad key pair":    {CertFile: empty, KeyFile: empty},
		"empty password":  {PasswordFile: empty},
		"missing passwrd": {PasswordFile: missing},
	} {
		if _, err := c.Credentials(nil); err == nil {
			t.Errorf("%s: no error", name)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error is not one line: %q", name, err)
		}
	}
}

// tlsServer serves one member over TLS (no client certificates) with the certificate in dir,
// which etcd re-reads at every handshake, so that each case below only writes files.
func tlsServer(t *testing.T) (endpoint string, setCert func(testpki.Leaf)) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	setCert = func(l testpki.Leaf) {
		testpki.WriteFile(t, certPath, l.CertPEM)
		testpki.WriteFile(t, keyPath, l.KeyPEM)
	}
	setCert(testpki.NewCA(t, "boot").Leaf(t, testpki.LeafOptions{Name: "boot", Hosts: []string{"127.0.0.1"}}))
	c := etcdtest.Start(t, 1, func(_ int, cfg *embed.Config) {
		u, _ := url.Parse(strings.Replace(cfg.ListenClientUrls[0].String(), "http://", "https://", 1))
		cfg.ListenClientUrls = []url.URL{*u}
		cfg.AdvertiseClientUrls = []url.URL{*u}
		cfg.ClientTLSInfo.CertFile = certPath
		cfg.ClientTLSInfo.KeyFile = keyPath
	})
	return c.Endpoints()[0], setCert
}

// The server is verified against the CA file and the expected name exactly as crypto/tls would:
// the reloading VerifyConnection must refuse what the standard verification refuses. The server
// name case failed before Credentials: clientv3 gives gRPC each endpoint's host as the server name,
// which overrode tls.Config.ServerName, so --etcd.tls.server-name had no effect.
func TestServerVerification(t *testing.T) {
	endpoint, setCert := tlsServer(t)
	ca := testpki.NewCA(t, "ca")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	testpki.WriteFile(t, caFile, ca.PEM)
	otherCAFile := filepath.Join(t.TempDir(), "other-ca.pem")
	testpki.WriteFile(t, otherCAFile, testpki.NewCA(t, "other").PEM)
	for _, tc := range []struct {
		name   string
		server testpki.LeafOptions
		conf   Config
		err    string // "" when the connection must succeed
	}{
		{"right CA and IP", testpki.LeafOptions{Hosts: []string{"127.0.0.1"}}, Config{CAFile: caFile}, ""},
		{"unrelated CA", testpki.LeafOptions{Hosts: []string{"127.0.0.1"}}, Config{CAFile: otherCAFile}, "unknown authority"},
		{"system roots only", testpki.LeafOptions{Hosts: []string{"127.0.0.1"}}, Config{ServerName: ""}, "unknown authority"},
		{"another IP", testpki.LeafOptions{Hosts: []string{"127.0.0.2"}}, Config{CAFile: caFile}, "not 127.0.0.1"},
		{"DNS name, no server name", testpki.LeafOptions{Hosts: []string{"etcd.example"}}, Config{CAFile: caFile}, "doesn't contain any IP SANs"},
		{"DNS name and server name", testpki.LeafOptions{Hosts: []string{"etcd.example"}}, Config{CAFile: caFile, ServerName: "etcd.example"}, ""},
		{"wrong server name", testpki.LeafOptions{Hosts: []string{"etcd.example"}}, Config{CAFile: caFile, ServerName: "other.example"}, "not other.example"},
		{"client certificate as server", testpki.LeafOptions{Hosts: []string{"127.0.0.1"}, Client: true}, Config{CAFile: caFile}, "incompatible key usage"},
		{"expired", testpki.LeafOptions{Hosts: []string{"127.0.0.1"}, NotAfter: time.Now().Add(-time.Minute)}, Config{CAFile: caFile}, "expired"},
		{"insecure skip verify", testpki.LeafOptions{Hosts: []string{"127.0.0.2"}}, Config{CAFile: otherCAFile, InsecureSkipVerify: true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.server.Name = "etcd"
			setCert(ca.Leaf(t, tc.server))
			tc.conf.Endpoints = []string{endpoint}
			cr, err := tc.conf.Credentials(nil)
			if err != nil {
				t.Fatal(err)
			}
			check := func(how string, err error) {
				switch {
				case tc.err == "" && err != nil:
					t.Errorf("%s: refused: %v", how, err)
				case tc.err != "" && err == nil:
					t.Errorf("%s: accepted, want refused with %q", how, tc.err)
				case tc.err != "" && !strings.Contains(err.Error(), tc.err):
					t.Errorf("%s: refused with %v, want %q", how, err, tc.err)
				}
			}
			check("client of one endpoint", attempts(tc.err, func() (*clientv3.Client, error) {
				return clientv3.New(cr.ClientConfig(endpoint, 5*time.Second))
			}))
			// The benchmark's client over several endpoints.
			tc.conf.Endpoints = []string{endpoint, endpoint}
			check("client of two endpoints", attempts(tc.err, func() (*clientv3.Client, error) {
				return New(tc.conf, 5*time.Second)
			}))
		})
	}
}

// attempts asks up to three new clients until the outcome is the expected one, since on a loaded
// machine a handshake can outlast gRPC's one-second connect timeout; an accepted handshake is
// never retried when a refusal is expected, so no retry can hide a wrong acceptance.
func attempts(wantErr string, newClient func() (*clientv3.Client, error)) error {
	var err error
	for range 3 {
		cli, cerr := newClient()
		if cerr != nil {
			return cerr
		}
		err = status(cli)
		if err == nil || (wantErr != "" && strings.Contains(err.Error(), wantErr)) {
			return err
		}
	}
	return err
}

// status makes one request on a new client, closes it and returns why the request failed. The
// request goes to the connection without clientv3's wait-for-ready, so that a refused handshake
// fails it with the TLS error instead of leaving it to run into the deadline.
func status(cli *clientv3.Client) error {
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := pb.NewMaintenanceClient(cli.ActiveConnection()).Status(ctx, &pb.StatusRequest{})
	return err
}
