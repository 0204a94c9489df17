package collector

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

func backupExporter(t *testing.T, dirs ...string) (*Exporter, error) {
	t.Helper()
	// The backup collector makes no etcd call. The endpoint accepts connections and never
	// answers, so the snapshot's member list takes the scrape's whole deadline: the collector's
	// duration must not include it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range held {
			c.Close()
		}
	})
	taker, err := snapshot.NewTaker(etcdconn.Config{Endpoints: []string{ln.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(taker.Close)
	return New(taker, []string{"backup"}, WithBackupDirs(dirs))
}

func writeAt(t *testing.T, path string, size int, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func TestBackupCollectorReportsNewestFile(t *testing.T) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	dir := t.TempDir()
	writeAt(t, filepath.Join(dir, "etcd-20260101T000000Z-rev10.db"), 100, base.Add(-time.Hour))
	writeAt(t, filepath.Join(dir, "snapshot.db"), 300, base) // etcdctl's, newest of the counted
	// Still being written, by etcd-monitor and by etcdctl: newer, but not snapshots yet.
	writeAt(t, filepath.Join(dir, ".etcd-123.partial"), 7, base.Add(time.Hour))
	writeAt(t, filepath.Join(dir, "snapshot.db.part"), 7, base.Add(time.Hour))
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeAt(t, filepath.Join(dir, "sub", "deeper.db"), 9, base.Add(2*time.Hour)) // not in dir itself
	// A link counts as the file it points to.
	elsewhere := filepath.Join(t.TempDir(), "linked.db")
	writeAt(t, elsewhere, 50, base.Add(-2*time.Hour))
	if err := os.Symlink(elsewhere, filepath.Join(dir, "link.db")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "dangling.db")); err != nil {
		t.Fatal(err)
	}

	other := t.TempDir()
	empty := t.TempDir()
	glob := filepath.Join(other, "*", "prod-*.db")
	for _, cl := range []string{"a", "b"} {
		if err := os.Mkdir(filepath.Join(other, cl), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeAt(t, filepath.Join(other, "a", "prod-1.db"), 11, base.Add(-3*time.Hour))
	writeAt(t, filepath.Join(other, "b", "prod-2.db"), 22, base.Add(-4*time.Hour))
	writeAt(t, filepath.Join(other, "b", "dev-1.db"), 33, base)

	e, err := backupExporter(t, dir, glob, empty)
	if err != nil {
		t.Fatal(err)
	}
	got := values(t, registryFor(e, 1500*time.Millisecond))
	want := map[string]float64{
		fmt.Sprintf("etcd_monitor_backup_files{dir=%q}", dir):                          3,
		fmt.Sprintf("etcd_monitor_backup_newest_file_timestamp_seconds{dir=%q}", dir):  float64(base.Unix()),
		fmt.Sprintf("etcd_monitor_backup_newest_file_size_bytes{dir=%q}", dir):         300,
		fmt.Sprintf("etcd_monitor_backup_files{dir=%q}", glob):                         2,
		fmt.Sprintf("etcd_monitor_backup_newest_file_timestamp_seconds{dir=%q}", glob): float64(base.Add(-3 * time.Hour).Unix()),
		fmt.Sprintf("etcd_monitor_backup_newest_file_size_bytes{dir=%q}", glob):        11,
		fmt.Sprintf("etcd_monitor_backup_files{dir=%q}", empty):                        0,
		`etcd_monitor_scrape_collector_success{collector="backup"}`:                    1,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	for k := range got {
		if strings.Contains(k, "newest_file") && strings.Contains(k, fmt.Sprintf("%q", empty)) {
			t.Errorf("an empty directory has %s", k)
		}
	}
	if d := got[`etcd_monitor_scrape_collector_duration_seconds{collector="backup"}`]; d >= 1 {
		t.Errorf("the backup collector's duration %v s includes the member list's wait for etcd", d)
	}
}

// A directory that cannot be listed fails the collector, and the others are still reported.
func TestBackupCollectorMissingDirFails(t *testing.T) {
	dir := t.TempDir()
	writeAt(t, filepath.Join(dir, "a.db"), 1, time.Now())
	missing := filepath.Join(t.TempDir(), "missing")
	e, err := backupExporter(t, missing, dir)
	if err != nil {
		t.Fatal(err)
	}
	got := values(t, registryFor(e, 2*time.Second))
	if got[`etcd_monitor_scrape_collector_success{collector="backup"}`] != 0 {
		t.Errorf("success with a missing directory: %v", got)
	}
	if got[fmt.Sprintf("etcd_monitor_backup_files{dir=%q}", dir)] != 1 {
		t.Errorf("the listable directory is not reported: %v", got)
	}
	for k := range got {
		if strings.Contains(k, missing) {
			t.Errorf("the missing directory has %s", k)
		}
	}
}

func TestBackupCollectorNeedsDirs(t *testing.T) {
	if _, err := backupExporter(t); err == nil || !strings.Contains(err.Error(), "--backup.dir") {
		t.Errorf("no directory: %v", err)
	}
	if _, err := backupExporter(t, "/backups/[a"); err == nil || !strings.Contains(err.Error(), "/backups/[a") {
		t.Errorf("bad glob: %v", err)
	}
}

// A directory whose name is not valid UTF-8 (Linux allows it) cannot be a label value: a
// one-line error at start-up, not a series dropped at every scrape.
func TestBackupCollectorInvalidUTF8Dir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bad\xff")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := backupExporter(t, dir); err == nil || !strings.Contains(err.Error(), "UTF-8") || strings.Contains(err.Error(), "\n") {
		t.Errorf("invalid UTF-8 directory: %v", err)
	}
}
