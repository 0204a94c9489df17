package mixin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/etcd-monitor/etcd-monitor/internal/freeport"
)

// TestInhibitRulesInAlertmanager posts alerts to a real Alertmanager running the shipped
// inhibit_rules (alerts/alertmanager.yml) and reads back which ones it holds back: each cause
// silences what follows from it in its own cluster only, and never what it must not.
func TestInhibitRulesInAlertmanager(t *testing.T) {
	bin := tool(t, "alertmanager", "ALERTMANAGER")
	dir := writeRendered(t)
	var shipped map[string]any
	b, err := os.ReadFile(filepath.Join(dir, "alerts", "alertmanager.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &shipped); err != nil {
		t.Fatal(err)
	}
	// The shipped inhibit rules with a receiver that sends nothing anywhere.
	cfg, err := yaml.Marshal(map[string]any{
		"route":         map[string]any{"receiver": "nowhere"},
		"receivers":     []any{map[string]any{"name": "nowhere"}},
		"inhibit_rules": shipped["inhibit_rules"],
	})
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "am.yml")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freeport.Take(t, 1)[0])
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var logs bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "--config.file="+cfgPath, "--storage.path="+filepath.Join(dir, "am-data"),
		"--web.listen-address="+addr, "--cluster.listen-address=")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	base := "http://" + addr
	client := &http.Client{Timeout: 5 * time.Second}
	for i := 0; ; i++ {
		if resp, err := client.Get(base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if i == 300 {
			t.Fatalf("alertmanager not ready after 30 s:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	type labels map[string]string
	cases := []struct {
		name           string
		source, target labels
		inhibited      bool
	}{
		{"unreachable explains a member down", labels{"alertname": "EtcdUnreachable", "severity": "critical"},
			labels{"alertname": "EtcdMemberDown", "severity": "warning", "member_id": "a1"}, true},
		{"unreachable keeps an expired certificate, a cause of it", labels{"alertname": "EtcdUnreachable", "severity": "critical"},
			labels{"alertname": "EtcdCertificateExpired", "severity": "critical", "listener": "client"}, false},
		{"quorum lost explains no leader", labels{"alertname": "EtcdQuorumLost", "severity": "critical"},
			labels{"alertname": "EtcdNoLeader", "severity": "critical"}, true},
		{"no leader explains failed proposals", labels{"alertname": "EtcdNoLeader", "severity": "critical"},
			labels{"alertname": "EtcdHighNumberOfFailedProposals", "severity": "warning", "instance": "m0:2379"}, true},
		{"a critical tier holds back the warning of the same alert and member", labels{"alertname": "EtcdDatabaseQuotaUsageHigh", "severity": "critical", "member_id": "a1"},
			labels{"alertname": "EtcdDatabaseQuotaUsageHigh", "severity": "warning", "member_id": "a1"}, true},
		{"a critical tier keeps another member's warning", labels{"alertname": "EtcdDatabaseQuotaUsageHigh", "severity": "critical", "member_id": "a1"},
			labels{"alertname": "EtcdDatabaseQuotaUsageHigh", "severity": "warning", "member_id": "b2"}, false},
		{"quorum lost explains a failed backup", labels{"alertname": "EtcdQuorumLost", "severity": "critical"},
			labels{"alertname": "EtcdBackupFailing", "severity": "warning"}, true},
		{"nothing holds back a backup too old", labels{"alertname": "EtcdUnreachable", "severity": "critical"},
			labels{"alertname": "EtcdBackupTooOld", "severity": "critical"}, false},
	}
	type alert struct {
		Labels   labels    `json:"labels"`
		StartsAt time.Time `json:"startsAt"`
		EndsAt   time.Time `json:"endsAt"`
	}
	var posted []alert
	now := time.Now()
	with := func(l labels, cluster string) labels {
		out := labels{"cluster": cluster, "job": "etcd-monitor"}
		for k, v := range l {
			out[k] = v
		}
		return out
	}
	for i, c := range cases {
		cluster := fmt.Sprintf("c%d", i)
		// The target twice: beside its cause, and in another cluster where nothing explains it.
		for _, l := range []labels{with(c.source, cluster), with(c.target, cluster), with(c.target, cluster+"-other")} {
			posted = append(posted, alert{Labels: l, StartsAt: now, EndsAt: now.Add(time.Hour)})
		}
	}
	body, err := json.Marshal(posted)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Post(base+"/api/v2/alerts", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("posting alerts: %s", resp.Status)
	}

	// The inhibitor learns of the sources asynchronously: read until every case holds (20 s).
	var wrong []string
	for try := 0; try < 100; try++ {
		var got []struct {
			Labels labels `json:"labels"`
			Status struct {
				InhibitedBy []string `json:"inhibitedBy"`
			} `json:"status"`
		}
		resp, err := client.Get(base + "/api/v2/alerts")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		inhibited := map[string]bool{}
		for _, a := range got {
			inhibited[a.Labels["cluster"]+"/"+a.Labels["alertname"]+"/"+a.Labels["severity"]+"/"+a.Labels["member_id"]] = len(a.Status.InhibitedBy) > 0
		}
		key := func(l labels, cluster string) string {
			return cluster + "/" + l["alertname"] + "/" + l["severity"] + "/" + l["member_id"]
		}
		wrong = nil
		for i, c := range cases {
			cluster := fmt.Sprintf("c%d", i)
			if got, ok := inhibited[key(c.target, cluster)]; !ok || got != c.inhibited {
				wrong = append(wrong, fmt.Sprintf("%s: %s inhibited=%v (listed %v), want %v", c.name, c.target["alertname"], got, ok, c.inhibited))
			}
			if inhibited[key(c.target, cluster+"-other")] {
				wrong = append(wrong, fmt.Sprintf("%s: %s inhibited in another cluster", c.name, c.target["alertname"]))
			}
		}
		if len(wrong) == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Errorf("inhibition after 20 s:\n%s", strings.Join(wrong, "\n"))
}
