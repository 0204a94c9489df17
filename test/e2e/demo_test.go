//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The demo's default ports (demo/demo.env); the test shifts them all with DEMO_PORT_OFFSET.
var demoBasePorts = map[string]int{
	"etcd-0": 2379, "etcd-1": 22379, "etcd-2": 32379,
	"etcd-0-peer": 2380, "etcd-1-peer": 22380, "etcd-2-peer": 32380,
	"etcd-monitor": 9379, "prometheus": 9090, "alertmanager": 9093, "pushgateway": 9091, "logreceiver": 5001,
}

// demoRunTimeout bounds one demo from start to the last assertion; ready takes ~20 s on 2 cores.
const demoRunTimeout = 3 * time.Minute

// TestDemo runs `scripts/demo.sh up` (what `make demo` runs) with its own state directory and
// ports, waits until Prometheus scrapes every target and the first benchmark is in the
// Pushgateway, stops it the two documented ways (make demo-stop, Ctrl-C) and checks that no
// process it started is left.
func TestDemo(t *testing.T) {
	for _, stop := range []string{"make demo-stop", "SIGINT"} {
		t.Run(strings.ReplaceAll(stop, " ", "-"), func(t *testing.T) { runDemo(t, stop) })
	}
}

type demoRun struct {
	t      *testing.T
	root   string
	state  string
	offset int
	env    []string
	cmd    *exec.Cmd
	out    *os.File
	done   chan error
}

func (d *demoRun) port(name string) int { return demoBasePorts[name] + d.offset }

func runDemo(t *testing.T, stop string) {
	root := RepoRoot(t)
	tmp := t.TempDir()
	d := &demoRun{t: t, root: root, state: filepath.Join(tmp, "demo"), offset: freeDemoOffset(t)}
	d.env = append(os.Environ(), "DEMO_DIR="+d.state, "DEMO_PORT_OFFSET="+strconv.Itoa(d.offset))
	for _, name := range []string{BinEtcd, BinEtcdctl, BinPrometheus, BinAlertmanager, BinPushgateway, BinExporter} {
		d.env = append(d.env, binaryVars[name]+"="+Binary(t, name))
	}

	var err error
	d.out, err = os.Create(filepath.Join(tmp, "demo.out"))
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command("bash", filepath.Join(root, "scripts", "demo.sh"), "up")
	d.cmd.Dir = root
	d.cmd.Env = d.env
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	// Its own process group, like a terminal's foreground job: Ctrl-C is SIGINT to the group.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.done = make(chan error, 1)
	go func() { d.done <- d.cmd.Wait() }()
	// Whatever happens below, nothing outlives the test.
	t.Cleanup(d.forceStop)

	deadline := time.Now().Add(demoRunTimeout)
	d.waitReady(time.Until(deadline))

	started := d.demoPids()
	if len(started) < 8 {
		t.Fatalf("demo: %d processes carry the state directory, want at least 8 (3 etcd, etcd-monitor, Prometheus, Alertmanager, Pushgateway, log receiver): %v", len(started), started)
	}
	for _, name := range []string{"etcd-0", "etcd-1", "etcd-2", "etcd-monitor", "prometheus", "alertmanager", "pushgateway", "logreceiver"} {
		b, err := os.ReadFile(filepath.Join(d.state, "run", name+".pid"))
		if err != nil {
			t.Fatalf("demo: pid file of %s: %v", name, err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || !started[pid] {
			t.Fatalf("demo: run/%s.pid = %q is not a live demo process (%v)", name, b, started)
		}
	}

	// A second demo on the same ports refuses with one line and starts nothing.
	d.assertPortClash()

	switch stop {
	case "make demo-stop":
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c := exec.CommandContext(ctx, "make", "-s", "demo-stop")
		c.Dir, c.Env = root, d.env
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("make demo-stop: %v\n%s", err, out)
		}
	case "SIGINT":
		if err := syscall.Kill(-d.cmd.Process.Pid, syscall.SIGINT); err != nil {
			t.Fatalf("SIGINT to the demo: %v", err)
		}
	}
	select {
	case err := <-d.done:
		d.done <- err // forceStop reads it again
		if err != nil {
			t.Fatalf("demo exited with %v after %s; want 0\n%s", err, stop, d.output())
		}
	case <-time.After(time.Minute):
		t.Fatalf("demo still running a minute after %s\n%s", stop, d.output())
	}

	for pid := range started {
		if alive(pid) {
			t.Errorf("demo: pid %d (%s) is still running after %s", pid, cmdline(pid), stop)
		}
	}
	if left := d.demoPids(); len(left) != 0 {
		t.Errorf("demo: processes referencing %s remain after %s: %v", d.state, stop, left)
	}
	for name := range demoBasePorts {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(d.port(name))))
		if err != nil {
			t.Errorf("demo: port %d (%s) still taken after %s: %v", d.port(name), name, stop, err)
			continue
		}
		l.Close()
	}
	if out := d.output(); !strings.Contains(out, "demo: stopped") {
		t.Errorf("demo did not report stopping:\n%s", out)
	}
}

// waitReady: the banner is printed, Prometheus scrapes all five targets (three members'
// /metrics, the exporter, the Pushgateway) and has the rules and Alertmanager, and the
// benchmark's results are in the Pushgateway.
func (d *demoRun) waitReady(timeout time.Duration) {
	t := d.t
	t.Helper()
	prom := fmt.Sprintf("http://127.0.0.1:%d", d.port("prometheus"))
	Eventually(t, timeout, "the demo's banner", func() (bool, string) {
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("demo exited during start (%v):\n%s", err, d.output())
		default:
		}
		return strings.Contains(d.output(), "etcd-monitor demo is running"), "no banner yet"
	})
	out := d.output()
	for _, want := range []string{
		fmt.Sprintf("http://127.0.0.1:%d", d.port("prometheus")),
		fmt.Sprintf("http://127.0.0.1:%d", d.port("alertmanager")),
		fmt.Sprintf("http://127.0.0.1:%d", d.port("pushgateway")),
		fmt.Sprintf("http://127.0.0.1:%d/metrics", d.port("etcd-monitor")),
		"kill $(cat " + filepath.Join(d.state, "run", "etcd-2.pid") + ")",
		"kill $(cat " + filepath.Join(d.state, "run", "etcd-1.pid") + ") $(cat " + filepath.Join(d.state, "run", "etcd-2.pid") + ")",
		"put /demo-fill/",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo banner lacks %q:\n%s", want, out)
		}
	}

	wantTargets := map[string]bool{}
	for _, n := range []string{"etcd-0", "etcd-1", "etcd-2", "etcd-monitor", "pushgateway"} {
		wantTargets[fmt.Sprintf("127.0.0.1:%d", d.port(n))] = true
	}
	Eventually(t, timeout, "every Prometheus target up", func() (bool, string) {
		var r struct {
			Data struct {
				ActiveTargets []struct {
					Labels    map[string]string `json:"labels"`
					Health    string            `json:"health"`
					LastError string            `json:"lastError"`
				} `json:"activeTargets"`
			} `json:"data"`
		}
		if err := getJSON(prom+"/api/v1/targets", &r); err != nil {
			return false, err.Error()
		}
		up := map[string]bool{}
		var status []string
		for _, tg := range r.Data.ActiveTargets {
			status = append(status, tg.Labels["job"]+"/"+tg.Labels["instance"]+"="+tg.Health+" "+tg.LastError)
			if tg.Health == "up" {
				up[tg.Labels["instance"]] = true
			}
		}
		if len(r.Data.ActiveTargets) != len(wantTargets) {
			return false, fmt.Sprintf("%d targets, want %d: %v", len(r.Data.ActiveTargets), len(wantTargets), status)
		}
		for tg := range wantTargets {
			if !up[tg] {
				return false, fmt.Sprintf("%s not up: %v", tg, status)
			}
		}
		return true, ""
	})

	var rules struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name string `json:"name"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := getJSON(prom+"/api/v1/rules", &rules); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, g := range rules.Data.Groups {
		for _, r := range g.Rules {
			found = found || r.Name == "EtcdQuorumLost"
		}
	}
	if !found {
		t.Errorf("Prometheus has not loaded alerts/etcd-monitor.rules.yml: no EtcdQuorumLost in %+v", rules.Data.Groups)
	}
	amURL := fmt.Sprintf("http://127.0.0.1:%d/api/v2/alerts", d.port("alertmanager"))
	Eventually(t, timeout, "Prometheus sending to the demo's Alertmanager", func() (bool, string) {
		var r struct {
			Data struct {
				Active []struct {
					URL string `json:"url"`
				} `json:"activeAlertmanagers"`
			} `json:"data"`
		}
		if err := getJSON(prom+"/api/v1/alertmanagers", &r); err != nil {
			return false, err.Error()
		}
		return len(r.Data.Active) == 1 && r.Data.Active[0].URL == amURL, fmt.Sprintf("%+v", r.Data.Active)
	})

	pgw := fmt.Sprintf("http://127.0.0.1:%d/api/v1/metrics", d.port("pushgateway"))
	// pushed reports whether the Pushgateway holds a series named prefix* with every label in want.
	pushed := func(prefix string, want map[string]string) (bool, string) {
		var r struct {
			Data []map[string]json.RawMessage `json:"data"`
		}
		if err := getJSON(pgw, &r); err != nil {
			return false, err.Error()
		}
		for _, group := range r.Data {
			for name, raw := range group {
				if !strings.HasPrefix(name, prefix) {
					continue
				}
				var fam struct {
					Metrics []struct {
						Labels map[string]string `json:"labels"`
					} `json:"metrics"`
				}
				if json.Unmarshal(raw, &fam) != nil {
					continue
				}
				for _, m := range fam.Metrics {
					match := true
					for k, v := range want {
						match = match && m.Labels[k] == v
					}
					if match {
						return true, ""
					}
				}
			}
		}
		return false, fmt.Sprintf("%d groups, no %s* with %v", len(r.Data), prefix, want)
	}
	Eventually(t, timeout, "the benchmark's results in the Pushgateway", func() (bool, string) {
		return pushed("etcd_benchmark_", map[string]string{"job": "etcd_benchmark", "run": "demo"})
	})
	// The demo's first backup: pushed by snapshot save, and its file seen by the backup collector.
	Eventually(t, timeout, "the first backup in the Pushgateway", func() (bool, string) {
		return pushed("etcd_backup_last_success_timestamp_seconds", map[string]string{"job": "etcd_backup", "cluster": "demo"})
	})
	exporterMetrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", d.port("etcd-monitor"))
	Eventually(t, timeout, "the backup collector sees the snapshot file", func() (bool, string) {
		body, err := getText(exporterMetrics)
		if err != nil {
			return false, err.Error()
		}
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "etcd_monitor_backup_files{") && strings.HasSuffix(line, " 1") {
				return true, ""
			}
		}
		return false, "no etcd_monitor_backup_files 1"
	})
}

// assertPortClash starts a second demo on the same ports (in another state directory): it must
// exit non-zero with a one-line error naming a port, before starting anything.
func (d *demoRun) assertPortClash() {
	t := d.t
	t.Helper()
	other := filepath.Join(t.TempDir(), "other")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, "bash", filepath.Join(d.root, "scripts", "demo.sh"), "up")
	c.Dir = d.root
	c.Env = append(d.env, "DEMO_DIR="+other)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("second demo on taken ports: %v, want a non-zero exit\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	msg := strings.TrimSpace(stderr.String())
	if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "port ") || !strings.Contains(msg, "in use") {
		t.Errorf("second demo: stderr %q, want one line naming the port in use", msg)
	}
	if _, err := os.Stat(filepath.Join(other, "run")); err == nil {
		t.Errorf("second demo created %s/run although it refused to start", other)
	}
}

func (d *demoRun) output() string {
	b, _ := os.ReadFile(d.out.Name())
	return string(b)
}

// demoPids: every live process whose command line or environment names the state directory
// (scripts/demo.sh marks each process it starts with EM_DEMO_STATE=<state dir>).
func (d *demoRun) demoPids() map[int]bool {
	pids := map[int]bool{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		d.t.Fatal(err)
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || !alive(pid) {
			continue
		}
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile(filepath.Join("/proc", e.Name(), f))
			if err == nil && bytes.Contains(b, []byte(d.state)) {
				pids[pid] = true
			}
		}
	}
	return pids
}

// forceStop runs at cleanup: the script's own stop, then SIGKILL to whatever still names the
// state directory, so a failing run leaves nothing behind either.
func (d *demoRun) forceStop() {
	select {
	case err := <-d.done:
		d.done <- err
	default:
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGINT)
		select {
		case <-d.done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	for pid := range d.demoPids() {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	d.out.Close()
	if d.t.Failed() {
		d.t.Logf("demo output:\n%s", tail([]byte(d.output()), logTailLines))
		for _, name := range []string{"etcd-0", "etcd-monitor", "prometheus", "alertmanager", "pushgateway", "logreceiver"} {
			if b, err := os.ReadFile(filepath.Join(d.state, "logs", name+".log")); err == nil {
				d.t.Logf("%s.log:\n%s", name, tail(b, 30))
			}
		}
	}
}

// freeDemoOffset picks a DEMO_PORT_OFFSET whose eleven ports are all free now (bounded tries),
// keeping every port below the kernel's ephemeral range so that no outgoing connection (ours or
// another test's) can take one between this check and the demo's listen.
func freeDemoOffset(t *testing.T) int {
	t.Helper()
	ephemeralLow := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				ephemeralLow = n
			}
		}
	}
	maxBase := 0
	for _, p := range demoBasePorts {
		maxBase = max(maxBase, p)
	}
	// Offset 0 is the default a developer's own `make demo` uses; never take it.
	span := ephemeralLow - 1 - maxBase
	if span < 1 {
		span = 27000 // an unusual ephemeral range: accept the small risk
	}
	for range 20 {
		offset := 1 + rand.IntN(span)
		free := true
		for _, p := range demoBasePorts {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+offset)))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if free {
			return offset
		}
	}
	t.Fatal("e2e: no port offset with all eleven demo ports free in 20 tries")
	return 0
}

// alive: the process exists and is not a zombie waiting for a parent that is not us.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name, which may itself hold spaces.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(string(bytes.TrimRight(b, "\x00")), "\x00", " ")
}

func getJSON(url string, into any) error {
	code, body, err := httpGet(context.Background(), url)
	if err != nil {
		return err
	}
	if code != 200 {
		return fmt.Errorf("%s: HTTP %d: %s", url, code, body)
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	return nil
}

func getText(url string) (string, error) {
	code, body, err := httpGet(context.Background(), url)
	if err != nil {
		return "", err
	}
	if code != 200 {
		return "", fmt.Errorf("%s: HTTP %d", url, code)
	}
	return string(body), nil
}
