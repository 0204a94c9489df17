//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/etcd-monitor/etcd-monitor/mixin"
)

// mimirBinary is bin/mimir (or $MIMIR_BIN). Mimir takes minutes to build, so without it the
// scenario skips with the command that builds it, unless ETCD_MONITOR_REQUIRE_TOOLS=1.
func mimirBinary(t *testing.T) string {
	t.Helper()
	path := os.Getenv("MIMIR_BIN")
	if path == "" {
		path = filepath.Join(RepoRoot(t), "bin", "mimir")
	}
	if st, err := os.Stat(path); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		msg := fmt.Sprintf("e2e: Grafana Mimir not found at %s (run `tools/build.sh mimir` or set MIMIR_BIN)", path)
		if os.Getenv("ETCD_MONITOR_REQUIRE_TOOLS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

// mimirReplicationFactor is 3, not the 2 the Fleet issue asked for: a write needs a quorum
// (RF/2+1) of its series' ingesters, 2 of 2 at RF 2, so one crashed ingester, which stays in
// the ring (ingesters have no auto-forget), blocks every write whose series it holds until it
// returns or an operator forgets it. At RF 3 on three replicas a write needs 2 of 3 and the
// topology survives a SIGKILL on its own (docs/fleet.md#grafana-mimir).
const mimirReplicationFactor = 3

// mimirReplica is one monolithic Mimir process.
type mimirReplica struct {
	*Process
	URL string
}

// startMimir runs n monolithic replicas (-target=all) gossiping one memberlist ring on
// loopback, ingesters replicating each series to mimirReplicationFactor of them, blocks in one
// shared filesystem bucket, and the ruler evaluating the rules under rulesDir/anonymous (tenant
// "anonymous" as multitenancy is off) against them and notifying am.
func startMimir(t *testing.T, env *Env, n int, rulesDir string, am *Alertmanager) []*mimirReplica {
	t.Helper()
	bin := mimirBinary(t)
	ports := FreePorts(t, 3*n)
	var join []string
	for i := range n {
		join = append(join, fmt.Sprintf("127.0.0.1:%d", ports[3*i+2]))
	}
	bucket := env.Subdir("mimir-bucket")
	ring := func(i int, extra map[string]any) map[string]any {
		r := map[string]any{
			"instance_addr":     "127.0.0.1",
			"instance_id":       fmt.Sprintf("mimir-%d", i),
			"heartbeat_period":  "1s",
			"heartbeat_timeout": "5s",
			"kvstore":           map[string]any{"store": "memberlist"},
		}
		for k, v := range extra {
			r[k] = v
		}
		return r
	}
	var out []*mimirReplica
	for i := range n {
		own := env.Subdir(fmt.Sprintf("mimir-%d", i))
		cfg := map[string]any{
			"target":               "all",
			"multitenancy_enabled": false,
			"server": map[string]any{
				"http_listen_address": "127.0.0.1", "http_listen_port": ports[3*i],
				"grpc_listen_address": "127.0.0.1", "grpc_listen_port": ports[3*i+1],
				"log_level": "warn",
			},
			"memberlist": map[string]any{
				"bind_addr": []string{"127.0.0.1"}, "bind_port": ports[3*i+2],
				"advertise_addr": "127.0.0.1", "advertise_port": ports[3*i+2],
				"join_members": join, "node_name": fmt.Sprintf("mimir-%d", i),
			},
			"common": map[string]any{"storage": map[string]any{
				"backend": "filesystem", "filesystem": map[string]any{"dir": bucket},
			}},
			"blocks_storage": map[string]any{
				"storage_prefix": "blocks",
				"tsdb":           map[string]any{"dir": filepath.Join(own, "tsdb")},
				"bucket_store":   map[string]any{"sync_dir": filepath.Join(own, "tsdb-sync")},
			},
			"ingester": map[string]any{"ring": ring(i, map[string]any{
				"replication_factor": mimirReplicationFactor, "final_sleep": "0s", "min_ready_duration": "0s",
			})},
			"distributor":   map[string]any{"ring": ring(i, nil)},
			"compactor":     map[string]any{"data_dir": filepath.Join(own, "compactor"), "sharding_ring": ring(i, nil)},
			"store_gateway": map[string]any{"sharding_ring": ring(i, nil)},
			"ruler": map[string]any{
				"rule_path":           filepath.Join(own, "ruler"),
				"alertmanager_url":    am.URL,
				"evaluation_interval": "1s",
				"poll_interval":       "2s",
				// A killed ruler is forgotten after 2 heartbeat timeouts (10 s; 2 is
				// Mimir's default, written out as the takeover depends on it), then its
				// rule groups hash to the surviving rulers.
				"ring": ring(i, map[string]any{"auto_forget_unhealthy_periods": 2}),
			},
			"ruler_storage": map[string]any{"backend": "local", "local": map[string]any{"directory": rulesDir}},
			"limits":        map[string]any{"ruler_evaluation_delay_duration": "0s"},
		}
		b, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("mimir-%d", i)
		r := &mimirReplica{URL: fmt.Sprintf("http://127.0.0.1:%d", ports[3*i])}
		// The query-frontend otherwise advertises the first interface's address to the queriers.
		r.Process = env.Start(name, bin, "-config.file="+env.WriteFile(name+".yml", b), "-query-frontend.instance-addr=127.0.0.1")
		out = append(out, r)
	}
	for _, r := range out {
		r.WaitHTTP(r.URL+"/ready", 2*startTimeout)
	}
	return out
}

// ruleGroupOwners returns the replicas whose ruler evaluates the rule group named group, read
// from their /metrics (a ruler that hands a group over drops its series).
func ruleGroupOwners(replicas []*mimirReplica, group string) ([]int, error) {
	var owners []int
	for i, r := range replicas {
		if exited, _ := r.Exited(); exited {
			continue
		}
		_, body, err := httpGet(context.Background(), r.URL+"/metrics")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.Name, err)
		}
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "cortex_prometheus_rule_group_last_evaluation_timestamp_seconds{") &&
				strings.Contains(line, ";"+group+`"`) && !strings.HasSuffix(line, " 0") {
				owners = append(owners, i)
				break
			}
		}
	}
	return owners, nil
}

// ruleGroupOwner waits until one replica alone has evaluated group for stable (longer than
// the rulers' 5 s ring check, so that a ring still settling after the start has moved it
// already), and returns its index.
func ruleGroupOwner(t *testing.T, replicas []*mimirReplica, group string, stable, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	owner, since := -1, time.Now()
	var last string
	for time.Now().Before(deadline) {
		owners, err := ruleGroupOwners(replicas, group)
		switch {
		case err != nil:
			owner, last = -1, err.Error()
		case len(owners) != 1:
			owner, last = -1, fmt.Sprintf("evaluated by replicas %v", owners)
		case owners[0] != owner:
			if owner >= 0 {
				t.Logf("group %s moved from replica %d to %d", group, owner, owners[0])
			}
			owner, since = owners[0], time.Now()
		case time.Since(since) >= stable:
			return owner
		}
		if owner >= 0 {
			last = fmt.Sprintf("on replica %d for %s", owner, time.Since(since).Round(time.Second))
		}
		time.Sleep(time.Second) // each poll reads three replicas' whole /metrics
	}
	t.Fatalf("e2e: timed out after %s waiting for one Mimir ruler to keep group %s for %s; last: %s", timeout, group, stable, last)
	return -1
}

// The fleet's scale-out path on Grafana Mimir: two Prometheus agents split the clusters by
// hashmod and remote_write to a three-replica Mimir whose ruler holds the mixin's rules and
// notifies Alertmanager. The replica whose ruler evaluates EtcdUnreachable's group is killed
// (SIGKILL: it leaves nothing behind, its ring entries go stale), then an etcd member: the
// series written after the kill answer through a surviving replica, those written before it
// too, a surviving ruler takes the group over and fires EtcdUnreachable for that cluster at
// the Alertmanager webhook, and the healthy clusters fire nothing.
func TestFleetThroughMimir(t *testing.T) {
	mimirBinary(t)
	env := NewEnv(t)
	broken := env.StartEtcd(EtcdOptions{Members: 1})
	healthy := NewEnv(t).StartEtcd(EtcdOptions{Members: 1})
	names := []string{"broken", "alpha", "bravo", "charlie"}
	var b strings.Builder
	b.WriteString("clusters:\n")
	for _, n := range names {
		ep := healthy.Endpoints()[0]
		if n == "broken" {
			ep = broken.Endpoints()[0]
		}
		fmt.Fprintf(&b, "  - name: %s\n    endpoints: [%s]\n", n, ep)
	}
	x := env.StartExporter("--config.file=" + env.WriteFile("fleet.yml", []byte(b.String())))

	files, err := mixin.Render(`{ quorumLostFor: '3s', quorumAtRiskFor: '3s', memberDownFor: '3s', noLeaderFor: '3s', unreachableFor: '3s' }`)
	if err != nil {
		t.Fatal(err)
	}
	rulesDir := env.Subdir("mimir-rules")
	if err := os.MkdirAll(filepath.Join(rulesDir, "anonymous"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rulesDir, "anonymous", "etcd-monitor.rules.yml"), files["alerts/etcd-monitor.rules.yml"], 0o644); err != nil {
		t.Fatal(err)
	}
	am := env.StartAlertmanager(AlertmanagerOptions{})
	mimir := startMimir(t, env, 3, rulesDir, am)

	// The victim is the replica whose ruler evaluates EtcdUnreachable, so that the alert
	// can only come from another ruler taking the group over.
	victim := ruleGroupOwner(t, mimir, "etcd-monitor-cluster", 6*time.Second, 60*time.Second)
	var survivors []*mimirReplica
	for i, r := range mimir {
		if i != victim {
			survivors = append(survivors, r)
		}
	}

	// Each agent writes through the distributor of a different surviving replica; in
	// production one load balancer in front of all distributors takes a dead one out.
	// Writing each sample through several distributors would race the copies and Mimir
	// refuses the late ones as out of order.
	for shard := range 2 {
		startPrometheusWith(t, env, fmt.Sprintf("agent%d", shard), map[string]any{
			"global": map[string]any{"scrape_interval": "1s", "scrape_timeout": "1s"},
			"scrape_configs": []any{map[string]any{
				"job_name":        "etcd-monitor",
				"http_sd_configs": []any{map[string]any{"url": x.URL + "/sd", "refresh_interval": "1s"}},
				"relabel_configs": []any{
					map[string]any{"source_labels": []string{"cluster"}, "modulus": 2, "target_label": "__tmp_shard", "action": "hashmod"},
					map[string]any{"source_labels": []string{"__tmp_shard"}, "regex": fmt.Sprint(shard), "action": "keep"},
				},
			}},
			"remote_write": []any{map[string]any{"url": survivors[shard].URL + "/api/v1/push"}},
		}, "--agent", "--storage.agent.path="+env.Subdir(fmt.Sprintf("agent%d", shard)))
	}

	// Mimir's Prometheus API, read through one replica or another.
	query := func(r *mimirReplica) *Prometheus {
		return &Prometheus{Process: r.Process, URL: r.URL + "/prometheus"}
	}
	up := `etcd_monitor_up{job="etcd-monitor"} == 1`
	query(mimir[victim]).WaitQuery(60*time.Second, up, func(s []Sample) bool { return len(s) == len(names) })
	// every cluster's series with n samples or more
	atLeast := func(n float64) func(s []Sample) bool {
		return func(s []Sample) bool {
			for _, x := range s {
				if x.Value < n {
					return false
				}
			}
			return len(s) == len(names)
		}
	}
	// 5 samples, so that the 10 s before the kill, checked below, hold 2 of them or more.
	query(mimir[victim]).WaitQuery(30*time.Second, `count_over_time(etcd_monitor_up{job="etcd-monitor"}[10s])`, atLeast(5))

	if owners, err := ruleGroupOwners(mimir, "etcd-monitor-cluster"); err != nil || len(owners) != 1 || owners[0] != victim {
		t.Fatalf("the group etcd-monitor-cluster moved before the kill: now on replicas %v (%v), was on %d", owners, err, victim)
	}
	mimir[victim].Kill()
	killed := time.Now()
	t.Logf("killed mimir-%d (SIGKILL), the ruler of etcd-monitor-cluster", victim)
	broken.Members[0].Kill()

	am.Webhook.WaitAlertLabels(90*time.Second, "", "EtcdUnreachable", "firing", map[string]string{"cluster": "broken", "job": "etcd-monitor"})
	t.Logf("EtcdUnreachable{cluster=\"broken\"} at the webhook %s after the kill", time.Since(killed).Round(time.Second))
	q := query(survivors[0])
	q.WaitQuery(30*time.Second, `etcd_monitor_up{job="etcd-monitor",cluster="broken"} == 0`, func(s []Sample) bool { return len(s) == 1 })

	// The series kept arriving after the kill: a window that starts after it holds several
	// samples of every cluster's series, read through each survivor.
	window := int(time.Since(killed).Seconds()) - 1
	if window < 2 {
		t.Fatalf("the alert came %s after the kill: too soon for a window of samples after it", time.Since(killed))
	}
	after := fmt.Sprintf(`count_over_time(etcd_monitor_up{job="etcd-monitor"}[%ds])`, window)
	// And the series written before it were not lost with the killed replica's ingester.
	before := fmt.Sprintf(`count_over_time(etcd_monitor_up{job="etcd-monitor"}[10s] @ %d)`, killed.Unix()-1)
	for _, r := range survivors {
		for _, expr := range []string{after, before} {
			s, err := query(r).Query(expr)
			if err != nil {
				t.Fatalf("through %s: %v", r.Name, err)
			}
			if !atLeast(2)(s) {
				t.Errorf("through %s, %s: %v, want %d series of 2 samples or more", r.Name, expr, s, len(names))
			}
		}
	}

	// A few more evaluations: nothing fires for the healthy clusters.
	time.Sleep(5 * time.Second)
	for _, m := range am.Webhook.Messages() {
		for _, a := range m.Alerts {
			if a.Labels["cluster"] != "broken" {
				t.Errorf("alert for a healthy cluster: %v", a.Labels)
			}
		}
	}
}
