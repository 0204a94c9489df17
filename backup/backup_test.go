package backup

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/certgen"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/internal/toolbin"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

func startCluster(t *testing.T, n int) (*etcdtest.Cluster, *clientv3.Client) {
	t.Helper()
	cl := etcdtest.Start(t, n, func(_ int, cfg *embed.Config) { cfg.UnsafeNoFsync = true })
	cli, err := clientv3.New(clientv3.Config{Endpoints: cl.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cl, cli
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// fill writes n keys the ways a cluster's history holds them, so that every rule of etcd's hash
// is exercised: single puts and multi-put transactions (several sub-revisions in one revision),
// overwrites, deletes, a compaction whose revision is a delete (a tombstone exactly at the
// compaction), and more writes and deletes after it. It returns the compaction revision.
func fill(t *testing.T, cli *clientv3.Client, prefix string, n int) int64 {
	t.Helper()
	ctx := ctxT(t, 2*time.Minute)
	key := func(i int) string { return fmt.Sprintf("%s%06d", prefix, i) }
	half := n / 2
	// First half in transactions of 100 puts each.
	for start := 0; start < half; start += 100 {
		var ops []clientv3.Op
		for i := start; i < min(start+100, half); i++ {
			ops = append(ops, clientv3.OpPut(key(i), fmt.Sprintf("value-%d", i)))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
	// Second half one put at a time, from a few writers.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := half + w; i < n; i += 8 {
				if _, err := cli.Put(ctx, key(i), fmt.Sprintf("value-%d", i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Overwrites and deletes before the compaction, the last write a delete.
	for i := 0; i < n/20; i++ {
		if _, err := cli.Put(ctx, key(i), "overwritten"); err != nil {
			t.Fatal(err)
		}
	}
	var compactRev int64
	for i := n / 20; i < n/10; i++ {
		resp, err := cli.Delete(ctx, key(i))
		if err != nil {
			t.Fatal(err)
		}
		compactRev = resp.Header.Revision
	}
	if _, err := cli.Compact(ctx, compactRev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	// After the compaction: new versions, re-created keys, deletes.
	for i := 0; i < n/50; i++ {
		if _, err := cli.Put(ctx, key(i*3), "after compaction"); err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Delete(ctx, key(n-1-i)); err != nil {
			t.Fatal(err)
		}
	}
	return compactRev
}

func connOf(cl *etcdtest.Cluster) etcdconn.Config {
	return etcdconn.Config{Endpoints: cl.Endpoints()}
}

func members(t *testing.T, conn etcdconn.Config) []*snapshot.Member {
	t.Helper()
	tk, err := snapshot.NewTaker(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()
	s := tk.Take(ctxT(t, 10*time.Second), snapshot.Needs{Status: true})
	if s.MemberListErr != nil {
		t.Fatal(s.MemberListErr)
	}
	return s.Members
}

// startedMembers waits (bounded) until all n members have published their client URLs and
// answer Status: right after start a member is listed before its URLs are known.
func startedMembers(t *testing.T, conn etcdconn.Config, n int) []*snapshot.Member {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ms := members(t, conn)
		up := 0
		for _, m := range ms {
			if m.Up() {
				up++
			}
		}
		if up == n && len(ms) == n {
			return ms
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d members up after 20 s", up, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestSaveThreeMembersVerifies(t *testing.T) {
	cl, cli := startCluster(t, 3)
	compactRev := fill(t, cli, "/app/", 10000)
	dir := t.TempDir()

	res, err := Save(ctxT(t, time.Minute), SaveOptions{Conn: connOf(cl), Dir: dir, Cluster: "prod"})
	if err != nil {
		t.Fatalf("save: %v (verification %+v)", err, res.Verification)
	}
	if res.Result() != ResultVerified {
		t.Fatalf("result %s: %+v", res.Result(), res.Verification)
	}
	for _, m := range res.Verification.Members {
		if m.Outcome != MemberMatch || m.CompactRevision != compactRev {
			t.Errorf("member %s: %+v, want a match at compaction %d", m.Name, m, compactRev)
		}
	}
	cur, err := cli.Get(ctxT(t, 5*time.Second), "/app/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	info := res.File
	if info.Revision != cur.Header.Revision || int64(info.Keys) != cur.Count {
		t.Errorf("file revision %d with %d keys, cluster at revision %d with %d keys", info.Revision, info.Keys, cur.Header.Revision, cur.Count)
	}
	if info.CompactRevision != compactRev {
		t.Errorf("file compaction %d, want %d", info.CompactRevision, compactRev)
	}
	// A follower, never the leader, when followers are healthy.
	for _, m := range cl.Members {
		if m.Name == res.Member && m.Etcd().Server.Leader() == m.Etcd().Server.MemberID() {
			t.Errorf("streamed from the leader %s", m.Name)
		}
	}
	want := filepath.Join(dir, FileName("prod", res.Start, info.Revision))
	if res.Path != want {
		t.Errorf("saved as %s, want %s", res.Path, want)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != filepath.Base(want) {
		t.Errorf("directory holds %v, want only %s", entries, filepath.Base(want))
	}

	t.Run("etcdutl restore", func(t *testing.T) { restoreAndCompare(t, cli, res.Path, info.Revision) })
}

// restoreAndCompare restores the file with etcdutl snapshot restore, starts the pinned etcd on
// the result and compares it with the live cluster at the file's revision: the same keys with
// the same revisions and values, and the same HashKV.
func restoreAndCompare(t *testing.T, live *clientv3.Client, file string, rev int64) {
	etcdutl := toolbin.Path(t, "etcdutl", "ETCDUTL_BIN")
	etcdBin := toolbin.Path(t, "etcd", "ETCD_BIN")
	data := filepath.Join(t.TempDir(), "restored")
	peer := fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t))
	client := fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t))
	out, err := exec.Command(etcdutl, "snapshot", "restore", file, "--data-dir="+data, "--name=restored",
		"--initial-cluster=restored="+peer, "--initial-advertise-peer-urls="+peer).CombinedOutput()
	if err != nil {
		t.Fatalf("etcdutl snapshot restore: %v\n%s", err, out)
	}
	var logs strings.Builder
	cmd := exec.Command(etcdBin, "--name=restored", "--data-dir="+data, "--listen-peer-urls="+peer,
		"--initial-advertise-peer-urls="+peer, "--initial-cluster=restored="+peer,
		"--listen-client-urls="+client, "--advertise-client-urls="+client, "--log-level=error")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	rc, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	ctx := ctxT(t, time.Minute)
	var restored *clientv3.GetResponse
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		restored, err = rc.Get(cctx, "", clientv3.WithPrefix())
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restored etcd does not answer: %v\n%s", err, logs.String())
		}
	}
	orig, err := live.Get(ctx, "", clientv3.WithPrefix(), clientv3.WithRev(rev))
	if err != nil {
		t.Fatal(err)
	}
	if restored.Header.Revision != rev {
		t.Errorf("restored etcd at revision %d, the file holds %d", restored.Header.Revision, rev)
	}
	if len(restored.Kvs) != len(orig.Kvs) || len(orig.Kvs) == 0 {
		t.Fatalf("restored %d keys, the cluster had %d at revision %d", len(restored.Kvs), len(orig.Kvs), rev)
	}
	for i, kv := range orig.Kvs {
		r := restored.Kvs[i]
		if string(r.Key) != string(kv.Key) || string(r.Value) != string(kv.Value) || r.CreateRevision != kv.CreateRevision ||
			r.ModRevision != kv.ModRevision || r.Version != kv.Version {
			t.Fatalf("key %d differs: restored %+v, cluster %+v", i, r, kv)
		}
	}
	rh, err := rc.HashKV(ctx, client, rev)
	if err != nil {
		t.Fatal(err)
	}
	lh, err := live.HashKV(ctx, live.Endpoints()[0], rev)
	if err != nil {
		t.Fatal(err)
	}
	if rh.Hash != lh.Hash || rh.CompactRevision != lh.CompactRevision {
		t.Errorf("HashKV(%d): restored %d (compaction %d), cluster %d (compaction %d)", rev, rh.Hash, rh.CompactRevision, lh.Hash, lh.CompactRevision)
	}
}

// goodSnapshot streams a snapshot of a small cluster with clientv3 into a file.
func goodSnapshot(t *testing.T, n int) (string, *etcdtest.Cluster, *clientv3.Client) {
	t.Helper()
	cl, cli := startCluster(t, 1)
	fill(t, cli, "/k/", n)
	path := filepath.Join(t.TempDir(), "good.db")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cli.Snapshot(ctxT(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return path, cl, cli
}

func TestDamagedFilesAreCorrupt(t *testing.T) {
	good, _, _ := goodSnapshot(t, 2000)
	f, err := Open(good)
	if err != nil {
		t.Fatalf("the good file: %v", err)
	}
	f.Close()
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	const pageSize = 4096
	damagedPages := append([]byte(nil), data...)
	// Every page header's flags after the two meta pages, with the trailer recomputed: the
	// SHA-256 passes, so only the database checks can tell.
	for off := 2 * pageSize; off+pageSize <= len(damagedPages)-32; off += pageSize {
		damagedPages[off+8], damagedPages[off+9] = 0xee, 0xee
	}
	damagedPages = withTrailer(damagedPages[:len(damagedPages)-32])

	// Both meta pages (0 and 1), trailer recomputed: bbolt has no valid root to start from.
	damagedMeta := append([]byte(nil), data[:len(data)-32]...)
	for _, off := range []int{0, pageSize} {
		for i := 16; i < 64; i++ {
			damagedMeta[off+i] ^= 0x5a
		}
	}
	damagedMeta = withTrailer(damagedMeta)

	flipped := append([]byte(nil), data...)
	flipped[len(flipped)/2] ^= 0x01

	cases := map[string]struct {
		data []byte
		says string
	}{
		"truncated":              {data[:len(data)/2], "no SHA-256 trailer"},
		"truncated by 512 bytes": {data[:len(data)-512], "SHA-256 mismatch"},
		"flipped byte":           {flipped, "SHA-256 mismatch"},
		"missing trailer":        {data[:len(data)-32], "no SHA-256 trailer"},
		"damaged pages":          {damagedPages, "bbolt"},
		"damaged meta pages":     {damagedMeta, "bbolt database does not open"},
		"empty":                  {nil, "no SHA-256 trailer"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.db")
			if err := os.WriteFile(p, c.data, 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := Open(p)
			if err == nil {
				f.Close()
				t.Fatal("opened without error")
			}
			if !IsCorrupt(err) || !strings.Contains(err.Error(), c.says) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q: want a one-line corrupt error saying %q", err, c.says)
			}
		})
	}
}

// withTrailer appends the SHA-256 etcd appends to a snapshot.
func withTrailer(db []byte) []byte {
	sum := sha256.Sum256(db)
	return append(append([]byte(nil), db...), sum[:]...)
}

func TestEtcdctlSnapshotVerifies(t *testing.T) {
	etcdctl := toolbin.Path(t, "etcdctl", "ETCDCTL_BIN")
	cl, cli := startCluster(t, 1)
	fill(t, cli, "/ctl/", 3000)
	path := filepath.Join(t.TempDir(), "etcdctl.db")
	out, err := exec.Command(etcdctl, "--endpoints="+cl.Endpoints()[0], "snapshot", "save", path).CombinedOutput()
	if err != nil {
		t.Fatalf("etcdctl snapshot save: %v\n%s", err, out)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v := VerifyAgainst(ctxT(t, 30*time.Second), f, connOf(cl), members(t, connOf(cl)))
	if v.Result != ResultVerified {
		t.Fatalf("etcdctl's snapshot: %+v", v)
	}
}

// A snapshot compared with another cluster that reached the same revision and compaction with
// other keys (the wrong --etcd.endpoints, say) is a mismatch, not a match.
func TestVerifyAgainstAnotherClusterMismatches(t *testing.T) {
	path, _, _ := goodSnapshot(t, 500)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// The same history (so the same revisions and compaction) under other keys.
	other, ocli := startCluster(t, 1)
	fill(t, ocli, "/x/", 500)
	ctx := ctxT(t, time.Minute)
	v := VerifyAgainst(ctx, f, connOf(other), members(t, connOf(other)))
	if m := v.Members; len(m) != 1 || m[0].CompactRevision != f.Info().CompactRevision {
		t.Fatalf("the other cluster's history differs from the file's: %+v, file %+v", v, f.Info())
	}
	if v.Result != ResultMismatch || v.Members[0].Outcome != MemberMismatch {
		t.Fatalf("against another cluster: %+v", v)
	}
	if v.Result.ExitCode() != 1 {
		t.Errorf("mismatch exits %d", v.Result.ExitCode())
	}
}

// Once the cluster compacted past the file's revision, no member can hash it: unverifiable, and
// the verdict says it is because of compaction.
func TestVerifyAfterCompactionIsCompacted(t *testing.T) {
	path, cl, cli := goodSnapshot(t, 500)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := ctxT(t, time.Minute)
	var last int64
	for i := range 5 {
		resp, err := cli.Put(ctx, fmt.Sprintf("/later/%d", i), "x")
		if err != nil {
			t.Fatal(err)
		}
		last = resp.Header.Revision
	}
	if _, err := cli.Compact(ctx, last); err != nil {
		t.Fatal(err)
	}
	v := VerifyAgainst(ctx, f, connOf(cl), members(t, connOf(cl)))
	if v.Result != ResultCompacted || !strings.Contains(v.Reason, "compacted") {
		t.Fatalf("after compaction: %+v", v)
	}
}

func TestVerifyUnreachableIsUnverifiable(t *testing.T) {
	path, cl, _ := goodSnapshot(t, 100)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ms := members(t, connOf(cl))
	cl.Close()
	v := VerifyAgainst(ctxT(t, 5*time.Second), f, connOf(cl), ms)
	if v.Result != ResultUnverifiable || v.Members[0].Outcome != MemberError {
		t.Fatalf("with the cluster down: %+v", v)
	}
}

func TestSaveRetentionKeepsNAndForeignFiles(t *testing.T) {
	cl, cli := startCluster(t, 1)
	dir := t.TempDir()
	foreign := []string{
		"snapshot.db",                       // etcdctl's
		"other-20200101T000000Z-rev1.db",    // another cluster's
		"prod-eu-20200101T000000Z-rev1.db",  // a cluster whose name starts like ours
		"prod-20200101T000000Z-rev1.db.bak", // a copy
		"prod-2020-01-01-rev1.db",           // another tool's dates
		"prod-20200101T000000Z-rev01.db",    // not a number we write
		".prod-123.partial",                 // another run's stream in progress
		"prod-20200101T000000Z-revX.db",     // not a revision
		"notes.txt",
	}
	for _, n := range foreign {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("keep me"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Ours, older than any the saves below make; the oldest of all is a directory, never removed.
	if err := os.Mkdir(filepath.Join(dir, "prod-20190101T000000Z-rev1.db"), 0o700); err != nil {
		t.Fatal(err)
	}
	oldest := []string{"prod-20200101T000000Z-rev5.db", "prod-20200102T000000Z-rev3.db"}
	for _, n := range oldest {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var saved []string
	for i := range 3 {
		if _, err := cli.Put(ctxT(t, 5*time.Second), "/k", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
		res, err := Save(ctxT(t, 30*time.Second), SaveOptions{Conn: connOf(cl), Dir: dir, Cluster: "prod", Keep: 2})
		if err != nil {
			t.Fatal(err)
		}
		saved = append(saved, filepath.Base(res.Path))
		if want := oldest[min(i, 1)]; i < 2 && (len(res.Removed) != 1 || res.Removed[0] != want) {
			t.Errorf("save %d removed %v, want [%s]", i, res.Removed, want)
		}
	}
	for _, n := range foreign {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil || string(b) != "keep me" {
			t.Errorf("foreign file %s: %q, %v", n, b, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "prod-20190101T000000Z-rev1.db")); err != nil || !fi.IsDir() {
		t.Errorf("a directory named like a snapshot was touched: %v", err)
	}
	list, err := List(dir, "prod")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range list {
		names = append(names, s.Name)
	}
	// The saves may fall in the same second; then the revision orders them.
	if want := saved[1:]; strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("kept %v, want the two newest %v", names, want)
	}
}

func TestChooseMemberByNameAndID(t *testing.T) {
	cl, _ := startCluster(t, 3)
	s := &snapshot.Snapshot{Members: startedMembers(t, connOf(cl), 3)}
	for _, m := range s.Members {
		for _, want := range []string{m.Name, snapshot.IDString(m.ID)} {
			got, err := ChooseMember(s, want)
			if err != nil || got.ID != m.ID {
				t.Errorf("--member %s: %v, %v", want, got, err)
			}
		}
	}
	if _, err := ChooseMember(s, "nobody"); err == nil || !strings.Contains(err.Error(), "no member named") {
		t.Errorf("unknown member: %v", err)
	}
	cl.Members[1].Stop()
	s = &snapshot.Snapshot{Members: members(t, connOf(cl))}
	if _, err := ChooseMember(s, cl.Members[1].Name); err == nil || !strings.Contains(err.Error(), "is down") {
		t.Errorf("a stopped member: %v", err)
	}
	got, err := ChooseMember(s, "")
	if err != nil || got.Name == cl.Members[1].Name {
		t.Errorf("default choice with m1 down: %v, %v", got, err)
	}
	if errors.Is(err, ErrNoMember) {
		t.Error("no member")
	}
}

// With every key deleted, the compaction keeps nothing and etcd hashes every revision up to the
// file's, except a tombstone exactly at the compaction: the one case where that rule decides.
func TestVerifyEmptiedKeyspace(t *testing.T) {
	cl, cli := startCluster(t, 1)
	ctx := ctxT(t, 30*time.Second)
	for _, k := range []string{"/a", "/b", "/a"} {
		if _, err := cli.Put(ctx, k, "v"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Delete(ctx, "/b"); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Delete(ctx, "/a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	res, err := Save(ctx, SaveOptions{Conn: connOf(cl), Dir: t.TempDir(), Cluster: "etcd"})
	if err != nil || res.Result() != ResultVerified {
		t.Fatalf("save: %v, %+v", err, res.Verification)
	}
	if res.File.Keys != 0 || res.File.CompactRevision != resp.Header.Revision {
		t.Errorf("file %+v: want no key and the compaction at %d", res.File, resp.Header.Revision)
	}
}

// hungListener accepts connections and never answers, as a SIGSTOPped member does; it counts them.
func hungListener(t *testing.T) (string, func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range held {
			c.Close()
		}
	})
	return "http://" + ln.Addr().String(), func() int { mu.Lock(); defer mu.Unlock(); return len(held) }
}

// A member that hangs costs the comparison its deadline, not the verdict: the others verify the
// file. A member that was down when the cluster was looked at is not asked at all.
func TestVerifyWithHungAndDownMembers(t *testing.T) {
	path, cl, _ := goodSnapshot(t, 200)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hung, _ := hungListener(t)
	down, accepted := hungListener(t)
	ms := append(members(t, connOf(cl)),
		&snapshot.Member{ID: 0xbad, Name: "hung", Endpoint: hung, Alarms: map[string]bool{}},
		&snapshot.Member{ID: 0xdead, Name: "down", Endpoint: down, StatusErr: errors.New("context deadline exceeded"), Alarms: map[string]bool{}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	v := VerifyAgainst(ctx, f, connOf(cl), ms)
	if v.Result != ResultVerified {
		t.Fatalf("%+v", v)
	}
	outcomes := map[string]string{}
	for _, m := range v.Members {
		outcomes[m.Name] = m.Outcome
	}
	if outcomes["m0"] != MemberMatch || outcomes["hung"] != MemberError || outcomes["down"] != MemberError {
		t.Errorf("outcomes %v", outcomes)
	}
	if n := accepted(); n != 0 {
		t.Errorf("the member that was down was asked (%d connections)", n)
	}
}

// An address that reaches another member than the list says (a VIP, a reused address) does not
// count as that member's hash.
func TestVerifyRefusesAnotherMembersAnswer(t *testing.T) {
	path, cl, _ := goodSnapshot(t, 100)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ms := members(t, connOf(cl))
	impostor := &snapshot.Member{ID: ms[0].ID + 1, Name: "impostor", Endpoint: ms[0].Endpoint, Status: ms[0].Status, Alarms: map[string]bool{}}
	v := VerifyAgainst(ctxT(t, 10*time.Second), f, connOf(cl), []*snapshot.Member{impostor})
	if v.Result != ResultUnverifiable || v.Members[0].Outcome != MemberError || !strings.Contains(v.Members[0].Error, "answered by member") {
		t.Fatalf("%+v", v)
	}
}

// startEtcdProcess runs one member of the named pinned etcd binary on loopback until the test
// ends and returns its client URL once it answers.
func startEtcdProcess(t *testing.T, name, env string) string {
	t.Helper()
	bin := toolbin.Path(t, name, env)
	peer := fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t))
	client := fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t))
	var logs strings.Builder
	cmd := exec.Command(bin, "--name=p0", "--data-dir="+filepath.Join(t.TempDir(), "data"),
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer, "--initial-cluster=p0="+peer,
		"--listen-client-urls="+client, "--advertise-client-urls="+client, "--log-level=error",
		"--unsafe-no-fsync")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := cli.Get(ctx, "health")
		cancel()
		if err == nil {
			return client
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer: %v\n%s", name, err, logs.String())
		}
	}
}

// etcd 3.5 computes HashKV with the same rules (the tombstone rule since 3.5.16): a snapshot of a
// 3.5.21 member, compacted and written again, verifies too.
func TestSaveFromEtcd35Verifies(t *testing.T) {
	ep := startEtcdProcess(t, "etcd-3.5", "ETCD35_BIN")
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	compactRev := fill(t, cli, "/v35/", 2000)
	res, err := Save(ctxT(t, time.Minute), SaveOptions{Conn: etcdconn.Config{Endpoints: []string{ep}}, Dir: t.TempDir(), Cluster: "old"})
	if err != nil || res.Result() != ResultVerified {
		t.Fatalf("save: %v, %+v", err, res.Verification)
	}
	if res.File.CompactRevision != compactRev || res.File.StorageVersion != "" {
		t.Errorf("file %+v: want compaction %d and no storage version (3.5 writes none)", res.File, compactRev)
	}
}

// Learners refuse Maintenance.Snapshot and HashKV: never streamed from, never asked.
func TestSaveSkipsLearner(t *testing.T) {
	cl, cli := startCluster(t, 1)
	learner, _ := cl.Add(t, true)
	learner.Start(t)
	fill(t, cli, "/l/", 200)
	conn := connOf(cl)
	startedMembers(t, conn, 2)
	res, err := Save(ctxT(t, 30*time.Second), SaveOptions{Conn: conn, Dir: t.TempDir(), Cluster: "etcd"})
	if err != nil || res.Result() != ResultVerified {
		t.Fatalf("save: %v, %+v", err, res.Verification)
	}
	if res.Member != "m0" {
		t.Errorf("streamed from %s, want the voter m0", res.Member)
	}
	if len(res.Verification.Members) != 1 || res.Verification.Members[0].Name != "m0" {
		t.Errorf("compared with %+v, want the voter alone", res.Verification.Members)
	}
	if _, err := Save(ctxT(t, 30*time.Second), SaveOptions{Conn: conn, Dir: t.TempDir(), Cluster: "etcd", Member: learner.Name}); err == nil || !strings.Contains(err.Error(), "learner") {
		t.Errorf("--member=%s: %v, want a learner error", learner.Name, err)
	}
}

// --etcd.tls.server-name is the name the members' certificates carry when their addresses are
// not in them (certificates for a DNS name, reached by IP): the stream and the HashKV comparison
// verify it as every other client of the exporter does.
func TestSaveVerifiesTheConfiguredServerName(t *testing.T) {
	p := certgen.NewNamedEtcdPKI(t, "etcd.example")
	cl := p.Start(t)
	conn := etcdconn.Config{Endpoints: cl.Endpoints(), CAFile: p.CAFile, CertFile: p.ClientCert, KeyFile: p.ClientKey, ServerName: "etcd.example"}
	res, err := Save(ctxT(t, 30*time.Second), SaveOptions{Conn: conn, Dir: t.TempDir(), Cluster: "etcd"})
	if err != nil || res.Result() != ResultVerified {
		t.Fatalf("save with --etcd.tls.server-name: %v, %+v", err, res.Verification)
	}
}
