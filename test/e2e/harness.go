//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/internal/freeport"
)

// Binary names in <repo>/bin and the variables that point elsewhere (the same as tools/build.sh).
const (
	BinEtcd         = "etcd"
	BinEtcdctl      = "etcdctl"
	BinEtcd35       = "etcd-3.5"
	BinBenchmark    = "etcd-benchmark"
	BinPrometheus   = "prometheus"
	BinPromtool     = "promtool"
	BinAlertmanager = "alertmanager"
	BinAmtool       = "amtool"
	BinPushgateway  = "pushgateway"
	BinExporter     = "etcd-monitor"
)

var binaryVars = map[string]string{
	BinEtcd:         "ETCD_BIN",
	BinEtcdctl:      "ETCDCTL_BIN",
	BinEtcd35:       "ETCD35_BIN",
	BinBenchmark:    "ETCD_BENCHMARK_BIN",
	BinPrometheus:   "PROMETHEUS_BIN",
	BinPromtool:     "PROMTOOL_BIN",
	BinAlertmanager: "ALERTMANAGER_BIN",
	BinAmtool:       "AMTOOL_BIN",
	BinPushgateway:  "PUSHGATEWAY_BIN",
	BinExporter:     "ETCD_MONITOR_BIN",
}

// Bounds for every wait in the harness; scenario waits pass their own.
const (
	startTimeout = 60 * time.Second // a process answering its readiness endpoint
	stopTimeout  = 10 * time.Second // SIGTERM before SIGKILL
	pollInterval = 200 * time.Millisecond
	logTailLines = 150
)

// RepoRoot is the directory holding the root go.mod (found from this file's location).
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("e2e: cannot locate harness source")
	}
	root, err := filepath.Abs(filepath.Join(filepath.Dir(file), "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// Binary returns the path of a tool: the variable naming it if set, else <repo>/bin/<name>.
// A missing binary fails the test with the command that builds it; it never skips silently.
func Binary(t testing.TB, name string) string {
	t.Helper()
	v := binaryVars[name]
	path := os.Getenv(v)
	if path == "" {
		path = filepath.Join(RepoRoot(t), "bin", name)
	}
	st, err := os.Stat(path)
	if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		hint := "make tools"
		if name == BinExporter {
			hint = "make build"
		}
		t.Fatalf("e2e: binary %s not found at %s (run `%s` or set %s)", name, path, hint, v)
	}
	return path
}

// FreePorts returns n distinct loopback ports, free a moment ago and below the kernel's
// ephemeral range, so no outgoing connection takes one before its server binds it.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	return freeport.Take(t, n)
}

// tempRoot holds one directory per test binary, named after its pid. A binary killed by
// `go test -timeout` runs no cleanup (its children die with it through Pdeathsig), so each run
// first removes the directories of runs whose process is gone.
var tempRoot = filepath.Join(os.TempDir(), "etcd-monitor-e2e")

var removeStale sync.Once

func tempDir(t testing.TB) string {
	t.Helper()
	removeStale.Do(func() {
		entries, _ := os.ReadDir(tempRoot)
		for _, ent := range entries {
			pid, err := strconv.Atoi(ent.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			if syscall.Kill(pid, 0) == syscall.ESRCH {
				os.RemoveAll(filepath.Join(tempRoot, ent.Name()))
			}
		}
	})
	base := filepath.Join(tempRoot, strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	dir, err := os.MkdirTemp(base, name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("e2e: removing %s: %v", dir, err)
		}
		os.Remove(base) // only succeeds once the last test of this binary is done
	})
	return dir
}

// Env is one test's workspace: a temp dir for data and logs, and the processes it started.
type Env struct {
	t    testing.TB
	Dir  string
	logs string

	mu    sync.Mutex
	procs []*Process
}

// NewEnv creates the workspace. Cleanup order (t.Cleanup is LIFO): processes are killed first,
// then, on failure, their logs are dumped, then the temp dir is removed.
func NewEnv(t testing.TB) *Env {
	t.Helper()
	dir := tempDir(t)
	e := &Env{t: t, Dir: dir, logs: filepath.Join(dir, "logs")}
	if err := os.MkdirAll(e.logs, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("E2E_DUMP_LOGS") != "" {
			e.dumpLogs()
		}
	})
	t.Cleanup(e.killAll)
	return e
}

// Subdir creates and returns a directory under the workspace.
func (e *Env) Subdir(name string) string {
	e.t.Helper()
	d := filepath.Join(e.Dir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		e.t.Fatal(err)
	}
	return d
}

func (e *Env) killAll() {
	e.mu.Lock()
	procs := append([]*Process(nil), e.procs...)
	e.mu.Unlock()
	for _, p := range procs {
		p.Kill()
	}
}

func (e *Env) dumpLogs() {
	files, _ := filepath.Glob(filepath.Join(e.logs, "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		e.t.Logf("==== %s (last %d lines) ====\n%s", filepath.Base(f), logTailLines, tail(b, logTailLines))
	}
}

func tail(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// WriteFile writes a generated file (configs are kept with the logs so a failure shows them).
func (e *Env) WriteFile(name string, data []byte) string {
	e.t.Helper()
	path := filepath.Join(e.logs, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// Process is one child process; it can be stopped, killed, paused, resumed and started again
// with the same arguments. Its output is appended to <logs>/<name>.log.
type Process struct {
	env  *Env
	Name string
	Path string
	Args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start launches a process in its own process group; it dies with the test binary
// (Pdeathsig) and is killed at cleanup.
func (e *Env) Start(name, path string, args ...string) *Process {
	e.t.Helper()
	p := &Process{env: e, Name: name, Path: path, Args: args}
	if err := p.start(); err != nil {
		e.t.Fatalf("e2e: starting %s: %v", name, err)
	}
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	return p
}

// LogPath is the file that receives the process' stdout and stderr.
func (p *Process) LogPath() string { return filepath.Join(p.env.logs, p.Name+".log") }

func (p *Process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !p.exitedLocked() {
		return fmt.Errorf("%s is already running", p.Name)
	}
	f, err := os.OpenFile(p.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "---- %s start: %s %s\n", time.Now().Format(time.RFC3339Nano), p.Path, strings.Join(p.Args, " "))
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = p.env.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	done := make(chan struct{})
	p.cmd, p.done, p.err = cmd, done, nil
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func (p *Process) exitedLocked() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.exitedLocked() {
		return true, p.err
	}
	return false, nil
}

// Pid is the current process id (0 when not started).
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

func (p *Process) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.exitedLocked() {
		return nil
	}
	// The whole group: the tools fork nothing today, but a stray child must not outlive the test.
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

func (p *Process) wait(d time.Duration) bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// Stop sends SIGTERM (and SIGCONT, in case it is paused) and waits; SIGKILL after stopTimeout.
func (p *Process) Stop() {
	p.env.t.Helper()
	_ = p.signal(syscall.SIGTERM)
	_ = p.signal(syscall.SIGCONT)
	if !p.wait(stopTimeout) {
		p.env.t.Logf("e2e: %s ignored SIGTERM for %s; killing it", p.Name, stopTimeout)
		p.Kill()
	}
}

// Kill sends SIGKILL and waits for the process to be reaped.
func (p *Process) Kill() {
	_ = p.signal(syscall.SIGKILL)
	if !p.wait(stopTimeout) {
		p.env.t.Errorf("e2e: %s (pid %d) survived SIGKILL for %s", p.Name, p.Pid(), stopTimeout)
	}
}

// Pause freezes the process (SIGSTOP): it keeps its sockets and accepts TCP connections,
// but never answers - a hung disk or a frozen VM.
func (p *Process) Pause() {
	p.env.t.Helper()
	if err := p.signal(syscall.SIGSTOP); err != nil {
		p.env.t.Fatalf("e2e: SIGSTOP %s: %v", p.Name, err)
	}
}

// Resume continues a paused process (SIGCONT).
func (p *Process) Resume() {
	p.env.t.Helper()
	if err := p.signal(syscall.SIGCONT); err != nil {
		p.env.t.Fatalf("e2e: SIGCONT %s: %v", p.Name, err)
	}
}

// Restart stops the process if it still runs (SIGTERM, as Stop) and starts it again with the
// same arguments and the same data.
func (p *Process) Restart() {
	p.env.t.Helper()
	if exited, _ := p.Exited(); !exited {
		p.Stop()
	}
	if err := p.start(); err != nil {
		p.env.t.Fatalf("e2e: restarting %s: %v", p.Name, err)
	}
}

// Eventually polls cond every pollInterval until it returns true or timeout passes; then it fails
// the test with what the last call reported. Never a fixed sleep: the wait ends as soon as it can.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for i := 0; ; i++ {
		ok, status := cond()
		if ok {
			return
		}
		last = status
		if time.Now().After(deadline) {
			t.Fatalf("e2e: timed out after %s (%d tries) waiting for %s; last: %s", timeout, i+1, what, last)
		}
		time.Sleep(pollInterval)
	}
}

// httpClient has a short timeout so a hung server never blocks a poll loop.
var httpClient = &http.Client{Timeout: 2 * time.Second}

func httpGet(ctx context.Context, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(http.MaxBytesReader(nil, resp.Body, 16<<20))
	return resp.StatusCode, buf.Bytes(), err
}

// WaitHTTP waits until url answers 200 while p keeps running (a crash fails at once).
func (p *Process) WaitHTTP(url string, timeout time.Duration) {
	p.env.t.Helper()
	Eventually(p.env.t, timeout, p.Name+" at "+url, func() (bool, string) {
		if exited, err := p.Exited(); exited {
			p.env.t.Fatalf("e2e: %s exited while starting: %v (log: %s)", p.Name, err, p.LogPath())
		}
		code, body, err := httpGet(context.Background(), url)
		if err != nil {
			return false, err.Error()
		}
		if code != http.StatusOK {
			return false, fmt.Sprintf("HTTP %d: %.200s", code, body)
		}
		return true, ""
	})
}
