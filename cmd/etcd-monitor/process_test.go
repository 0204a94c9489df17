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

// hungEndpoint is a loopback listener that accepts connections and never answers: gRPC waits on
// it until its deadline, like on a frozen member.
type hungEndpoint struct {
	ln       net.Listener
	mu       sync.Mutex
	conns    []net.Conn
	accepted chan struct{} // receives once per accepted connection (buffered, never blocks)
	done     chan struct{}
}

func startHungEndpoint(t *testing.T) *hungEndpoint {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hungEndpoint{ln: ln, accepted: make(chan struct{}, 1000), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.conns = append(h.conns, c)
			h.mu.Unlock()
			select {
			case h.accepted <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-h.done
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, c := range h.conns {
			c.Close()
		}
	})
	return h
}

func (h *hungEndpoint) addr() string { return h.ln.Addr().String() }
