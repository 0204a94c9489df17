package defrag

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/internal/toolbin"
)

// startEtcd35 runs one member of the pinned etcd 3.5 (./bin/etcd-3.5) with the given quota and
// returns its client URL.
func startEtcd35(t *testing.T, quota int64) string {
	t.Helper()
	bin := toolbin.Path(t, "etcd-3.5", "ETCD35_BIN")
	client := fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t))
	peer := fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t))
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--name=old", "--data-dir="+t.TempDir(),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer, "--initial-cluster=old="+peer,
		fmt.Sprintf("--quota-backend-bytes=%d", quota), "--log-level=error")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting etcd 3.5: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	cli := newClient(t, client)
	for attempt := 0; attempt < 100; attempt++ {
		if st, err := cli.Status(ctxT(t, time.Second), client); err == nil {
			if !strings.HasPrefix(st.Version, "3.5.") {
				t.Fatalf("%s is etcd %s, want 3.5", bin, st.Version)
			}
			return client
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("etcd 3.5 did not answer; logs:\n%s", logs.String())
	return ""
}

// TestEtcd35QuotaFromFlag: etcd 3.5 reports no quota, so the quota condition needs --quota-bytes;
// with it the member is selected, and defragmenting a 3.5 member works.
func TestEtcd35QuotaFromFlag(t *testing.T) {
	const quota = 8 * MiB
	ep := startEtcd35(t, quota)
	cli := newClient(t, ep)
	ctx := ctxT(t, 2*time.Minute)
	val := strings.Repeat("o", 60*1024)
	// Fill to above 80% of the quota but short of NOSPACE, then free half of it.
	for i := 0; ; i++ {
		if i >= 200 {
			t.Fatal("the file never reached 85% of the quota")
		}
		if _, err := cli.Put(ctx, fmt.Sprintf("/old/%04d", i), val); err != nil {
			t.Fatalf("put: %v", err)
		}
		if st := states(t, ctx, cli, []string{ep})[ep]; float64(st.dbSize) > 0.85*quota {
			break
		}
	}
	resp, err := cli.Delete(ctx, "/old/0", clientv3.WithPrefix()) // keys 0000-0099
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	for attempt := 0; ; attempt++ {
		st := states(t, ctx, cli, []string{ep})[ep]
		if st.dbSize-st.inUse > MiB {
			break
		}
		if attempt >= 150 {
			t.Fatalf("nothing freed: %+v", st)
		}
		if _, err := cli.Put(ctx, "/nudge", "x"); err != nil { // see fragment
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	cfg := testConfig()
	cfg.Rule.MinFreeRatio, cfg.Rule.MinFreeBytes = 1, 1<<40 // only the quota condition can select
	cfg.DryRun = true
	r, _ := newRunner(t, []string{ep}, cfg)
	rep, err := r.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m := rep.Members[0]; m.Needed || m.QuotaSource != "unknown" || !strings.Contains(m.Reason, "quota unknown") {
		t.Errorf("without --quota-bytes: %+v, want not needed, quota unknown", m)
	}

	cfg.DryRun = false
	cfg.QuotaBytes = quota
	r, progress := newRunner(t, []string{ep}, cfg)
	rep, err = r.Run(ctx)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, progress)
	}
	m := rep.Members[0]
	if m.QuotaSource != "flag" || m.Before.Quota != quota || m.State != StateDone || m.After == nil || m.After.DBSize >= m.Before.DBSize {
		t.Errorf("with --quota-bytes: %+v (after %+v), want selected by the quota, done, smaller", m, m.After)
	}
}
