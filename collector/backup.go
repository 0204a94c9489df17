package collector

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

func init() {
	registerCollector("backup", false, snapshot.Needs{}, phaseNone, newBackupCollector)
}

// WithBackupDirs sets the directories or globs the backup collector watches (--backup.dir).
func WithBackupDirs(patterns []string) Option {
	return func(e *Exporter) { e.backupDirs = append([]string(nil), patterns...) }
}

// backupCollector reports how fresh the snapshot files in some directories are, whichever tool
// wrote them (this exporter's snapshot command, etcdctl in cron, a Velero hook). It reads
// directory listings and file metadata only, never a file's content, and makes no etcd call.
type backupCollector struct {
	patterns []string
	files    *prometheus.Desc
	newestTS *prometheus.Desc
	newestSz *prometheus.Desc
}

func newBackupCollector() Collector {
	return &backupCollector{
		files: prometheus.NewDesc(namespace+"_backup_files",
			"Snapshot files found for the --backup.dir value (hidden files and *.part excluded).", []string{"dir"}, nil),
		newestTS: prometheus.NewDesc(namespace+"_backup_newest_file_timestamp_seconds",
			"Modification time of the newest snapshot file for the --backup.dir value; absent when there is none.", []string{"dir"}, nil),
		newestSz: prometheus.NewDesc(namespace+"_backup_newest_file_size_bytes",
			"Size of the newest snapshot file for the --backup.dir value; absent when there is none.", []string{"dir"}, nil),
	}
}

func (c *backupCollector) configure(e *Exporter) error {
	if len(e.backupDirs) == 0 {
		return errors.New("the backup collector needs at least one --backup.dir")
	}
	for _, p := range e.backupDirs {
		if _, err := filepath.Match(p, ""); err != nil {
			return fmt.Errorf("--backup.dir %q: %w", p, err)
		}
		// The value is the dir label of every series: Prometheus refuses invalid UTF-8.
		if !utf8.ValidString(p) {
			return fmt.Errorf("--backup.dir %q is not valid UTF-8 and cannot be a label value", p)
		}
	}
	c.patterns = e.backupDirs
	return nil
}

func (c *backupCollector) Update(_ *snapshot.Snapshot, out Sink) error {
	var errs []error
	for _, p := range c.patterns {
		files, err := listSnapshotFiles(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out.Gauge(c.files, float64(len(files)), p)
		var newest os.FileInfo
		for _, fi := range files {
			if newest == nil || fi.ModTime().After(newest.ModTime()) {
				newest = fi
			}
		}
		if newest != nil {
			out.Gauge(c.newestTS, float64(newest.ModTime().UnixNano())/1e9, p)
			out.Gauge(c.newestSz, float64(newest.Size()), p)
		}
	}
	return errors.Join(errs...)
}

// listSnapshotFiles returns the snapshot files a --backup.dir value names: the files in it when
// it is a directory, else the files its glob matches (a matched directory counts by its files).
// A glob matching nothing is no error: the count says 0.
func listSnapshotFiles(pattern string) ([]os.FileInfo, error) {
	if !hasGlobMeta(pattern) {
		return listDir(pattern)
	}
	matches, err := filepath.Glob(pattern)
	if err != nil {
		return nil, fmt.Errorf("--backup.dir %q: %w", pattern, err)
	}
	var out []os.FileInfo
	for _, m := range matches {
		fi, err := os.Stat(m)
		if err != nil {
			continue // gone since the glob, or a dangling link
		}
		switch {
		case fi.IsDir():
			files, err := listDir(m)
			if err != nil {
				return nil, err
			}
			out = append(out, files...)
		case fi.Mode().IsRegular() && isSnapshotName(fi.Name()):
			out = append(out, fi)
		}
	}
	return out, nil
}

func listDir(dir string) ([]os.FileInfo, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing backup directory: %w", err)
	}
	var out []os.FileInfo
	for _, e := range entries {
		if !isSnapshotName(e.Name()) {
			continue
		}
		var fi os.FileInfo
		if e.Type()&os.ModeSymlink != 0 {
			fi, err = os.Stat(filepath.Join(dir, e.Name()))
		} else {
			fi, err = e.Info()
		}
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		out = append(out, fi)
	}
	return out, nil
}

// isSnapshotName leaves out files still being written: hidden ones (etcd-monitor's
// .<cluster>-*.partial) and etcdctl's <name>.part, renamed only once the stream is complete.
func isSnapshotName(name string) bool {
	return !strings.HasPrefix(name, ".") && !strings.HasSuffix(name, ".part")
}

func hasGlobMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }
