package certcheck

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/etcd-monitor/etcd-monitor/internal/certgen"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

var (
	servingAfter = certgen.At(3 * 24 * time.Hour)
	peerAfter    = certgen.At(5 * 24 * time.Hour)
)

func at(d time.Duration) time.Time { return certgen.At(d) }

// newPKI: member i serves serial 100+i until servingAfter and peers with serial 200+i until peerAfter.
func newPKI(t *testing.T, members int) *certgen.EtcdPKI {
	t.Helper()
	return certgen.NewEtcdPKI(t, members,
		func(i int) certgen.Spec { return certgen.ServingSpec(int64(100+i), at(-time.Hour), servingAfter) },
		func(i int) certgen.Spec { return certgen.PeerSpec(int64(200+i), at(-time.Hour), peerAfter) })
}

func targetsOf(t *testing.T, c *etcdtest.Cluster) []Target {
	t.Helper()
	var out []Target
	for _, m := range c.Members {
		for _, u := range []struct{ l, url string }{{ListenerClient, m.ClientURL}, {ListenerPeer, m.PeerURL()}} {
			tg, ok := TargetFor(m.ID(), m.Name, u.l, u.url, "", true)
			if !ok {
				t.Fatalf("no target for %s", u.url)
			}
			out = append(out, tg)
		}
	}
	return out
}

// TestReadChainClientAndPeer reads the exact certificates served on a member's client and peer
// listeners, both of which require a client certificate the reader does not have.
func TestReadChainClientAndPeer(t *testing.T) {
	p := newPKI(t, 1)
	c := p.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, tg := range targetsOf(t, c) {
		chain, err := ReadChain(ctx, tg.Address, tg.ServerName)
		if err != nil {
			t.Fatalf("%s: %v", tg.Listener, err)
		}
		want := p.Serving[0].Cert
		if tg.Listener == ListenerPeer {
			want = p.Peer[0].Cert
		}
		if len(chain) != 1 || !chain[0].NotAfter.Equal(want.NotAfter) || chain[0].SerialNumber.Cmp(want.SerialNumber) != 0 {
			t.Errorf("%s listener: got %d certificates, first serial %v not after %v; want serial %v not after %v",
				tg.Listener, len(chain), chain[0].SerialNumber, chain[0].NotAfter, want.SerialNumber, want.NotAfter)
		}
	}
}

// TestCheckerSeesRenewalInPlace: certificate files replaced on a running member are what the next
// check reports, and not before it.
func TestCheckerSeesRenewalInPlace(t *testing.T) {
	p := newPKI(t, 1)
	c := p.Start(t)
	const interval = 300 * time.Millisecond
	ch := New(Config{Interval: interval, CAFile: p.CAFile, CertFile: p.ClientCert})
	defer ch.Close()
	targets := targetsOf(t, c)
	result := func() *Result {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r := ch.Result(ctx, targets, 5*time.Second)
		if r == nil {
			t.Fatal("no result")
		}
		return r
	}
	serials := func(r *Result) (client, peer int64) {
		for _, l := range r.Listeners {
			if l.Err != nil {
				t.Fatalf("%s: %v", l.Listener, l.Err)
			}
			if l.Verification != Verified {
				t.Errorf("%s: not verified: %v", l.Listener, l.VerifyErr)
			}
			if l.Listener == ListenerClient {
				client = l.Chain[0].SerialNumber.Int64()
			} else {
				peer = l.Chain[0].SerialNumber.Int64()
			}
		}
		return client, peer
	}
	first := result()
	if cs, ps := serials(first); cs != 100 || ps != 200 {
		t.Fatalf("serials before renewal %d, %d; want 100, 200", cs, ps)
	}

	renewedAfter := at(90 * 24 * time.Hour)
	p.CA.Issue(t, certgen.ServingSpec(300, at(-time.Minute), renewedAfter)).Write(t, p.Dir, "server0")
	p.CA.Issue(t, certgen.PeerSpec(400, at(-time.Minute), renewedAfter)).Write(t, p.Dir, "peer0")

	if r := result(); r != first {
		t.Error("a result younger than the interval was not served as is")
	}
	time.Sleep(interval)
	// The caller that finds the result stale gets it once more and starts the check; the callers
	// after it get the new result once the check is done.
	if r := result(); r != first {
		t.Error("a stale result was not served while its check ran")
	}
	second := first
	for i := 0; i < 100 && second == first; i++ {
		time.Sleep(20 * time.Millisecond)
		second = result()
	}
	if cs, ps := serials(second); cs != 300 || ps != 400 {
		t.Errorf("serials after renewal %d, %d; want 300, 400", cs, ps)
	}
	for _, l := range second.Listeners {
		if !l.Chain[0].NotAfter.Equal(renewedAfter) {
			t.Errorf("%s: not after %v, want %v", l.Listener, l.Chain[0].NotAfter, renewedAfter)
		}
	}
	if !second.Time.After(first.Time) {
		t.Errorf("check time did not move: %v then %v", first.Time, second.Time)
	}
}

// TestVerification: a chain verifies only against the CA that signed it and for a name it holds.
func TestVerification(t *testing.T) {
	p := newPKI(t, 1)
	c := p.Start(t)
	other := certgen.NewCA(t, "other-ca", 9, at(-time.Hour), at(time.Hour))
	otherFile := filepath.Join(t.TempDir(), "other.pem")
	certgen.WriteFile(t, otherFile, other.PEM)
	client := targetsOf(t, c)[0]
	wrongName := client
	wrongName.ServerName = "etcd.example.com"

	cases := []struct {
		name   string
		cfg    Config
		target Target
		want   Verification
		file   Verification
	}{
		{"right CA", Config{CAFile: p.CAFile, CertFile: p.ClientCert}, client, Verified, Verified},
		{"other CA", Config{CAFile: otherFile, CertFile: p.ClientCert}, client, NotVerified, NotVerified},
		{"name not in certificate", Config{CAFile: p.CAFile, CertFile: p.ClientCert}, wrongName, NotVerified, Verified},
		{"verification off", Config{SkipVerify: true, CertFile: p.ClientCert}, client, VerifySkipped, VerifySkipped},
	}
	for _, tc := range cases {
		ch := New(tc.cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r := ch.Result(ctx, []Target{tc.target}, 5*time.Second)
		cancel()
		ch.Close()
		if r == nil || r.Listeners[0].Err != nil {
			t.Fatalf("%s: %+v", tc.name, r)
		}
		if got := r.Listeners[0].Verification; got != tc.want {
			t.Errorf("%s: chain verification %v (%v), want %v", tc.name, got, r.Listeners[0].VerifyErr, tc.want)
		}
		if got := r.Files[0].Verification; r.Files[0].Kind != FileCert || got != tc.file {
			t.Errorf("%s: %s file verification %v (%v), want %v", tc.name, r.Files[0].Kind, got, r.Files[0].VerifyErr, tc.file)
		}
	}
}

// TestEarliestInChain: an intermediate that expires before the leaf is the chain's earliest.
func TestEarliestInChain(t *testing.T) {
	p := newPKI(t, 1)
	inter := p.CA.Intermediate(t, "etcd-intermediate", 50, at(-time.Hour), at(2*24*time.Hour))
	inter.Issue(t, certgen.ServingSpec(101, at(-time.Hour), at(20*24*time.Hour))).Write(t, p.Dir, "server0")
	c := p.Start(t)
	ch := New(Config{CAFile: p.CAFile})
	defer ch.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r := ch.Result(ctx, targetsOf(t, c)[:1], 5*time.Second)
	l := r.Listeners[0]
	if l.Err != nil || len(l.Chain) != 2 {
		t.Fatalf("chain %d certificates, %v", len(l.Chain), l.Err)
	}
	if e := Earliest(l.Chain); !e.NotAfter.Equal(inter.Cert.NotAfter) || e.Subject.CommonName != "etcd-intermediate" {
		t.Errorf("earliest %s %v, want the intermediate's %v", e.Subject.CommonName, e.NotAfter, inter.Cert.NotAfter)
	}
	if l.Verification != Verified {
		t.Errorf("chain through the intermediate does not verify: %v", l.VerifyErr)
	}
}

// TestCheckBoundedByDeadline: a listener that accepts connections and never answers costs the
// caller's deadline, not more, and leaves no goroutine behind once the checker is closed.
func TestCheckBoundedByDeadline(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 4)
	go func() {
		for range 4 {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held <- c
		}
	}()
	tg, _ := TargetFor(1, "hung", ListenerClient, l.Addr().String(), "", true)
	ch := New(Config{SkipVerify: true})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	start := time.Now()
	r := ch.Result(ctx, []Target{tg}, 300*time.Millisecond)
	cancel()
	elapsed := time.Since(start)
	if elapsed > 3*time.Second {
		t.Errorf("Result took %v under a 300ms deadline", elapsed)
	}
	// The caller may return at its deadline a moment before the check stores its result.
	if r != nil && r.Listeners[0].Err == nil {
		t.Errorf("a hung listener gave a chain: %+v", r.Listeners[0])
	}
	ch.Close()
	_ = l.Close()
	close(held)
	for c := range held {
		_ = c.Close()
	}
	goleak.VerifyNone(t, ignore)
}

// TestTargetFor: plain-text URLs have no certificate; a bare host:port follows the TLS setting.
func TestTargetFor(t *testing.T) {
	for _, tc := range []struct {
		url    string
		tls    bool
		ok     bool
		server string
	}{
		{"https://10.0.0.1:2379", false, true, "10.0.0.1"},
		{"http://10.0.0.1:2379", true, false, ""},
		{"10.0.0.1:2379", true, true, "10.0.0.1"},
		{"10.0.0.1:2379", false, false, ""},
		{"unix://etcd.sock", true, false, ""},
	} {
		tg, ok := TargetFor(1, "m", ListenerClient, tc.url, "", tc.tls)
		if ok != tc.ok || tg.ServerName != tc.server {
			t.Errorf("TargetFor(%q, tls=%v) = %+v, %v", tc.url, tc.tls, tg, ok)
		}
	}
	if tg, _ := TargetFor(1, "m", ListenerClient, "https://10.0.0.1:2379", "etcd.example.com", false); tg.ServerName != "etcd.example.com" {
		t.Errorf("server name override ignored: %+v", tg)
	}
}

// TestCheckOutlivesALateCaller: a caller whose deadline has already passed (its snapshot used it
// all, waiting for a hung member) gets the previous result at once, but the check it starts has a
// budget of its own and is what the next caller gets.
func TestCheckOutlivesALateCaller(t *testing.T) {
	p := newPKI(t, 1)
	c := p.Start(t)
	ch := New(Config{CAFile: p.CAFile})
	defer ch.Close()
	late, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	targets := targetsOf(t, c)
	if r := ch.Result(late, targets, 5*time.Second); r != nil && r.ok() {
		t.Logf("the check finished before the late caller returned")
	}
	ctx, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	r := ch.Result(ctx, targets, 5*time.Second)
	if r == nil {
		t.Fatal("no result for the caller after a late one")
	}
	for _, l := range r.Listeners {
		if l.Err != nil || len(l.Chain) == 0 {
			t.Errorf("%s: the check started by a late caller failed: %v", l.Listener, l.Err)
		}
	}
}

// TestRefreshDoesNotWait: once there is a result, a caller that finds it stale gets it at once
// while the new check runs; a listener that never answers (a firewalled peer port) costs the
// scrapes nothing after the first.
func TestRefreshDoesNotWait(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	held := make(chan net.Conn, 8)
	go func() {
		for range 8 {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held <- c
		}
	}()
	defer func() {
		_ = l.Close()
		close(held)
		for c := range held {
			_ = c.Close()
		}
	}()
	tg, _ := TargetFor(1, "hung", ListenerPeer, l.Addr().String(), "", true)
	ch := New(Config{SkipVerify: true, Interval: time.Millisecond})
	defer ch.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	first := ch.Result(ctx, []Target{tg}, 100*time.Millisecond)
	if first == nil || first.Listeners[0].Err == nil {
		t.Fatalf("first result %+v: want the hung listener's error", first)
	}
	time.Sleep(2 * time.Millisecond) // stale: the next call starts a check
	// A caller that waited would get the new result, after the check's 10 s.
	if r := ch.Result(context.Background(), []Target{tg}, 10*time.Second); r != first {
		t.Errorf("a stale result was not served at once: %+v", r)
	}
	ch.mu.Lock()
	inFlight := ch.running != nil
	ch.mu.Unlock()
	if !inFlight {
		t.Error("no check in flight: the caller waited for it")
	}
}
