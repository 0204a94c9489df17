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
	"net/url"
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
// ports. Stage 2 is held back (DEMO_HOLD_STAGE2, as a Prometheus build still running would):
// the banner is out, the exporter, its status page and `check` answer while Prometheus,
// Alertmanager and the Pushgateway are not running, and the banner's break command works. Then
// stage 2 is let go: it waits until Prometheus scrapes every target and the first benchmark is
// in the Pushgateway, stops the demo the two documented ways (make demo-stop, Ctrl-C) and checks
// that no process it started is left.
func TestDemo(t *testing.T) {
	for _, stop := range []string{"make demo-stop", "SIGINT"} {
		t.Run(strings.ReplaceAll(stop, " ", "-"), func(t *testing.T) { runDemo(t, stop) })
	}
}

type demoRun struct {
	t      *testing.T
	root   string
	state  string
	hold   string // DEMO_HOLD_STAGE2: stage 2 starts once this file exists
	offset int
	env    []string
	cmd    *exec.Cmd
	out    *os.File
	done   chan error
}

func (d *demoRun) port(name string) int { return demoBasePorts[name] + d.offset }

// startDemo starts `scripts/demo.sh up` in its own state directory and on free ports, with the
// binaries of binaries (name -> path; the variables tools/build.sh reads) and extra environment.
func startDemo(t *testing.T, binaries map[string]string, extra ...string) *demoRun {
	root := RepoRoot(t)
	tmp := t.TempDir()
	d := &demoRun{t: t, root: root, state: filepath.Join(tmp, "demo"), offset: freeDemoOffset(t)}
	d.env = append(os.Environ(), "DEMO_DIR="+d.state, "DEMO_PORT_OFFSET="+strconv.Itoa(d.offset))
	for name, path := range binaries {
		d.env = append(d.env, binaryVars[name]+"="+path)
	}
	d.env = append(d.env, extra...)

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
	return d
}

// pinnedBinaries: every binary the demo runs, at the pinned versions.
func pinnedBinaries(t *testing.T) map[string]string {
	m := map[string]string{}
	for _, name := range []string{BinEtcd, BinEtcdctl, BinPrometheus, BinAlertmanager, BinPushgateway, BinExporter} {
		m[name] = Binary(t, name)
	}
	return m
}

func runDemo(t *testing.T, stop string) {
	hold := filepath.Join(t.TempDir(), "stage2")
	d := startDemo(t, pinnedBinaries(t), "DEMO_HOLD_STAGE2="+hold)
	d.hold = hold
	root := d.root

	deadline := time.Now().Add(demoRunTimeout)
	d.assertStageOne(time.Until(deadline))
	if err := os.WriteFile(d.hold, nil, 0o644); err != nil {
		t.Fatal(err)
	}
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

// waitOutput waits until the demo has printed want; it fails at once if the demo exits.
func (d *demoRun) waitOutput(timeout time.Duration, want string) {
	t := d.t
	t.Helper()
	Eventually(t, timeout, fmt.Sprintf("the demo printing %q", want), func() (bool, string) {
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("demo exited during start (%v):\n%s", err, d.output())
		default:
		}
		return strings.Contains(d.output(), want), "not yet"
	})
}

// The lines scripts/demo.sh prints as each stage comes up, in the order it must print them.
const (
	demoBanner      = "etcd-monitor demo is running: the cluster and the exporter are up"
	demoPushgateway = "demo: the Pushgateway is up"
	demoAM          = "demo: Alertmanager is up"
	demoPrometheus  = "demo: Prometheus is up"
	demoFull        = "demo: the full stack is up"
)

// assertStageOne runs while stage 2 is held: the banner is out and says what follows, the
// exporter's /metrics and status page answer with every member up, nothing listens on the
// Prometheus, Alertmanager or Pushgateway port, and the banner's commands work on what runs:
// `check` says healthy, killing etcd-2 turns it degraded and the exporter's etcd-2 to 0, and
// restart-member brings it back.
func (d *demoRun) assertStageOne(timeout time.Duration) {
	t := d.t
	t.Helper()
	d.waitOutput(timeout, "demo: holding the Pushgateway, Alertmanager and Prometheus")
	out := d.output()
	if !strings.Contains(out, demoBanner) {
		t.Fatalf("demo holds stage 2 but printed no banner:\n%s", out)
	}
	if !strings.Contains(out, "Prometheus, Alertmanager and the Pushgateway follow") {
		t.Errorf("banner does not say that Prometheus, Alertmanager and the Pushgateway follow:\n%s", out)
	}
	for _, name := range []string{"prometheus", "alertmanager", "pushgateway"} {
		if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(d.port(name))), time.Second); err == nil {
			c.Close()
			t.Errorf("stage 1: something listens on %s's port %d before stage 2 was let go", name, d.port(name))
		}
	}
	for _, line := range []string{demoPushgateway, demoAM, demoPrometheus, demoFull} {
		if strings.Contains(out, line) {
			t.Errorf("stage 1: the demo printed %q before stage 2 was let go", line)
		}
	}

	exporter := fmt.Sprintf("http://127.0.0.1:%d", d.port("etcd-monitor"))
	if code, body, err := httpGet(context.Background(), exporter+"/"); err != nil || code != 200 {
		t.Errorf("stage 1: status page %s/: %d %v %.200s", exporter, code, err, body)
	}
	memberUp := func() (map[string]string, error) {
		code, body, err := httpGet(context.Background(), exporter+"/metrics")
		if err != nil {
			return nil, err
		}
		if code != 200 {
			return nil, fmt.Errorf("/metrics: HTTP %d", code)
		}
		up := map[string]string{}
		for _, l := range strings.Split(string(body), "\n") {
			if !strings.HasPrefix(l, "etcd_monitor_member_up{") {
				continue
			}
			for _, m := range []string{"etcd-0", "etcd-1", "etcd-2"} {
				if strings.Contains(l, `member="`+m+`"`) {
					up[m] = l[strings.LastIndexByte(l, ' ')+1:]
				}
			}
		}
		return up, nil
	}
	Eventually(t, timeout, "stage 1: the exporter reporting three members up", func() (bool, string) {
		up, err := memberUp()
		if err != nil {
			return false, err.Error()
		}
		return up["etcd-0"] == "1" && up["etcd-1"] == "1" && up["etcd-2"] == "1", fmt.Sprint(up)
	})

	check := d.bannerCommand(out, "one-shot check")
	if code, o := d.runShell(check); code != 0 {
		t.Errorf("stage 1: the banner's check %q exited %d, want 0 (healthy):\n%s", check, code, o)
	}
	var kill string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "kill $(cat ") && !strings.Contains(l, "etcd-1") {
			kill = l
		}
	}
	if kill == "" {
		t.Fatalf("banner has no command to stop one member:\n%s", out)
	}
	if code, o := d.runShell(kill); code != 0 {
		t.Fatalf("stage 1: %q exited %d:\n%s", kill, code, o)
	}
	Eventually(t, timeout, "stage 1: check degraded and the exporter's etcd-2 down after "+kill, func() (bool, string) {
		code, o := d.runShell(check)
		up, err := memberUp()
		if err != nil {
			return false, err.Error()
		}
		return code == 1 && up["etcd-2"] == "0", fmt.Sprintf("check exit %d, member_up %v\n%s", code, up, o)
	})
	restart := d.bannerCommand(out, "Bring a member back:")
	if code, o := d.runShell(restart); code != 0 || !strings.Contains(o, "etcd-2 is back") {
		t.Fatalf("stage 1: %q exited %d:\n%s", restart, code, o)
	}
	Eventually(t, timeout, "stage 1: check healthy again after restart-member", func() (bool, string) {
		code, o := d.runShell(check)
		return code == 0, o
	})
}

// bannerCommand: the command printed after label on a line of the banner.
func (d *demoRun) bannerCommand(out, label string) string {
	for _, l := range strings.Split(out, "\n") {
		if _, cmd, ok := strings.Cut(l, label); ok && strings.TrimSpace(cmd) != "" {
			return strings.TrimSpace(cmd)
		}
	}
	d.t.Fatalf("demo banner has no %q line:\n%s", label, out)
	return ""
}

// runShell runs a command the banner printed, as a user would paste it, with the demo's
// environment; it returns the exit code and the combined output.
func (d *demoRun) runShell(command string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, "bash", "-c", command)
	c.Dir, c.Env = d.root, d.env
	out, err := c.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	default:
		d.t.Fatalf("running %q: %v", command, err)
		return -1, ""
	}
}

// waitReady: the stage lines are printed in order, the banner names every URL and command,
// Prometheus scrapes all five targets (three members' /metrics, the exporter, the Pushgateway)
// and has the rules and Alertmanager, and the benchmark's results are in the Pushgateway.
func (d *demoRun) waitReady(timeout time.Duration) {
	t := d.t
	t.Helper()
	prom := fmt.Sprintf("http://127.0.0.1:%d", d.port("prometheus"))
	d.waitOutput(timeout, demoFull)
	out := d.output()
	last := -1
	for _, line := range []string{demoBanner, demoPushgateway, demoAM, demoPrometheus, demoFull} {
		i := strings.Index(out, line)
		if i <= last {
			t.Errorf("demo output: %q at %d, not after the previous stage's line (at %d):\n%s", line, i, last, out)
		}
		last = i
	}
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
	Eventually(t, timeout, "the benchmark's results in the Pushgateway", func() (bool, string) {
		var r struct {
			Data []map[string]json.RawMessage `json:"data"`
		}
		if err := getJSON(pgw, &r); err != nil {
			return false, err.Error()
		}
		for _, group := range r.Data {
			for name, raw := range group {
				if !strings.HasPrefix(name, "etcd_benchmark_") {
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
					if m.Labels["job"] == "etcd_benchmark" && m.Labels["run"] == "demo" {
						return true, ""
					}
				}
			}
		}
		return false, fmt.Sprintf("%d groups, no etcd_benchmark_* with run=demo", len(r.Data))
	})

	// The first backup: verified and pushed (job etcd_backup, cluster demo), and its file's age is
	// in Prometheus from the exporter's backup collector, which the overview dashboard reads.
	Eventually(t, timeout, "the first backup's outcome in the Pushgateway", func() (bool, string) {
		code, body, err := httpGet(context.Background(), fmt.Sprintf("http://127.0.0.1:%d/metrics", d.port("pushgateway")))
		if err != nil || code != 200 {
			return false, fmt.Sprintf("%d %v", code, err)
		}
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "etcd_backup_verification{") && strings.Contains(line, `cluster="demo"`) &&
				strings.Contains(line, `job="etcd_backup"`) && strings.Contains(line, `result="verified"`) && strings.HasSuffix(line, " 1") {
				return true, ""
			}
		}
		return false, "no etcd_backup_verification{cluster=\"demo\",result=\"verified\"} 1"
	})
	Eventually(t, timeout, "the backup's freshness in Prometheus", func() (bool, string) {
		var r struct {
			Data struct {
				Result []struct {
					Value []any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		q := prom + "/api/v1/query?query=" + url.QueryEscape(`time() - etcd_monitor_backup_newest_file_timestamp_seconds and etcd_monitor_backup_files >= 1`)
		if err := getJSON(q, &r); err != nil {
			return false, err.Error()
		}
		return len(r.Data.Result) == 1, fmt.Sprintf("%+v", r.Data.Result)
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

// TestDemoUsesInstalledTools: for the demo (not the tests), a tool already installed on the PATH
// is run instead of being built when its version meets the documented minimum, under the name
// Debian's package gives it (prometheus-pushgateway); a binary named by a variable that reports
// a version below the minimum stops the demo with one line before anything starts.
func TestDemoUsesInstalledTools(t *testing.T) {
	t.Run("PATH", func(t *testing.T) {
		bins := pinnedBinaries(t)
		pushgateway := bins[BinPushgateway]
		delete(bins, BinPushgateway)
		path := t.TempDir()
		installed := filepath.Join(path, "prometheus-pushgateway")
		if err := os.Symlink(pushgateway, installed); err != nil {
			t.Fatal(err)
		}
		// BIN_DIR empty: the pinned build is not there, so only the PATH can spare the build.
		d := startDemo(t, bins, "BIN_DIR="+t.TempDir(), "PATH="+path+string(os.PathListSeparator)+os.Getenv("PATH"))
		d.waitOutput(demoRunTimeout, demoPushgateway)
		out := d.output()
		if want := "demo: using the installed " + installed + " (pushgateway "; !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
		if strings.Contains(out, "building pushgateway") {
			t.Errorf("demo built the Pushgateway although a recent one is installed:\n%s", out)
		}
		b, err := os.ReadFile(filepath.Join(d.state, "run", "pushgateway.pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if got := strings.Fields(cmdline(pid)); len(got) == 0 || got[0] != installed {
			t.Errorf("the Pushgateway runs as %q, want %s", got, installed)
		}
		if err := syscall.Kill(-d.cmd.Process.Pid, syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-d.done:
			d.done <- err
			if err != nil {
				t.Errorf("demo exited with %v after SIGINT", err)
			}
		case <-time.After(time.Minute):
			t.Fatalf("demo still running a minute after SIGINT")
		}
	})

	t.Run("variable-too-old", func(t *testing.T) {
		// Needs a real Alertmanager older than the demo's minimum (0.28.0): Debian bookworm's
		// prometheus-alertmanager is 0.25.0.
		old := "/usr/bin/prometheus-alertmanager"
		out, err := exec.Command(old, "--version").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "version 0.2") || strings.Contains(string(out), "version 0.28") || strings.Contains(string(out), "version 0.29") {
			t.Skipf("no Alertmanager older than 0.28 installed at %s (%v)", old, err)
		}
		bins := pinnedBinaries(t)
		bins[BinAlertmanager] = old
		root := RepoRoot(t)
		state := filepath.Join(t.TempDir(), "demo")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "demo.sh"), "up")
		c.Dir = root
		c.Env = append(os.Environ(), "DEMO_DIR="+state, "DEMO_PORT_OFFSET="+strconv.Itoa(freeDemoOffset(t)))
		for name, path := range bins {
			c.Env = append(c.Env, binaryVars[name]+"="+path)
		}
		var stdout, stderr bytes.Buffer
		c.Stdout, c.Stderr = &stdout, &stderr
		err = c.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() == 0 {
			t.Fatalf("demo with ALERTMANAGER_BIN=%s: %v, want a non-zero exit\n%s%s", old, err, stdout.String(), stderr.String())
		}
		msg := strings.TrimSpace(stderr.String())
		if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "ALERTMANAGER_BIN="+old) || !strings.Contains(msg, "needs 0.28.0 or newer") {
			t.Errorf("stderr %q, want one line naming the variable and the minimum", msg)
		}
		if _, err := os.Stat(filepath.Join(state, "run")); err == nil {
			t.Errorf("the demo created %s/run although it refused to start", state)
		}
	})
}

// TestDemoGoesOnWithoutAFailedBuild: a stage 2 tool whose build fails (here the Pushgateway, with
// a BIN_DIR that cannot be created) is a warning: the cluster, the exporter, Alertmanager and
// Prometheus keep running and the demo says what it runs without; Ctrl-C still stops it cleanly.
func TestDemoGoesOnWithoutAFailedBuild(t *testing.T) {
	bins := pinnedBinaries(t)
	delete(bins, BinPushgateway)
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDemo(t, bins, "BIN_DIR="+filepath.Join(notDir, "bin"), "DEMO_USE_INSTALLED=0")
	d.waitOutput(demoRunTimeout, "demo: up without Pushgateway")
	out := d.output()
	for _, want := range []string{demoBanner, "demo: tools/build.sh pushgateway failed", "demo: warning: Pushgateway could not be built; the demo goes on without it", demoAM, demoPrometheus} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, demoFull) {
		t.Errorf("demo says the full stack is up without the Pushgateway:\n%s", out)
	}
	for _, u := range []string{
		fmt.Sprintf("http://127.0.0.1:%d/metrics", d.port("etcd-monitor")),
		fmt.Sprintf("http://127.0.0.1:%d/-/ready", d.port("prometheus")),
		fmt.Sprintf("http://127.0.0.1:%d/-/ready", d.port("alertmanager")),
	} {
		if code, _, err := httpGet(context.Background(), u); err != nil || code != 200 {
			t.Errorf("%s: %d %v after the failed build", u, code, err)
		}
	}
	if err := syscall.Kill(-d.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		d.done <- err
		if err != nil {
			t.Errorf("demo exited with %v after SIGINT", err)
		}
	case <-time.After(time.Minute):
		t.Fatalf("demo still running a minute after SIGINT")
	}
	if left := d.demoPids(); len(left) != 0 {
		t.Errorf("processes naming %s remain after SIGINT: %v", d.state, left)
	}
}
