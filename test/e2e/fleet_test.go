//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// writeFleet writes etcd-monitor's --config.file: one cluster per name, on its members' endpoints.
func writeFleet(t *testing.T, path string, clusters map[string]*Cluster) {
	t.Helper()
	var b strings.Builder
	b.WriteString("clusters:\n")
	for name, c := range clusters {
		fmt.Fprintf(&b, "  - name: %s\n    endpoints: [%s]\n", name, strings.Join(c.Endpoints(), ", "))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// One http_sd_configs entry, without relabeling, scrapes every cluster of the exporter's file with
// its cluster label; a cluster added by a reload is scraped, a removed one is dropped.
func TestPrometheusScrapesTheFleetThroughSD(t *testing.T) {
	env := NewEnv(t)
	one := env.StartEtcd(EtcdOptions{Members: 1})
	// A workspace of its own: the harness names every cluster's data directories alike.
	two := NewEnv(t).StartEtcd(EtcdOptions{Members: 1})
	fleetPath := env.WriteFile("fleet.yml", nil)
	writeFleet(t, fleetPath, map[string]*Cluster{"one": one})
	x := env.StartExporter("--config.file="+fleetPath, "--web.enable-lifecycle")

	cfg, err := yaml.Marshal(map[string]any{
		"global": map[string]any{"scrape_interval": "1s", "scrape_timeout": "1s"},
		"scrape_configs": []any{map[string]any{
			"job_name":        "fleet",
			"http_sd_configs": []any{map[string]any{"url": x.URL + "/sd", "refresh_interval": "1s"}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", FreePorts(t, 1)[0])
	p := &Prometheus{Addr: addr, URL: "http://" + addr, ConfigPath: env.WriteFile("prometheus.yml", cfg)}
	p.Process = env.Start("prometheus", Binary(t, BinPrometheus),
		"--config.file="+p.ConfigPath, "--storage.tsdb.path="+env.Subdir("prometheus"), "--web.listen-address="+addr,
		"--scrape.discovery-reload-interval=1s")
	p.WaitHTTP(p.URL+"/-/ready", startTimeout)

	p.WaitQuery(30*time.Second, `etcd_monitor_up{job="fleet",cluster="one",instance=`+fmt.Sprintf("%q", x.Addr)+`}`, AllEqual(1, 1))
	p.WaitQuery(30*time.Second, `etcd_monitor_cluster_members_up{job="fleet",cluster="one"}`, AllEqual(1, 1))

	writeFleet(t, fleetPath, map[string]*Cluster{"two": two})
	resp, err := http.Post(x.URL+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("reload: %s", resp.Status)
	}
	p.WaitQuery(30*time.Second, `etcd_monitor_cluster_members_up{job="fleet",cluster="two"}`, AllEqual(1, 1))
	// The series labelled two are cluster two's member, not one's.
	samples := p.WaitQuery(30*time.Second, `etcd_monitor_member_info{job="fleet",cluster="two"}`, AllEqual(1, 1))
	if got, want := samples[0].Labels["client_urls"], two.Members[0].ClientURL; got != want {
		t.Errorf("cluster two's member has client URLs %q, want %q", got, want)
	}
	Eventually(t, 30*time.Second, "cluster one dropped from the targets", func() (bool, string) {
		ts, err := p.Targets()
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, tg := range ts {
			seen = append(seen, tg.Labels["cluster"]+" "+tg.ScrapeURL)
		}
		return len(ts) == 1 && ts[0].Labels["cluster"] == "two" && strings.HasSuffix(ts[0].ScrapeURL, "/probe?cluster=two"), strings.Join(seen, ", ")
	})
	if s, err := p.Query(`etcd_monitor_config_last_reload_successful`); err != nil || len(s) != 0 {
		t.Errorf("the exporter's own metrics reached the fleet job: %v %v", s, err)
	}
}
