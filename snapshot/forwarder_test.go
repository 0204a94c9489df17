package snapshot

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// forwarder is a loopback TCP forwarder standing in for a VIP, a NAT or a port-forward: each
// accepted connection is piped to the first target that accepts it. It counts the connections it
// accepted so that a test can tell how many the exporter opened.
type forwarder struct {
	ln       net.Listener
	accepted atomic.Int64

	mu      sync.Mutex
	targets []string
	conns   map[net.Conn]struct{}
	closed  bool
	wg      sync.WaitGroup
}

// newForwarder listens on a free loopback port; it is closed, with every connection it piped, when
// the test ends.
func newForwarder(t *testing.T, targets ...string) *forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{ln: ln, targets: targets, conns: map[net.Conn]struct{}{}}
	f.wg.Go(f.serve)
	t.Cleanup(f.close)
	return f
}

// URL is the forwarder's address as an etcd client URL.
func (f *forwarder) URL() string { return "http://" + f.ln.Addr().String() }

func (f *forwarder) setTargets(targets ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.targets = targets
}

// track records a connection to close at the end; false when the forwarder is already closed.
func (f *forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forwarder) serve() {
	for {
		in, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.accepted.Add(1)
		if !f.track(in) {
			_ = in.Close()
			return
		}
		f.wg.Go(func() { f.pipe(in) })
	}
}

func (f *forwarder) pipe(in net.Conn) {
	defer in.Close()
	f.mu.Lock()
	targets := append([]string(nil), f.targets...)
	f.mu.Unlock()
	var out net.Conn
	for _, target := range targets {
		c, err := net.DialTimeout("tcp", target, 2*time.Second)
		if err == nil {
			out = c
			break
		}
	}
	if out == nil || !f.track(out) {
		if out != nil {
			_ = out.Close()
		}
		return
	}
	defer out.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(out, in); done <- struct{}{} }()
	go func() { _, _ = io.Copy(in, out); done <- struct{}{} }()
	<-done
	// Closing both ends ends the other copy as well.
	_ = in.Close()
	_ = out.Close()
	<-done
}

func (f *forwarder) close() {
	_ = f.ln.Close()
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}
