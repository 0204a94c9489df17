package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

// TestDivergedMemberIsDegraded: a follower whose data was changed on disk while stopped makes
// `check --consistency` degraded (exit 1) naming it, while `check` alone does not compare (exit
// 0); the status API reports it degraded once a scrape of the metrics ran the comparison.
func TestDivergedMemberIsDegraded(t *testing.T) {
	dirs := make([]string, 3)
	c := etcdtest.Start(t, 3, func(i int, cfg *embed.Config) { dirs[i] = cfg.Dir })
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 5 {
		if _, err := cli.Put(ctx, fmt.Sprintf("k%d", i), "value"); err != nil {
			t.Fatal(err)
		}
	}
	c.Settle()
	victim := c.Members[0]
	if uint64(victim.Etcd().Server.Leader()) == victim.ID() {
		victim = c.Members[1]
	}
	dir := dirs[0]
	if victim == c.Members[1] {
		dir = dirs[1]
	}
	victim.Stop()
	etcdtest.CorruptValue(t, dir, "k2")
	victim.Restart(t)
	c.Settle()
	eps := "--etcd.endpoints=" + strings.Join(c.Endpoints(), ",")

	runCheckUntil(t, 0, eps)
	out := captureStdout(t, func() {
		if code := run([]string{"check", eps, "--consistency", "--timeout=10s"}); code != 1 {
			t.Errorf("check --consistency = %d, want 1", code)
		}
	})
	if !strings.HasPrefix(out, "ETCD DEGRADED - member "+victim.Name+" (") || !strings.Contains(out, "data differs from the majority's") {
		t.Errorf("check --consistency output:\n%s", out)
	}
	// The same cluster named in a config file: the fleet check compares each cluster as the
	// single-cluster check does.
	path := filepath.Join(t.TempDir(), "fleet.yml")
	cfg := fmt.Sprintf("clusters:\n  - name: diverged\n    endpoints: [%s]\n", strings.Join(c.Endpoints(), ", "))
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out = captureStdout(t, func() {
		if code := run([]string{"check", "--config.file=" + path, "--consistency", "--timeout=10s"}); code != 1 {
			t.Errorf("check --config.file --consistency = %d, want 1", code)
		}
	})
	if !strings.HasPrefix(out, "ETCD DEGRADED - diverged degraded: member "+victim.Name+" (") || !strings.Contains(out, "data differs from the majority's") {
		t.Errorf("check --config.file --consistency output:\n%s", out)
	}

	srv := httptest.NewServer(testExporterHandler(t, c.Endpoints()))
	defer srv.Close()
	status := func() (string, []string) {
		resp, err := srv.Client().Get(srv.URL + "/api/v1/cluster/status")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r apiStatus
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
		return r.Data.Cluster.Health.Verdict, r.Data.Cluster.Health.Reasons
	}
	// The API starts no comparison of its own.
	if v, reasons := status(); v != "healthy" {
		t.Errorf("before any scrape: %s %q", v, reasons)
	}
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), fmt.Sprintf(`etcd_monitor_member_data_consistent{member="%s",member_id=`, victim.Name)) {
		t.Fatalf("scrape has no verdict for %s:\n%s", victim.Name, body)
	}
	v, reasons := status()
	if v != "degraded" || len(reasons) != 1 || !strings.HasPrefix(reasons[0], "member "+victim.Name+" (") {
		t.Errorf("after a scrape: %s %q", v, reasons)
	}
}
