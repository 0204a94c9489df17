//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/etcd-monitor/etcd-monitor/mixin"
)

// startPrometheusWith starts Prometheus on cfg with extra flags and waits until it is ready.
func startPrometheusWith(t *testing.T, env *Env, name string, cfg map[string]any, args ...string) *Prometheus {
	t.Helper()
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", FreePorts(t, 1)[0])
	p := &Prometheus{Addr: addr, URL: "http://" + addr, ConfigPath: env.WriteFile(name+".yml", out)}
	p.Process = env.Start(name, Binary(t, BinPrometheus), append([]string{
		"--config.file=" + p.ConfigPath, "--web.listen-address=" + addr, "--scrape.discovery-reload-interval=1s",
	}, args...)...)
	p.WaitHTTP(p.URL+"/-/ready", startTimeout)
	return p
}

// The fleet's scale-out path with real processes: two Prometheus agents each scrape half of the
// clusters (hashmod on the cluster label) from one exporter's /sd and remote_write to one store
// that evaluates the mixin's rules. The store is a Prometheus with the remote-write receiver, in
// the place Mimir, Thanos Receive or VictoriaMetrics take in production (docs/fleet.md#scale-out).
// A cluster whose only member is killed fires EtcdUnreachable with its cluster label; the healthy
// ones fire nothing. An agent refuses rule files.
func TestFleetThroughAgentsAndRemoteWrite(t *testing.T) {
	env := NewEnv(t)
	broken := env.StartEtcd(EtcdOptions{Members: 1})
	healthy := NewEnv(t).StartEtcd(EtcdOptions{Members: 1})
	names := []string{"broken", "alpha", "bravo", "charlie", "delta", "echo"}
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
	rules := env.WriteFile("etcd-monitor.rules.yml", files["alerts/etcd-monitor.rules.yml"])
	store := startPrometheusWith(t, env, "store", map[string]any{
		"global":     map[string]any{"evaluation_interval": "1s"},
		"rule_files": []string{rules},
	}, "--storage.tsdb.path="+env.Subdir("store"), "--web.enable-remote-write-receiver")

	agentCfg := func(shard int, withRules bool) map[string]any {
		cfg := map[string]any{
			"global": map[string]any{"scrape_interval": "1s", "scrape_timeout": "1s"},
			"scrape_configs": []any{map[string]any{
				"job_name":        "etcd-monitor",
				"http_sd_configs": []any{map[string]any{"url": x.URL + "/sd", "refresh_interval": "1s"}},
				"relabel_configs": []any{
					map[string]any{"source_labels": []string{"cluster"}, "modulus": 2, "target_label": "__tmp_shard", "action": "hashmod"},
					map[string]any{"source_labels": []string{"__tmp_shard"}, "regex": fmt.Sprint(shard), "action": "keep"},
				},
			}},
			"remote_write": []any{map[string]any{"url": store.URL + "/api/v1/write"}},
		}
		if withRules {
			cfg["rule_files"] = []string{rules}
		}
		return cfg
	}

	// An agent refuses rule files: the rules can only run in the store.
	refused, err := yaml.Marshal(agentCfg(0, true))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t, BinPrometheus), "--agent", "--config.file="+env.WriteFile("agent-rules.yml", refused),
		"--storage.agent.path="+env.Subdir("agent-rules"), fmt.Sprintf("--web.listen-address=127.0.0.1:%d", FreePorts(t, 1)[0]))
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil || !strings.Contains(string(out), "field rule_files is not allowed in agent mode") {
		t.Errorf("agent with rule_files: %v (context %v)\n%s", err, ctx.Err(), out)
	}

	var agents []*Prometheus
	for shard := range 2 {
		agents = append(agents, startPrometheusWith(t, env, fmt.Sprintf("agent%d", shard), agentCfg(shard, false),
			"--agent", "--storage.agent.path="+env.Subdir(fmt.Sprintf("agent%d", shard))))
	}
	// The two halves are disjoint and cover the fleet.
	var shards [2][]string
	Eventually(t, 30*time.Second, "both agents' targets", func() (bool, string) {
		for i, a := range agents {
			ts, err := a.Targets()
			if err != nil {
				return false, err.Error()
			}
			shards[i] = nil
			for _, tg := range ts {
				shards[i] = append(shards[i], tg.Labels["cluster"])
			}
			slices.Sort(shards[i])
		}
		all := slices.Sorted(slices.Values(append(slices.Clone(shards[0]), shards[1]...)))
		want := slices.Sorted(slices.Values(names))
		return slices.Equal(all, want), fmt.Sprint(shards)
	})
	if len(shards[0]) == 0 || len(shards[1]) == 0 {
		t.Errorf("hashmod left an agent without clusters: %v", shards)
	}
	t.Logf("agent 0 scrapes %v, agent 1 %v", shards[0], shards[1])

	store.WaitQuery(60*time.Second, `etcd_monitor_up{job="etcd-monitor"} == 1`, func(s []Sample) bool { return len(s) == len(names) })
	broken.Members[0].Kill()
	waitAlert(t, store, "EtcdUnreachable", map[string]string{"cluster": "broken", "job": "etcd-monitor"})
	// A few more evaluations: nothing fires for the healthy clusters.
	time.Sleep(5 * time.Second)
	firing, err := store.Query(`ALERTS{alertstate="firing"}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range firing {
		if a.Labels["cluster"] != "broken" {
			t.Errorf("alert for a healthy cluster: %s", a)
		}
	}
}
