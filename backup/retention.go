package backup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// timeLayout is the UTC time in a snapshot's file name: sortable, and free of ':' for the file
// systems and tools that refuse it.
const timeLayout = "20060102T150405Z"

var clusterNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// ValidateCluster checks a cluster name for use in file names and as a Pushgateway label.
func ValidateCluster(name string) error {
	if !clusterNameRE.MatchString(name) {
		return fmt.Errorf("invalid cluster name %q: want 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// FileName is the final name of a snapshot of cluster taken at t at revision rev:
// <cluster>-<UTC time>-rev<revision>.db, e.g. etcd-20260102T030405Z-rev1234.db.
func FileName(cluster string, t time.Time, rev int64) string {
	return fmt.Sprintf("%s-%s-rev%d.db", cluster, t.UTC().Format(timeLayout), rev)
}

// tempPattern names the file a snapshot streams into (os.CreateTemp's pattern); hidden, and with
// a suffix no final name has, so that neither retention nor a freshness check takes it for a
// snapshot.
func tempPattern(cluster string) string { return "." + cluster + "-*.partial" }

// Saved is a snapshot file this command created, recognised by its name.
type Saved struct {
	Name     string
	Time     time.Time
	Revision int64
}

// parseName recognises a name made by FileName for cluster; anything else is not ours.
func parseName(cluster, name string) (Saved, bool) {
	rest, ok := strings.CutPrefix(name, cluster+"-")
	if !ok {
		return Saved{}, false
	}
	rest, ok = strings.CutSuffix(rest, ".db")
	if !ok {
		return Saved{}, false
	}
	ts, revStr, ok := strings.Cut(rest, "-rev")
	if !ok || len(ts) != len(timeLayout) {
		return Saved{}, false
	}
	t, err := time.Parse(timeLayout, ts)
	if err != nil {
		return Saved{}, false
	}
	rev, err := strconv.ParseInt(revStr, 10, 64)
	if err != nil || rev < 0 || strconv.FormatInt(rev, 10) != revStr {
		return Saved{}, false
	}
	return Saved{Name: name, Time: t, Revision: rev}, true
}

// List returns the snapshots of cluster in dir that this command created, oldest first. Files of
// other clusters and files named any other way are not listed.
func List(dir, cluster string) ([]Saved, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	var out []Saved
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if s, ok := parseName(cluster, e.Name()); ok {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b Saved) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		if a.Revision != b.Revision {
			return int(min(max(a.Revision-b.Revision, -1), 1))
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// Prune deletes the oldest of cluster's snapshots in dir so that keep remain, and returns the
// names it deleted. Only names this command makes for this cluster are considered: another
// cluster's snapshots, etcdctl's files and anything else in dir are never touched.
func Prune(dir, cluster string, keep int) ([]string, error) {
	if keep <= 0 {
		return nil, nil
	}
	saved, err := List(dir, cluster)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for i := 0; i < len(saved)-keep; i++ {
		if err := os.Remove(filepath.Join(dir, saved[i].Name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, saved[i].Name)
	}
	if len(errs) > 0 {
		return removed, fmt.Errorf("retention: %w", errors.Join(errs...))
	}
	if len(removed) > 0 {
		if err := syncDir(dir); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
