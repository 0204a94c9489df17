package benchmark

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/goleak"

	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(etcdtest.Settled(m))
}

func testConfig(workload string, total int) Config {
	c := DefaultConfig()
	c.Workload = workload
	c.Total = total
	c.Conns = 2
	c.Clients = 4
	c.KeySpaceSize = 50
	c.ValSize = 32
	return c
}

func run(t *testing.T, ctx context.Context, ep string, cfg Config, hook func(int, int64)) (*Result, string, error) {
	t.Helper()
	var out bytes.Buffer
	r := &Runner{Config: cfg, Dial: dialer(ep), Out: &out, beforeOp: hook}
	res, err := r.Run(ctx)
	return res, out.String(), err
}

func TestWorkloadsRunExactlyTotalAndCleanUp(t *testing.T) {
	ep := startEtcd(t, nil)
	c := newClient(t, ep)
	mustPut(t, c, "/user/data", "precious")
	mustPut(t, c, "/etcd-monitor-benchmark", "a neighbour of the prefix, not under it")
	mustPut(t, c, "/etcd-monitor-benchmark-other/x", "a neighbour of the prefix, not under it")
	before := snapshotOutside(t, c, DefaultPrefix)

	for _, w := range Workloads {
		t.Run(w, func(t *testing.T) {
			const total = 40
			res, out, err := run(t, ctxT(t), ep, testConfig(w, total), nil)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, out)
			}
			if res.Operations != total || res.Successes != total || res.Failures != 0 {
				t.Fatalf("operations %d (ok %d, failed %d), want exactly %d successful", res.Operations, res.Successes, res.Failures, total)
			}
			if res.Latency.Count != total || res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 {
				t.Errorf("latency summary looks wrong: %+v", res.Latency)
			}
			var inHist int64
			for _, b := range res.Histogram {
				inHist += b.Count
			}
			if inHist != total {
				t.Errorf("histogram holds %d operations, want %d", inHist, total)
			}
			if res.Throughput <= 0 || !res.Success {
				t.Errorf("throughput %g, success %v", res.Throughput, res.Success)
			}
			if n := count(t, c, DefaultPrefix); n != 0 {
				t.Errorf("%d keys left under the prefix", n)
			}
			if w != WorkloadLease && w != WorkloadRange && res.KeysRemoved == 0 && w != WorkloadLock && w != WorkloadElection {
				t.Errorf("no key removed after a writing workload")
			}
			if !strings.Contains(out, "Operations:  40 (40 succeeded, 0 failed)") || !strings.Contains(out, "p99.9") {
				t.Errorf("report lacks the counts or percentiles:\n%s", out)
			}
			want := "removed " + itoa(res.KeysRemoved) + " keys under " + DefaultPrefix
			if !strings.Contains(out, want) {
				t.Errorf("report does not say %q:\n%s", want, out)
			}
			if after := snapshotOutside(t, c, DefaultPrefix); !maps.Equal(before, after) {
				t.Errorf("keys outside the prefix changed:\nbefore %v\nafter  %v", before, after)
			}
		})
	}

	t.Run("leases revoked", func(t *testing.T) {
		resp, err := c.Leases(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Leases) != 0 {
			t.Errorf("%d leases left behind", len(resp.Leases))
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestPutWritesExactKeysAndCleanupCountsThem(t *testing.T) {
	ep := startEtcd(t, nil)
	c := newClient(t, ep)
	cfg := testConfig(WorkloadPut, 30)
	cfg.SequentialKeys = true
	cfg.KeySpaceSize = 1000
	cfg.Keep = true
	res, out, err := run(t, ctxT(t), ep, cfg, nil)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	own := res.RunPrefix
	if !runIDRE.MatchString(res.RunID) || own != DefaultPrefix+res.RunID+"/" {
		t.Fatalf("run ID %q, directory %q: want a generated ID and the directory %s<ID>/", res.RunID, own, DefaultPrefix)
	}
	if !strings.Contains(out, "Run:         "+res.RunID+" (keys under "+own+")") {
		t.Errorf("report does not name the run and its directory:\n%s", out)
	}
	resp, err := c.Get(ctxT(t), DefaultPrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 30 || res.KeysKept != 30 {
		t.Fatalf("--keep left %d keys (reported %d), want the 30 written", len(resp.Kvs), res.KeysKept)
	}
	if got := string(resp.Kvs[0].Key); got != own+"key-000000000" {
		t.Errorf("first key %q, want readable %q", got, own+"key-000000000")
	}
	if len(resp.Kvs[0].Value) != cfg.ValSize {
		t.Errorf("value of %d bytes, want %d", len(resp.Kvs[0].Value), cfg.ValSize)
	}
	if !strings.Contains(out, "--keep: left 30 keys under "+own+"\n") {
		t.Errorf("report does not say what was kept:\n%s", out)
	}

	// The kept keys are no reason to refuse the next run, which leaves them as they are.
	kept := keysUnder(t, c, own)
	cfg.Keep = false
	res2, out, err := run(t, ctxT(t), ep, cfg, nil)
	if err != nil {
		t.Fatalf("run next to kept keys: %v\n%s", err, out)
	}
	if res2.RunID == res.RunID || res2.KeysRemoved != 30 {
		t.Errorf("second run %s removed %d keys, want a new run ID and its own 30 keys", res2.RunID, res2.KeysRemoved)
	}
	if after := keysUnder(t, c, DefaultPrefix); !sameKeys(kept, after) {
		t.Errorf("the second run changed the kept keys:\nbefore %v\nafter  %v", kept, after)
	}
}

// A run's directory must be new: its cleanup deletes it whole, so keys already there (only a
// caller that chose the run ID can meet them) make it refuse, and change nothing.
func TestRefusesARunDirectoryThatHoldsKeys(t *testing.T) {
	ep := startEtcd(t, nil)
	c := newClient(t, ep)
	cfg := testConfig(WorkloadPut, 10)
	cfg.RunID = "mine"
	mustPut(t, c, cfg.runPrefix()+"key-000000001", "not the run's")
	before := keysUnder(t, c, "")
	_, out, err := run(t, ctxT(t), ep, cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "already holds 1 keys") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("want a one-line refusal for a run directory that holds keys, got %v", err)
	}
	if out != "" {
		t.Errorf("a refused run printed a report:\n%s", out)
	}
	if after := keysUnder(t, c, ""); !sameKeys(before, after) {
		t.Errorf("the refused run changed keys:\nbefore %v\nafter  %v", before, after)
	}
}

func TestRefusesOnQuotaEstimateAndActiveAlarm(t *testing.T) {
	const quota = 2 << 20
	ep := startEtcd(t, func(c *embed.Config) { c.QuotaBackendBytes = quota })
	c := newClient(t, ep)

	// 100 × 20 KB is about 2 MB, past 80% of a 2 MiB quota.
	cfg := testConfig(WorkloadPut, 100)
	cfg.ValSize = 20000
	_, _, err := run(t, ctxT(t), ep, cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "quota") {
		t.Fatalf("want a refusal on the quota estimate, got %v", err)
	}
	if n := count(t, c, DefaultPrefix); n != 0 {
		t.Fatalf("refused run wrote %d keys", n)
	}
	// Reads write nothing and are not refused.
	if _, out, err := run(t, ctxT(t), ep, testConfig(WorkloadRange, 10), nil); err != nil {
		t.Fatalf("range run next to a small quota: %v\n%s", err, out)
	}

	// Fill the database outside the prefix until etcd raises NOSPACE. etcd compares the quota with
	// the backend's size as of its last commit (every 100 ms), so fast puts can overshoot it before
	// the alarm: keep going, bounded in count and time.
	val := strings.Repeat("x", 60_000)
	var putErr error
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < 1000 && putErr == nil && time.Now().Before(deadline); i++ {
		_, putErr = c.Put(ctxT(t), "/fill/"+itoa(int64(i)), val)
		if i%20 == 19 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if putErr == nil {
		t.Fatal("NOSPACE never raised")
	}
	_, out, err := run(t, ctxT(t), ep, testConfig(WorkloadRange, 10), nil)
	if err == nil || !strings.Contains(err.Error(), "NOSPACE") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("want a one-line refusal naming the NOSPACE alarm, got %v\n%s", err, out)
	}
}

func TestInterruptCleansUp(t *testing.T) {
	ep := startEtcd(t, nil)
	c := newClient(t, ep)
	mustPut(t, c, "/user/data", "precious")
	before := snapshotOutside(t, c, DefaultPrefix)

	for _, w := range []string{WorkloadPut, WorkloadLock, WorkloadWatch} {
		t.Run(w, func(t *testing.T) {
			ctx, cancel := context.WithCancel(ctxT(t))
			defer cancel()
			cfg := testConfig(w, 0)
			cfg.Duration = time.Minute
			var once sync.Once
			// context cancellation is what SIGINT/SIGTERM do through signal.NotifyContext
			hook := func(_ int, i int64) {
				if i == 50 {
					once.Do(func() { time.AfterFunc(10*time.Millisecond, cancel) })
				}
			}
			start := time.Now()
			res, out, err := run(t, ctx, ep, cfg, hook)
			if err == nil || !strings.Contains(err.Error(), "interrupted") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("want a one-line interrupted error, got %q", err)
			}
			if time.Since(start) > 20*time.Second {
				t.Errorf("interrupt took %s to take effect", time.Since(start))
			}
			if res == nil || res.Success || res.Operations < 50 {
				t.Fatalf("result %+v", res)
			}
			if n := count(t, c, DefaultPrefix); n != 0 {
				t.Errorf("%d keys left under the prefix after the interrupt", n)
			}
			if w == WorkloadPut && (res.KeysRemoved == 0 || !strings.Contains(out, "removed "+itoa(res.KeysRemoved)+" keys")) {
				t.Errorf("report does not say how many keys were removed:\n%s", out)
			}
			if after := snapshotOutside(t, c, DefaultPrefix); !maps.Equal(before, after) {
				t.Errorf("keys outside the prefix changed")
			}
		})
	}
}

// A stalled client delays the operations scheduled behind it. In open loop they carry that wait
// in their latency; in closed loop only the stalled operation shows it (coordinated omission).
func TestOpenLoopLatencyIncludesQueueing(t *testing.T) {
	ep := startEtcd(t, nil)
	const stall = 300 * time.Millisecond
	hook := func(_ int, i int64) {
		if i == 10 {
			time.Sleep(stall)
		}
	}
	cfg := testConfig(WorkloadPut, 100)
	cfg.Conns, cfg.Clients = 1, 1
	cfg.Rate = 200

	res, out, err := run(t, ctxT(t), ep, cfg, hook)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if !res.OpenLoop {
		t.Error("not reported as open loop")
	}
	// p99 of 100 operations is the second slowest: the one scheduled 5 ms after the stalled one,
	// which waited for the stall less those 5 ms.
	if p99 := time.Duration(res.Latency.P99 * 1e9); p99 < stall-10*time.Millisecond {
		t.Errorf("open loop p99 %s, want about the %s stall", p99, stall)
	}
	if max := time.Duration(res.Latency.Max * 1e9); max < stall {
		t.Errorf("open loop max %s, want at least the %s stall", max, stall)
	}
	if p90 := time.Duration(res.Latency.P90 * 1e9); p90 < 100*time.Millisecond {
		t.Errorf("open loop p90 %s: the operations queued behind the stall do not show their wait", p90)
	}

	cfg.Rate = 0
	res, out, err = run(t, ctxT(t), ep, cfg, hook)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if p90 := time.Duration(res.Latency.P90 * 1e9); p90 >= 100*time.Millisecond {
		t.Errorf("closed loop p90 %s: only the stalled operation should be slow", p90)
	}
	if max := time.Duration(res.Latency.Max * 1e9); max < stall {
		t.Errorf("closed loop max %s, want the stall", max)
	}
}

// --rate is a schedule, not a hint: a 5 s run at 200 ops/s runs 1,000 operations (within 5%),
// never faster than the schedule. The rate is modest so that a loaded 2-core machine holds it.
func TestRateIsHeld(t *testing.T) {
	ep := startEtcd(t, nil)
	const (
		rate = 200
		secs = 5
	)
	cfg := testConfig(WorkloadPut, 0)
	cfg.Duration = secs * time.Second
	cfg.Rate = rate
	// Enough clients that a slow moment of a loaded machine does not leave the schedule waiting
	// for a free one.
	cfg.Clients = 16
	res, out, err := run(t, ctxT(t), ep, cfg, nil)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if !res.OpenLoop {
		t.Error("not reported as open loop")
	}
	if want := int64(rate * secs); res.Operations < want*95/100 || res.Operations > want*105/100 {
		t.Errorf("%d operations in %d s at %d/s, want %d ± 5%%", res.Operations, secs, rate, want)
	}
	// Only the bounds a scheduler bug could break: a slow or shared machine makes a run longer
	// and its throughput lower, never the other way round, so neither depends on machine speed.
	if res.Throughput > rate*1.05 {
		t.Errorf("throughput %.1f ops/s, want at most %d + 5%%: the schedule was not kept", res.Throughput, rate)
	}
	if res.DurationSeconds < secs*0.95 {
		t.Errorf("run took %.2f s, want at least %d s - 5%%: operations ran ahead of their schedule", res.DurationSeconds, secs)
	}
}

func TestJSONReport(t *testing.T) {
	ep := startEtcd(t, nil)
	cfg := testConfig(WorkloadMixed, 20)
	cfg.Output = "json"
	_, out, err := run(t, ctxT(t), ep, cfg, nil)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out)
	}
	for _, k := range []string{"workload", "parameters", "operations", "successes", "failures", "errors_by_code",
		"duration_seconds", "throughput_ops_per_second", "latency_seconds", "histogram",
		"failed_latency_seconds", "keys_removed", "success"} {
		if _, ok := got[k]; !ok {
			t.Errorf("JSON report lacks %q", k)
		}
	}
	lat := got["latency_seconds"].(map[string]any)
	for _, k := range []string{"p50", "p90", "p95", "p99", "p99_9", "max"} {
		if _, ok := lat[k]; !ok {
			t.Errorf("latency lacks %q", k)
		}
	}
	if got["operations"].(float64) != 20 || got["parameters"].(map[string]any)["read_ratio"] != "0.7" {
		t.Errorf("unexpected content:\n%s", out)
	}
}

func TestInvalidConfig(t *testing.T) {
	cases := map[string]func(*Config){
		"unknown workload":     func(c *Config) { c.Workload = "delete-everything" },
		"zero clients":         func(c *Config) { c.Clients = 0 },
		"zero conns":           func(c *Config) { c.Conns = 0 },
		"negative key size":    func(c *Config) { c.KeySize = -1 },
		"negative value size":  func(c *Config) { c.ValSize = -1 },
		"total and duration":   func(c *Config) { c.Duration = time.Second },
		"neither":              func(c *Config) { c.Total = 0 },
		"negative rate":        func(c *Config) { c.Rate = -1 },
		"read ratio":           func(c *Config) { c.ReadRatio = 1.5 },
		"consistency":          func(c *Config) { c.Consistency = "x" },
		"output":               func(c *Config) { c.Output = "yaml" },
		"root prefix":          func(c *Config) { c.Prefix = "/" },
		"prefix without slash": func(c *Config) { c.Prefix = "/bench" },
		"key space too big":    func(c *Config) { c.KeySize = 3; c.KeySpaceSize = 100000 },
		"pushgateway url":      func(c *Config) { c.PushgatewayURL = "localhost:9091" },
		"empty run name":       func(c *Config) { c.RunName = "" },
		"run ID with a slash":  func(c *Config) { c.RunID = "a/b" },
		"run ID dot-dot":       func(c *Config) { c.RunID = ".." },
	}
	for name, mutate := range cases {
		cfg := testConfig(WorkloadPut, 10)
		mutate(&cfg)
		err := cfg.Validate()
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error is not one line: %q", name, err)
		}
	}
	if err := testConfig(WorkloadPut, 10).Validate(); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
}

func TestKeyFormat(t *testing.T) {
	for _, tc := range []struct {
		size, space int
		want        string
	}{
		{13, 100000, "/p/key-000000042"},
		{8, 100000, "/p/00000042"},
		{5, 100000, "/p/00042"},
	} {
		f, err := newKeyFormat("/p/", tc.size, tc.space)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.key("", 42); got != tc.want {
			t.Errorf("key-size %d: got %q, want %q", tc.size, got, tc.want)
		}
		if got := len(f.key("", tc.space-1)) - len("/p/"); got != tc.size {
			t.Errorf("key-size %d: largest key has %d bytes after the prefix", tc.size, got)
		}
	}
}

func TestUnreachableEtcd(t *testing.T) {
	cfg := testConfig(WorkloadPut, 10)
	ep := "127.0.0.1:" + itoa(int64(etcdtest.FreePort(t)))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, _, err := run(t, ctx, ep, cfg, nil)
	if err == nil {
		t.Fatal("run against a closed port succeeded")
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("run against a closed port did not give up on its own")
	}
}

// A run bounded only by time has no pre-flight estimate: it must stop itself before NOSPACE.
func TestDurationRunStopsBeforeQuota(t *testing.T) {
	ep := startEtcd(t, func(c *embed.Config) { c.QuotaBackendBytes = 4 << 20 })
	c := newClient(t, ep)
	cfg := testConfig(WorkloadPut, 0)
	cfg.Duration = 30 * time.Second
	cfg.ValSize = 20000
	start := time.Now()
	res, out, err := run(t, ctxT(t), ep, cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "stopped early") || !strings.Contains(err.Error(), "quota") {
		t.Fatalf("want the run stopped early by the quota, got %v\n%s", err, out)
	}
	if time.Since(start) > 20*time.Second || res.Operations == 0 || res.Failures != 0 {
		t.Errorf("took %s, %d operations, %d failed", time.Since(start), res.Operations, res.Failures)
	}
	alarms, err := c.AlarmList(ctxT(t))
	if err != nil || len(alarms.Alarms) != 0 {
		t.Errorf("alarms after the run: %v %v", alarms, err)
	}
	if n := count(t, c, DefaultPrefix); n != 0 {
		t.Errorf("%d keys left", n)
	}
	if !strings.Contains(out, "Stopped:") {
		t.Errorf("report does not say the run stopped early:\n%s", out)
	}
}
