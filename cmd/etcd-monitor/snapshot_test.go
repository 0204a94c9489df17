package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/etcd-monitor/etcd-monitor/backup"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/internal/pushgwtest"
	"github.com/etcd-monitor/etcd-monitor/internal/toolbin"
)

// slowForwarder accepts on a loopback port and forwards to target, passing what the server sends
// at bytesPerSec: a snapshot stream then lasts long enough to be interrupted in its middle.
type slowForwarder struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startSlowForwarder(t *testing.T, target string, bytesPerSec int) *slowForwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &slowForwarder{ln: ln}
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, s)
			f.mu.Unlock()
			f.wg.Go(func() { _, _ = io.Copy(s, c); s.Close() })
			f.wg.Go(func() {
				defer c.Close()
				buf := make([]byte, 16<<10)
				pause := time.Duration(float64(len(buf)) / float64(bytesPerSec) * float64(time.Second))
				for {
					n, err := s.Read(buf)
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
						time.Sleep(pause)
					}
					if err != nil {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

func (f *slowForwarder) URL() string { return "http://" + f.ln.Addr().String() }

// The built binary, signalled in the middle of a snapshot stream, removes its temporary file,
// exits 1 and leaves no file under a final name.
func TestSnapshotSaveBinaryRemovesPartialFileOnSignal(t *testing.T) {
	bin := toolbin.Path(t, "etcd-monitor", "ETCD_MONITOR_BIN")
	listen := fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t))
	lu, _ := url.Parse(listen)
	// 24 MiB of values through a 4 MiB/s link: the stream takes about six seconds.
	fwd := startSlowForwarder(t, lu.Host, 4<<20)
	fu, _ := url.Parse(fwd.URL())
	cl := etcdtest.Start(t, 1, func(_ int, cfg *embed.Config) {
		cfg.UnsafeNoFsync = true
		cfg.ListenClientUrls = []url.URL{*lu}
		cfg.AdvertiseClientUrls = []url.URL{*fu}
	})
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{listen}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	val := strings.Repeat("x", 128<<10)
	for i := range 192 {
		if _, err := cli.Put(ctx, fmt.Sprintf("/big/%03d", i), val); err != nil {
			t.Fatal(err)
		}
	}

	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(bin, "snapshot", "save", "--etcd.endpoints="+cl.Endpoints()[0], "--dir="+dir)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			exited := false
			t.Cleanup(func() {
				if !exited {
					_ = cmd.Process.Kill()
					<-done
				}
			})
			// Signal once a good part of the stream is on disk.
			deadline := time.Now().Add(30 * time.Second)
			for partialSize(t, dir) < 2<<20 {
				select {
				case err := <-done:
					exited = true
					t.Fatalf("save exited before the signal: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
				case <-time.After(20 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("no 2 MiB temporary file within 30 s; stderr:\n%s", &stderr)
				}
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			var werr error
			select {
			case werr = <-done:
				exited = true
			case <-time.After(20 * time.Second):
				t.Fatalf("still running 20 s after %s", sig)
			}
			var ee *exec.ExitError
			if !errors.As(werr, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("exit after %s: %v, want 1\nstderr:\n%s", sig, werr, &stderr)
			}
			if !strings.Contains(stderr.String(), "interrupted") {
				t.Errorf("stderr does not say the save was interrupted:\n%s", &stderr)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 0 {
				t.Errorf("left %v in the directory after %s", entries, sig)
			}
		})
	}
}

// partialSize is the size of the temporary file a save streams into, 0 when there is none.
func partialSize(t *testing.T, dir string) int64 {
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".partial") {
			if fi, err := e.Info(); err == nil {
				return fi.Size()
			}
		}
	}
	return 0
}

// pushed returns job etcd_backup's series of group cluster=<cluster>, by name and result label.
func pushed(t *testing.T, pg, cluster string) map[string]float64 {
	out := map[string]float64{}
	for name, f := range pushgwtest.Families(t, pg) {
		if !strings.HasPrefix(name, "etcd_backup_") {
			continue
		}
		for _, m := range f.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["job"] != backup.PushJob || labels["cluster"] != cluster {
				continue
			}
			key := name
			if r, ok := labels["result"]; ok {
				key += "{" + r + "}"
			}
			out[key] = m.GetGauge().GetValue()
		}
	}
	return out
}

func TestSnapshotSavePushesOutcome(t *testing.T) {
	pg := pushgwtest.Start(t)
	cl := etcdtest.Start(t, 3, func(_ int, cfg *embed.Config) { cfg.UnsafeNoFsync = true })
	eps := "--etcd.endpoints=" + strings.Join(cl.Endpoints(), ",")
	dir := t.TempDir()

	var code int
	out := captureStdout(t, func() {
		code = run([]string{"snapshot", "save", eps, "--dir=" + dir, "--cluster=prod", "--pushgateway.url=" + pg, "--output=json"})
	})
	if code != 0 {
		t.Fatalf("save exited %d:\n%s", code, out)
	}
	var res backup.SaveResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	got := pushed(t, pg, "prod")
	success := got["etcd_backup_last_success_timestamp_seconds"]
	if time.Since(time.Unix(int64(success), 0)) > time.Minute {
		t.Errorf("last success %v is not now; pushed %v", success, got)
	}
	if got["etcd_backup_snapshot_size_bytes"] != float64(res.File.SizeBytes) || got["etcd_backup_snapshot_revision"] != float64(res.File.Revision) || res.File.Revision == 0 {
		t.Errorf("pushed size and revision %v, saved %+v", got, res.File)
	}
	if got["etcd_backup_verification{verified}"] != 1 || got["etcd_backup_verification{mismatch}"] != 0 || got["etcd_backup_verification{corrupt}"] != 0 {
		t.Errorf("verification series %v", got)
	}
	if _, ok := got["etcd_backup_last_failure_timestamp_seconds"]; ok {
		t.Errorf("a success pushed a failure timestamp: %v", got)
	}
	if _, ok := got["etcd_backup_duration_seconds"]; !ok {
		t.Errorf("no duration pushed: %v", got)
	}

	// A failed save pushes its failure and leaves the last success's series in place.
	out = captureStdout(t, func() {
		code = run([]string{"snapshot", "save", eps, "--dir=" + dir, "--cluster=prod", "--pushgateway.url=" + pg, "--member=nobody"})
	})
	if code != 1 {
		t.Fatalf("save from an unknown member exited %d:\n%s", code, out)
	}
	after := pushed(t, pg, "prod")
	if after["etcd_backup_last_success_timestamp_seconds"] != success || after["etcd_backup_snapshot_revision"] != got["etcd_backup_snapshot_revision"] {
		t.Errorf("the failure moved the last success's series: before %v, after %v", got, after)
	}
	if f := after["etcd_backup_last_failure_timestamp_seconds"]; f < success {
		t.Errorf("last failure %v, last success %v: the failure is not newer", f, success)
	}
}

func TestSnapshotVerifyExitCodes(t *testing.T) {
	cl := etcdtest.Start(t, 1, func(_ int, cfg *embed.Config) { cfg.UnsafeNoFsync = true })
	eps := "--etcd.endpoints=" + cl.Endpoints()[0]
	dir := t.TempDir()
	if code := run([]string{"snapshot", "save", eps, "--dir=" + dir}); code != 0 {
		t.Fatalf("save exited %d", code)
	}
	saved, err := backup.List(dir, "etcd")
	if err != nil || len(saved) != 1 {
		t.Fatalf("saved %v, %v", saved, err)
	}
	good := filepath.Join(dir, saved[0].Name)
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(t.TempDir(), "corrupt.db")
	if err := os.WriteFile(corrupt, data[:len(data)-32], 0o600); err != nil {
		t.Fatal(err)
	}

	for name, c := range map[string]struct {
		args []string
		code int
		says string
	}{
		"good file":                {[]string{good}, 0, "INTACT"},
		"good file against etcd":   {[]string{good, "--against-cluster", eps}, 0, "VERIFIED"},
		"corrupt":                  {[]string{corrupt}, 2, "CORRUPT"},
		"missing file":             {[]string{filepath.Join(dir, "missing.db")}, 3, ""},
		"no file":                  {nil, 3, ""},
		"unknown flag":             {[]string{good, "--frobnicate"}, 3, ""},
		"bad output":               {[]string{good, "--output=xml"}, 3, ""},
		"bad endpoints":            {[]string{good, "--against-cluster", "--etcd.endpoints=ftp://x:1"}, 3, ""},
		"cluster down: unverified": {[]string{good, "--against-cluster", "--etcd.endpoints=127.0.0.1:1", "--timeout=2s"}, 1, "UNVERIFIABLE"},
	} {
		t.Run(name, func(t *testing.T) {
			var code int
			out := captureStdout(t, func() { code = run(append([]string{"snapshot", "verify"}, c.args...)) })
			if code != c.code || !strings.Contains(out, c.says) {
				t.Errorf("exit %d, want %d; output:\n%s", code, c.code, out)
			}
		})
	}

	// After the cluster compacted past the file: unverifiable, and said to be because of it.
	cli, err := clientv3.New(clientv3.Config{Endpoints: cl.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Put(ctx, "/later", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	var code int
	out := captureStdout(t, func() { code = run([]string{"snapshot", "verify", good, "--against-cluster", eps, "--output=json"}) })
	var rep verifyReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if code != 1 || rep.Result != backup.ResultCompacted || rep.ExitCode != 1 || !strings.Contains(rep.Reason, "compacted") {
		t.Errorf("after compaction: exit %d, %+v", code, rep)
	}
}

// The exporter's --collector.backup reads the --backup.dir values; without one it refuses to start.
func TestExporterBackupCollectorFlags(t *testing.T) {
	for name, args := range map[string][]string{
		"no directory": {"--collector.backup"},
		"bad glob":     {"--collector.backup", "--backup.dir=/backups/[a"},
	} {
		t.Run(name, func(t *testing.T) {
			if got := run(args); got != 1 {
				t.Errorf("run(%q) = %d, want 1", args, got)
			}
		})
	}

	bin := toolbin.Path(t, "etcd-monitor", "ETCD_MONITOR_BIN")
	dir := t.TempDir()
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	path := filepath.Join(dir, "etcd-20260102T030405Z-rev7.db")
	if err := os.WriteFile(path, make([]byte, 1234), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "--web.listen-address="+addr, "--etcd.endpoints=127.0.0.1:1",
		"--collector.backup", "--backup.dir="+dir, "--no-collector.members", "--no-collector.status",
		"--no-collector.alarms", "--no-collector.probe", "--no-collector.cluster")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	want := []string{
		fmt.Sprintf("etcd_monitor_backup_files{dir=%q} 1", dir),
		fmt.Sprintf("etcd_monitor_backup_newest_file_size_bytes{dir=%q} 1234", dir),
		fmt.Sprintf("etcd_monitor_backup_newest_file_timestamp_seconds{dir=%q} %s", dir, strconv.FormatFloat(float64(mtime.Unix()), 'g', -1, 64)),
	}
	var body string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := client.Get("http://" + addr + "/metrics")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		break
	}
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("/metrics lacks %q; stderr:\n%s\nbody:\n%s", w, &stderr, body)
		}
	}
}
