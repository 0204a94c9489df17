package snapshot

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/internal/testpki"
)

// serverPKI is an etcd member's serving certificate and the CA it trusts for client certificates,
// in files etcd reads at start (the CA) and at every handshake (the certificate).
type serverPKI struct{ dir string }

func (p serverPKI) write(t *testing.T, trusted *testpki.CA, signer *testpki.CA) {
	t.Helper()
	leaf := signer.Leaf(t, testpki.LeafOptions{Name: "etcd", Hosts: []string{"127.0.0.1"}})
	testpki.WriteFile(t, filepath.Join(p.dir, "ca.pem"), trusted.PEM)
	testpki.WriteFile(t, filepath.Join(p.dir, "server.pem"), leaf.CertPEM)
	testpki.WriteFile(t, filepath.Join(p.dir, "server-key.pem"), leaf.KeyPEM)
}

// option serves clients over TLS and requires a client certificate signed by the trusted CA.
func (p serverPKI) option() etcdtest.Option {
	return func(_ int, cfg *embed.Config) {
		u, _ := url.Parse(strings.Replace(cfg.ListenClientUrls[0].String(), "http://", "https://", 1))
		cfg.ListenClientUrls = []url.URL{*u}
		cfg.AdvertiseClientUrls = []url.URL{*u}
		cfg.ClientTLSInfo.CertFile = filepath.Join(p.dir, "server.pem")
		cfg.ClientTLSInfo.KeyFile = filepath.Join(p.dir, "server-key.pem")
		cfg.ClientTLSInfo.TrustedCAFile = filepath.Join(p.dir, "ca.pem")
		cfg.ClientTLSInfo.ClientCertAuth = true
	}
}

func clientFiles(t *testing.T, ca *testpki.CA, signer *testpki.CA, notAfter time.Time) map[string][]byte {
	leaf := signer.Leaf(t, testpki.LeafOptions{Name: "etcd-monitor", Client: true, NotAfter: notAfter})
	return map[string][]byte{"ca.crt": ca.PEM, "tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM}
}

// healthy reports why a snapshot does not show every member answering everything ("" when it does).
func healthy(s *Snapshot) string {
	if s.MemberListErr != nil {
		return s.MemberListErr.Error()
	}
	for _, m := range s.Members {
		if m.StatusErr != nil {
			return fmt.Sprintf("%s: %v", m.Name, m.StatusErr)
		}
		for _, p := range m.Probes {
			if p.Err != nil {
				return fmt.Sprintf("%s probe %s: %v", m.Name, p.Kind, p.Err)
			}
		}
	}
	return ""
}

// eventuallyHealthy takes snapshots until one is healthy: after a member restart the kept
// connection needs a reconnect (gRPC backoff up to a second) before it can answer.
func eventuallyHealthy(t *testing.T, tk *Taker, what string) {
	t.Helper()
	var why string
	for range 30 {
		if why = healthy(take(t, tk)); why == "" {
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("%s: no healthy snapshot in 30 attempts, last: %s", what, why)
}

func restart(t *testing.T, c *etcdtest.Cluster) {
	t.Helper()
	for _, m := range c.Members {
		m.Stop()
		m.Restart(t)
	}
}

// lockedBuffer collects log output written by gRPC's handshake goroutines while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Certificates renewed by the atomic symlink swap of a Kubernetes Secret volume, to a new CA that
// etcd now trusts alone: the running Taker presents the new client certificate and verifies the
// server with the new CA, with no restart of the exporter.
func TestTLSFilesSwappedToNewCA(t *testing.T) {
	oldCA := testpki.NewCA(t, "ca-old")
	srv := serverPKI{dir: t.TempDir()}
	srv.write(t, oldCA, oldCA)
	c := etcdtest.Start(t, 1, srv.option())

	vol := testpki.NewSecretVolume(t)
	vol.Update(clientFiles(t, oldCA, oldCA, time.Time{}))
	conn := etcdconn.Config{
		Endpoints: c.Endpoints(),
		CAFile:    vol.Path("ca.crt"), CertFile: vol.Path("tls.crt"), KeyFile: vol.Path("tls.key"),
	}
	tk, err := NewTaker(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()
	if why := healthy(take(t, tk)); why != "" {
		t.Fatalf("before rotation: %s", why)
	}

	// A copy of the old files, to show below that they no longer work.
	oldDir := t.TempDir()
	for _, name := range []string{"ca.crt", "tls.crt", "tls.key"} {
		b, err := os.ReadFile(vol.Path(name))
		if err != nil {
			t.Fatal(err)
		}
		testpki.WriteFile(t, filepath.Join(oldDir, name), b)
	}

	newCA := testpki.NewCA(t, "ca-new")
	srv.write(t, newCA, newCA)
	vol.Update(clientFiles(t, newCA, newCA, time.Time{}))
	restart(t, c)

	stale, err := NewTaker(etcdconn.Config{
		Endpoints: c.Endpoints(),
		CAFile:    filepath.Join(oldDir, "ca.crt"), CertFile: filepath.Join(oldDir, "tls.crt"), KeyFile: filepath.Join(oldDir, "tls.key"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stale.Close()
	if healthy(take(t, stale)) == "" {
		t.Fatal("the old files still work after the rotation: the test proves nothing")
	}
	eventuallyHealthy(t, tk, "after the swap to the new CA")
}

// A client certificate renewed in place (as kubeadm does) before the old one expires: once the old
// one has expired, new connections use the renewed one.
func TestClientCertificateRenewedInPlace(t *testing.T) {
	ca := testpki.NewCA(t, "ca")
	srv := serverPKI{dir: t.TempDir()}
	srv.write(t, ca, ca)
	c := etcdtest.Start(t, 1, srv.option())

	dir := t.TempDir()
	expiry := time.Now().Add(3 * time.Second)
	files := clientFiles(t, ca, ca, expiry)
	for name, b := range files {
		testpki.WriteFile(t, filepath.Join(dir, name), b)
	}
	tk, err := NewTaker(etcdconn.Config{
		Endpoints: c.Endpoints(),
		CAFile:    filepath.Join(dir, "ca.crt"), CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()
	if why := healthy(take(t, tk)); why != "" {
		t.Fatalf("before renewal: %s", why)
	}
	renewed := clientFiles(t, ca, ca, time.Time{})
	testpki.WriteFile(t, filepath.Join(dir, "tls.crt"), renewed["tls.crt"])
	testpki.WriteFile(t, filepath.Join(dir, "tls.key"), renewed["tls.key"])
	time.Sleep(time.Until(expiry) + 100*time.Millisecond)
	// etcd checks a client certificate at the handshake only: restart it to force new connections.
	restart(t, c)
	eventuallyHealthy(t, tk, "after the old certificate expired")
}

// A rotation to a CA that did not sign the server's certificate is refused, as at start-up.
func TestRotatedWrongCAIsRefused(t *testing.T) {
	ca := testpki.NewCA(t, "ca")
	srv := serverPKI{dir: t.TempDir()}
	srv.write(t, ca, ca)
	c := etcdtest.Start(t, 1, srv.option())
	dir := t.TempDir()
	for name, b := range clientFiles(t, ca, ca, time.Time{}) {
		testpki.WriteFile(t, filepath.Join(dir, name), b)
	}
	tk, err := NewTaker(etcdconn.Config{
		Endpoints: c.Endpoints(),
		CAFile:    filepath.Join(dir, "ca.crt"), CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()
	if why := healthy(take(t, tk)); why != "" {
		t.Fatalf("before rotation: %s", why)
	}
	testpki.WriteFile(t, filepath.Join(dir, "ca.crt"), testpki.NewCA(t, "ca-unrelated").PEM)
	restart(t, c)
	for i := range 10 {
		if healthy(take(t, tk)) == "" {
			t.Fatalf("snapshot %d after the CA file changed to an unrelated CA is healthy: the server was not verified with the current CA", i)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A file that turns bad (a half-written renewal, a wrong key) keeps the last good certificate and
// CA in use, and says so in the log.
func TestBadRotatedFilesKeepLastGood(t *testing.T) {
	ca := testpki.NewCA(t, "ca")
	srv := serverPKI{dir: t.TempDir()}
	srv.write(t, ca, ca)
	c := etcdtest.Start(t, 1, srv.option())
	dir := t.TempDir()
	for name, b := range clientFiles(t, ca, ca, time.Time{}) {
		testpki.WriteFile(t, filepath.Join(dir, name), b)
	}
	logs := &lockedBuffer{}
	tk, err := NewTaker(etcdconn.Config{
		Endpoints: c.Endpoints(),
		CAFile:    filepath.Join(dir, "ca.crt"), CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"),
	}, WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()
	if why := healthy(take(t, tk)); why != "" {
		t.Fatalf("before rotation: %s", why)
	}
	// A key that does not match the certificate, and a CA file cut short.
	other := clientFiles(t, ca, ca, time.Time{})
	testpki.WriteFile(t, filepath.Join(dir, "tls.key"), other["tls.key"])
	testpki.WriteFile(t, filepath.Join(dir, "ca.crt"), ca.PEM[:len(ca.PEM)/2])
	restart(t, c)
	eventuallyHealthy(t, tk, "with bad files on disk")
	for _, want := range []string{"keeping the last good etcd client certificate", "keeping the last good etcd CA"} {
		if n := strings.Count(logs.String(), want); n != 1 {
			t.Errorf("log has %q %d times, want once:\n%s", want, n, logs)
		}
	}
}

// The password renewed in its file after the user's password was changed in etcd: the Taker
// rebuilds its clients (clientv3 keeps the password per client) and the next snapshot succeeds.
func TestPasswordFileRotated(t *testing.T) {
	c := etcdtest.Start(t, 1)
	admin := etcdconn.Config{Endpoints: c.Endpoints()}
	cli, err := etcdconn.New(admin, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	steps := []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.UserAdd(ctx, "monitor", "first"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	}
	for i, s := range steps {
		if err := s(); err != nil {
			t.Fatalf("auth setup step %d: %v", i, err)
		}
	}
	pwFile := filepath.Join(t.TempDir(), "password")
	testpki.WriteFile(t, pwFile, []byte("first\n"))
	logs := &lockedBuffer{}
	tk, err := NewTaker(etcdconn.Config{Endpoints: c.Endpoints(), Username: "monitor", PasswordFile: pwFile},
		WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()
	if why := healthy(take(t, tk)); why != "" {
		t.Fatalf("before the change: %s", why)
	}

	root, err := etcdconn.New(etcdconn.Config{Endpoints: c.Endpoints(), Username: "root", Password: "rootpw"}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if _, err := root.UserChangePassword(ctx, "monitor", "second"); err != nil {
		t.Fatal(err)
	}
	testpki.WriteFile(t, pwFile, []byte("second\n"))
	if why := healthy(take(t, tk)); why != "" {
		t.Fatalf("after the change: %s", why)
	}

	// An empty file (a renewal half done) keeps the last good password.
	testpki.WriteFile(t, pwFile, nil)
	for i := range 3 {
		if why := healthy(take(t, tk)); why != "" {
			t.Fatalf("snapshot %d with an empty password file: %s", i, why)
		}
	}
	if n := strings.Count(logs.String(), "keeping the last good etcd password"); n != 1 {
		t.Errorf("log has the kept-password warning %d times, want once:\n%s", n, logs)
	}
}
