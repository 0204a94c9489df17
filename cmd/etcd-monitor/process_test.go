package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/internal/toolbin"
)

// syncBuffer collects a child's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// exporterProcess is the built etcd-monitor binary running the exporter.
type exporterProcess struct {
	cmd    *exec.Cmd
	url    string
	output *syncBuffer
	exited chan struct{} // closed when the process has exited; err is then set
	err    error
}

// startExporter runs the built binary with args and a free listen address, and waits (bounded)
// until it serves /-/healthy. The process is killed at the end of the test if still running.
func startExporter(t *testing.T, args ...string) *exporterProcess {
	t.Helper()
	bin := toolbin.Path(t, "etcd-monitor", "ETCD_MONITOR_BIN")
	addr := fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))
	p := &exporterProcess{url: "http://" + addr, output: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, append(args, "--web.listen-address="+addr)...)
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	client := &http.Client{Timeout: time.Second}
	for i := 0; ; i++ {
		select {
		case <-p.exited:
			t.Fatalf("etcd-monitor exited before serving: %v\n%s", p.err, p.output)
		default:
		}
		resp, err := client.Get(p.url + "/-/healthy")
		if err == nil {
			resp.Body.Close()
			return p
		}
		if i == 100 {
			t.Fatalf("etcd-monitor does not serve %s: %v\n%s", p.url, err, p.output)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// get fetches path from the exporter with a client-side bound.
func (p *exporterProcess) get(t *testing.T, path string, timeout time.Duration) (int, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.url+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// signalAndWait sends sig and waits up to bound for the process to exit, returning its exit code.
func (p *exporterProcess) signalAndWait(t *testing.T, sig syscall.Signal, bound time.Duration) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(bound):
		t.Fatalf("etcd-monitor still running %s after %s\n%s", bound, sig, p.output)
		return -1
	}
}

// runBinary runs the built binary to completion (bounded) and returns its exit code and output.
func runBinary(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	bin := toolbin.Path(t, "etcd-monitor", "ETCD_MONITOR_BIN")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("etcd-monitor %q did not exit within 10s\n%s%s", args, stdout.String(), stderr.String())
	}
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// freezer is a loopback TCP forwarder to an etcd endpoint that can be frozen: it then keeps every
// connection open and passes nothing on, as a SIGSTOPped member behaves. gRPC calls on a
// connection made before the freeze wait for their deadline (a listener that never answers at
// all is not enough: the gRPC handshake fails within a second).
type freezer struct {
	ln       net.Listener
	target   string
	frozen   chan struct{} // closed by freeze
	once     sync.Once
	held     chan struct{} // receives (never blocking) once per gRPC call made while frozen
	stopping chan struct{}
	wg       sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn
}

func startFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target, frozen: make(chan struct{}), held: make(chan struct{}, 100), stopping: make(chan struct{})}
	f.wg.Go(f.accept)
	t.Cleanup(f.close)
	return f
}

func (f *freezer) addr() string { return f.ln.Addr().String() }

func (f *freezer) freeze() { f.once.Do(func() { close(f.frozen) }) }

func (f *freezer) accept() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", f.target)
		if err != nil {
			c.Close()
			continue
		}
		f.mu.Lock()
		select {
		case <-f.stopping:
			f.mu.Unlock()
			c.Close()
			up.Close()
			return
		default:
		}
		f.conns = append(f.conns, c, up)
		f.mu.Unlock()
		f.wg.Go(func() { f.pipe(up, c, newH2Calls()) })
		f.wg.Go(func() { f.pipe(c, up, nil) })
	}
}

// pipe copies src to dst until the freeze, then drops everything. calls counts the gRPC calls
// the exporter starts (HTTP/2 HEADERS frames) on the exporter's side of the connection: each call
// made while frozen is reported on held.
func (f *freezer) pipe(dst, src net.Conn, calls *h2Calls) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			started := 0
			if calls != nil {
				started = calls.feed(buf[:n])
			}
			select {
			case <-f.frozen:
				for ; started > 0; started-- {
					select {
					case f.held <- struct{}{}:
					default:
					}
				}
				continue
			default:
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// h2Calls follows the HTTP/2 frames a client sends (RFC 9113 section 4.1: a 9-byte header whose
// first 3 bytes are the payload length and 4th the type) to count HEADERS frames, one per call.
type h2Calls struct {
	preface int // bytes of the client connection preface still to skip
	hdr     [9]byte
	hn      int
	skip    int // payload bytes still to skip
}

func newH2Calls() *h2Calls { return &h2Calls{preface: len("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")} }

func (c *h2Calls) feed(b []byte) (headers int) {
	for len(b) > 0 {
		switch {
		case c.preface > 0:
			n := min(c.preface, len(b))
			c.preface, b = c.preface-n, b[n:]
		case c.skip > 0:
			n := min(c.skip, len(b))
			c.skip, b = c.skip-n, b[n:]
		default:
			n := copy(c.hdr[c.hn:], b)
			c.hn, b = c.hn+n, b[n:]
			if c.hn == len(c.hdr) {
				c.hn = 0
				c.skip = int(c.hdr[0])<<16 | int(c.hdr[1])<<8 | int(c.hdr[2])
				if c.hdr[3] == 0x1 {
					headers++
				}
			}
		}
	}
	return headers
}

func (f *freezer) close() {
	f.ln.Close()
	close(f.stopping)
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}
