package targets

import (
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// forwarder is a loopback TCP forwarder to one etcd endpoint standing in for a cluster's VIP: it
// counts the connections open through it, so that a test sees whether a Taker still holds one.
type forwarder struct {
	ln     net.Listener
	target string
	open   atomic.Int64

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newForwarder(t *testing.T, target string) *forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{ln: ln, target: strings.TrimPrefix(target, "http://"), conns: map[net.Conn]struct{}{}}
	f.wg.Go(f.serve)
	t.Cleanup(f.close)
	return f
}

func (f *forwarder) addr() string { return f.ln.Addr().String() }

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
		if !f.track(in) {
			_ = in.Close()
			return
		}
		f.open.Add(1)
		f.wg.Go(func() {
			defer f.open.Add(-1)
			f.pipe(in)
		})
	}
}

func (f *forwarder) pipe(in net.Conn) {
	defer in.Close()
	out, err := net.DialTimeout("tcp", f.target, 2*time.Second)
	if err != nil {
		return
	}
	if !f.track(out) {
		_ = out.Close()
		return
	}
	defer out.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(out, in); done <- struct{}{} }()
	go func() { _, _ = io.Copy(in, out); done <- struct{}{} }()
	<-done
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

// waitOpen waits (at most 10 s, polling) until cond holds for the number of open connections.
func (f *forwarder) waitOpen(t *testing.T, what string, cond func(int64) bool) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if cond(f.open.Load()) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %d connections open through the forwarder", what, f.open.Load())
}
