// Command fleetbench measures what each configured cluster costs one etcd-monitor in --config.file
// mode (make fleet-bench runs it). For each K it starts the exporter with K named clusters and
// probes all K every interval as Prometheus does, spread over the interval, then prints per-probe
// latency p50/p99, the exporter's RSS, goroutines and open fds (idle, between rounds), and CPU
// seconds per probe. The named clusters share one etcd member (each name still keeps its own
// connections), so that K measures the exporter and not this machine; -separate N also runs K=N on
// N separate 1-member clusters to show that the two agree.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/etcd-monitor/etcd-monitor/internal/freeport"
)

func main() {
	exporter := flag.String("exporter", "bin/etcd-monitor", "etcd-monitor binary")
	etcdBin := flag.String("etcd", "bin/etcd", "etcd binary")
	ks := flag.String("k", "1,10,100,300", "comma-separated numbers of configured clusters")
	interval := flag.Duration("interval", 2*time.Second, "probe interval (every cluster once per interval)")
	rounds := flag.Int("rounds", 5, "measured intervals per K (after one warm-up interval)")
	separate := flag.Int("separate", 10, "also run K=N on N separate 1-member clusters (0: skip)")
	flag.Parse()
	if err := run(*exporter, *etcdBin, *ks, *interval, *rounds, *separate); err != nil {
		fmt.Fprintf(os.Stderr, "fleetbench: %v\n", err)
		os.Exit(1)
	}
}

func freePort() (int, error) {
	ports, err := freeport.Get(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// procs are the processes started, killed at the end whatever happens.
type procs struct {
	mu   sync.Mutex
	list []*exec.Cmd
}

func (p *procs) start(name string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(name, args...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.list = append(p.list, cmd)
	p.mu.Unlock()
	return cmd, nil
}

func (p *procs) stop(cmd *exec.Cmd) {
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

func (p *procs) stopAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.list {
		if c.ProcessState == nil {
			p.stop(c)
		}
	}
}

// startEtcd starts a 1-member cluster and returns its client URL once it answers /health.
func startEtcd(ps *procs, bin, dir string) (string, error) {
	cp, err := freePort()
	if err != nil {
		return "", err
	}
	pp, err := freePort()
	if err != nil {
		return "", err
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", cp)
	peer := fmt.Sprintf("http://127.0.0.1:%d", pp)
	if _, err := ps.start(bin, "--name=m", "--data-dir="+dir, "--log-level=error",
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer, "--initial-cluster=m="+peer,
		"--initial-cluster-token="+filepath.Base(dir)); err != nil {
		return "", err
	}
	return client, waitHTTP(client+"/health", 30*time.Second)
}

func waitHTTP(url string, bound time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not answering after %s", url, bound)
}

type result struct {
	k, probes, failed int
	p50, p99          time.Duration
	rssMiB            float64
	goroutines, fds   float64
	cpuPerProbe       time.Duration
	label             string
}

func run(exporter, etcdBin, ks string, interval time.Duration, rounds, separate int) error {
	work, err := os.MkdirTemp("", "fleetbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	ps := &procs{}
	defer ps.stopAll()

	shared, err := startEtcd(ps, etcdBin, filepath.Join(work, "shared"))
	if err != nil {
		return err
	}
	var results []result
	for _, s := range strings.Split(ks, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || k < 1 {
			return fmt.Errorf("bad K %q", s)
		}
		eps := make([]string, k)
		for i := range eps {
			eps[i] = shared
		}
		r, err := measure(ps, exporter, work, eps, interval, rounds)
		if err != nil {
			return fmt.Errorf("measuring K=%d: %w", k, err)
		}
		r.label = "1 shared member"
		results = append(results, r)
		fmt.Fprintf(os.Stderr, "K=%d done\n", k)
	}
	if separate > 0 {
		eps := make([]string, separate)
		for i := range eps {
			if eps[i], err = startEtcd(ps, etcdBin, filepath.Join(work, fmt.Sprintf("sep%d", i))); err != nil {
				return err
			}
		}
		r, err := measure(ps, exporter, work, eps, interval, rounds)
		if err != nil {
			return fmt.Errorf("separate K=%d: %w", separate, err)
		}
		r.label = fmt.Sprintf("%d separate members", separate)
		results = append(results, r)
	}
	fmt.Printf("interval %s, %d measured intervals per K, probes spread over the interval\n", interval, rounds)
	fmt.Printf("%-5s %-20s %7s %7s %9s %9s %9s %14s %10s %7s %12s\n", "K", "etcd", "probes", "failed", "p50", "p99", "RSS MiB", "RSS KiB/clust", "goroutines", "fds", "CPU/probe")
	base := results[0]
	for _, r := range results {
		perCluster := "-"
		if r.k != base.k {
			perCluster = fmt.Sprintf("%.0f", (r.rssMiB-base.rssMiB)*1024/float64(r.k-base.k))
		}
		fmt.Printf("%-5d %-20s %7d %7d %9s %9s %9.1f %14s %10.0f %7.0f %12s\n", r.k, r.label, r.probes, r.failed,
			r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond), r.rssMiB, perCluster, r.goroutines, r.fds, r.cpuPerProbe.Round(time.Microsecond))
	}
	return nil
}

// measure runs one exporter over the clusters at eps (one name each).
func measure(ps *procs, exporter, work string, eps []string, interval time.Duration, rounds int) (result, error) {
	k := len(eps)
	var b strings.Builder
	b.WriteString("clusters:\n")
	for i, ep := range eps {
		fmt.Fprintf(&b, "  - name: c%d\n    endpoints: [%q]\n", i, ep)
	}
	cfg := filepath.Join(work, fmt.Sprintf("fleet-%d.yml", k))
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		return result{}, err
	}
	port, err := freePort()
	if err != nil {
		return result{}, err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cmd, err := ps.start(exporter, "--config.file="+cfg, "--web.listen-address="+base[len("http://"):], "--log.level=error", "--web.max-requests=0")
	if err != nil {
		return result{}, err
	}
	defer ps.stop(cmd)
	if err := waitHTTP(base+"/-/healthy", 30*time.Second); err != nil {
		return result{}, err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1000}, Timeout: 30 * time.Second}
	probe := func(i int) (time.Duration, bool) {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/probe?cluster=c%d", base, i), nil)
		req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", strconv.FormatFloat(interval.Seconds(), 'f', -1, 64))
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, false
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		return time.Since(start), err == nil && resp.StatusCode == 200 && strings.Contains(string(body), "\netcd_monitor_up 1\n")
	}
	// One interval as warm-up: every cluster's connections opened.
	var lat []time.Duration
	failed := 0
	var mu sync.Mutex
	cpuStart := 0.0
	for round := range rounds + 1 {
		if round == 1 {
			m, err := selfMetrics(client, base)
			if err != nil {
				return result{}, err
			}
			cpuStart = m["process_cpu_seconds_total"]
		}
		var wg sync.WaitGroup
		start := time.Now()
		for i := range k {
			// Prometheus spreads its targets' scrapes evenly over the interval.
			at := start.Add(time.Duration(i) * interval / time.Duration(k))
			time.Sleep(time.Until(at))
			wg.Go(func() {
				d, ok := probe(i)
				if round == 0 {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if !ok {
					failed++
					return
				}
				lat = append(lat, d)
			})
		}
		wg.Wait()
		time.Sleep(time.Until(start.Add(interval)))
	}
	m, err := selfMetrics(client, base)
	if err != nil {
		return result{}, err
	}
	probes := len(lat) + failed
	slices.Sort(lat)
	q := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	cpu := m["process_cpu_seconds_total"] - cpuStart
	return result{
		k: k, probes: probes, failed: failed, p50: q(0.5), p99: q(0.99),
		rssMiB:     m["process_resident_memory_bytes"] / (1 << 20),
		goroutines: m["go_goroutines"], fds: m["process_open_fds"],
		cpuPerProbe: time.Duration(cpu / float64(max(probes, 1)) * float64(time.Second)),
	}, nil
}

// selfMetrics reads the exporter's own unlabelled gauges and counters from /metrics.
func selfMetrics(c *http.Client, base string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}
