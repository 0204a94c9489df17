//go:build e2e

package e2e

import (
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

// mimirReplica is one monolithic Mimir process.
type mimirReplica struct {
	*Process
	URL string
}

// startMimir runs n monolithic replicas (-target=all) gossiping one memberlist ring on
// loopback, ingesters replicating each series to 2 of them, blocks in one shared filesystem
// bucket, and the ruler evaluating the rules under rulesDir/anonymous (tenant "anonymous" as
// multitenancy is off) against them and notifying am.
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
				"replication_factor": 2, "final_sleep": "0s", "min_ready_duration": "0s",
			})},
			"distributor":   map[string]any{"ring": ring(i, nil)},
			"compactor":     map[string]any{"data_dir": filepath.Join(own, "compactor"), "sharding_ring": ring(i, nil)},
			"store_gateway": map[string]any{"sharding_ring": ring(i, nil)},
			"ruler": map[string]any{
				"rule_path":           filepath.Join(own, "ruler"),
				"alertmanager_url":    am.URL,
				"evaluation_interval": "1s",
				"poll_interval":       "2s",
				"ring":                ring(i, nil),
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

// The fleet's scale-out path on Grafana Mimir: two Prometheus agents split the clusters by
// hashmod and remote_write to a three-replica Mimir (replication factor 2)
// whose ruler holds the mixin's rules and notifies Alertmanager. With one Mimir replica
// stopped mid-run, a killed etcd member still fires EtcdUnreachable for its cluster at the
// Alertmanager webhook, the healthy clusters fire nothing, and the series still answer
// through another replica.
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

	// Both agents write through one distributor: writing each sample through several would
	// race the copies and Mimir refuses the late ones as out of order. The replica stopped
	// below is another one, whose ingester held half of the series.
	writes := []any{map[string]any{"url": mimir[1].URL + "/api/v1/push"}}
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
			"remote_write": writes,
		}, "--agent", "--storage.agent.path="+env.Subdir(fmt.Sprintf("agent%d", shard)))
	}

	// Mimir's Prometheus API, read through one replica or another.
	query := func(r *mimirReplica) *Prometheus {
		return &Prometheus{Process: r.Process, URL: r.URL + "/prometheus"}
	}
	up := `etcd_monitor_up{job="etcd-monitor"} == 1`
	query(mimir[0]).WaitQuery(60*time.Second, up, func(s []Sample) bool { return len(s) == len(names) })

	// A replica stops mid-run (SIGTERM: it leaves the rings as a drained node does): every
	// series lives on two ingesters, so reads, writes and the ruler's groups go on without it.
	mimir[0].Stop()
	query(mimir[1]).WaitQuery(60*time.Second, up, func(s []Sample) bool { return len(s) == len(names) })

	broken.Members[0].Kill()
	am.Webhook.WaitAlertLabels(2*time.Minute, "", "EtcdUnreachable", "firing", map[string]string{"cluster": "broken", "job": "etcd-monitor"})
	query(mimir[2]).WaitQuery(30*time.Second, `etcd_monitor_up{job="etcd-monitor",cluster="broken"} == 0`, func(s []Sample) bool { return len(s) == 1 })
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
