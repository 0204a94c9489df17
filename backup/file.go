// Package backup saves, verifies and prunes etcd snapshot files. A snapshot is checked on three
// levels: the SHA-256 trailer etcd appends, the bbolt database it holds (opened read-only, every
// bucket walked), and its key-value hash at its revision compared with the live members' HashKV.
package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// CorruptError says a snapshot file cannot be restored: its trailer, its database or its
// contents are damaged.
type CorruptError struct {
	Reason string
}

func (e *CorruptError) Error() string { return "corrupt snapshot: " + e.Reason }

func corrupt(format string, args ...any) error {
	return &CorruptError{Reason: fmt.Sprintf(format, args...)}
}

// IsCorrupt reports whether err says the file is damaged (rather than, say, unreadable).
func IsCorrupt(err error) bool {
	var ce *CorruptError
	return errors.As(err, &ce)
}

// Bucket names of etcd's backend (server/storage/schema/bucket.go).
var (
	keyBucket  = []byte("key")
	metaBucket = []byte("meta")

	finishedCompactKey  = []byte("finishedCompactRev")
	scheduledCompactKey = []byte("scheduledCompactRev")
	consistentIndexKey  = []byte("consistent_index")
	storageVersionKey   = []byte("storageVersion")
)

// A revision in the key bucket is 8 bytes main, '_', 8 bytes sub, then 't' for a tombstone
// (server/storage/mvcc/revision.go).
const (
	revBytesLen       = 8 + 1 + 8
	markedRevBytesLen = revBytesLen + 1
	markTombstone     = 't'
)

type revision struct{ main, sub int64 }

func parseRev(k []byte) (revision, bool, error) {
	if len(k) != revBytesLen && len(k) != markedRevBytesLen {
		return revision{}, false, fmt.Errorf("key bucket entry %x is not a revision", k)
	}
	r := revision{main: int64(binary.BigEndian.Uint64(k[0:8])), sub: int64(binary.BigEndian.Uint64(k[9:]))}
	return r, len(k) == markedRevBytesLen && k[revBytesLen] == markTombstone, nil
}

// Info is what the file checks found.
type Info struct {
	Path      string    `json:"path"`
	SizeBytes int64     `json:"size_bytes"`
	ModTime   time.Time `json:"mod_time"`
	// SHA256 is the trailer, which matched the database it follows.
	SHA256 string `json:"sha256"`
	// Revision is the store's revision, computed as etcd does when it starts on the file: the
	// key bucket's last main revision, or a compaction revision above it, and at least 1 (etcdutl
	// snapshot status reports the former, 0 for an empty store).
	Revision int64 `json:"revision"`
	// CompactRevision is the compaction etcd scheduled last (it may not have finished).
	CompactRevision int64  `json:"compact_revision"`
	ConsistentIndex uint64 `json:"consistent_index"`
	StorageVersion  string `json:"storage_version,omitempty"`
	Buckets         int    `json:"buckets"`
	// Revisions counts the key bucket's entries (every revision of every key, tombstones included).
	Revisions int `json:"revisions"`
	// Keys counts the keys that exist at Revision.
	Keys int `json:"keys"`
}

// File is a snapshot file that passed the file checks, open read-only to compute its hash.
type File struct {
	info Info
	db   *bolt.DB
	// latest holds, for every key, its newest revision at or below info.Revision and whether it
	// is a tombstone: what etcd's index answers in treeIndex.Keep.
	latest map[string]latestRev
}

type latestRev struct {
	rev       revision
	tombstone bool
}

// Open checks the file: the SHA-256 trailer, then the bbolt database (bbolt's consistency check
// and a walk of every bucket), then reads the revision. A damaged file is a *CorruptError; a file
// that cannot be opened at all is a plain error.
func Open(path string) (*File, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("snapshot file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("snapshot file %s is not a regular file", path)
	}
	sum, err := checkTrailer(path, fi.Size())
	if err != nil {
		return nil, err
	}
	f := &File{info: Info{Path: path, SizeBytes: fi.Size(), ModTime: fi.ModTime(), SHA256: sum}}
	// bbolt ignores the 32 bytes past its last page, as etcdutl's snapshot status relies on.
	db, err := openReadOnly(path)
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("opening %s: another process holds it locked: %w", path, err)
		}
		return nil, corrupt("bbolt database does not open: %v", err)
	}
	f.db = db
	if err := f.walk(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return f, nil
}

// openReadOnly opens the database as bbolt does for a reader; a damaged meta page that makes it
// panic or fault is an error like any other.
func openReadOnly(path string) (db *bolt.DB, err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("%v", r)
		}
	}()
	return bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
}

// Info returns what the checks found.
func (f *File) Info() Info { return f.info }

// Close releases the database.
func (f *File) Close() error { return f.db.Close() }

// checkTrailer verifies the SHA-256 etcd appends to a snapshot: a file whose size is 32 bytes
// past a multiple of 512 ends with the digest of what precedes it (etcdutl's hasChecksum).
func checkTrailer(path string, size int64) (string, error) {
	if size%512 != sha256.Size {
		return "", corrupt("no SHA-256 trailer (size %d is not 32 bytes past a multiple of 512): truncated, or not a file from Maintenance.Snapshot", size)
	}
	fh, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("snapshot file: %w", err)
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, fh, size-sha256.Size); err != nil {
		return "", corrupt("reading the database: %v", err)
	}
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(fh, want); err != nil {
		return "", corrupt("reading the trailer: %v", err)
	}
	got := h.Sum(nil)
	if !bytes.Equal(got, want) {
		return "", corrupt("SHA-256 mismatch: trailer %x, database %x", want, got)
	}
	return hex.EncodeToString(got), nil
}

// walk reads every key of every bucket, runs bbolt's consistency check and collects what the
// hash needs. A damaged page makes bbolt panic (its page assertions) or fault on its memory map;
// both become a *CorruptError rather than a crash. bbolt's own check runs in a goroutine of its
// own, where no recover reaches, so it runs only after the walk has visited, and so asserted,
// every page it will visit (with etcd's unsynced freelist it visits no other page).
func (f *File) walk() (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			err = corrupt("bbolt database is damaged: %v", r)
		}
	}()
	return f.db.View(func(tx *bolt.Tx) error {
		if err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			f.info.Buckets++
			return walkBucket(b)
		}); err != nil {
			return corrupt("walking the buckets: %v", err)
		}
		var problems []string
		for e := range tx.Check() {
			problems = append(problems, e.Error())
		}
		if len(problems) > 0 {
			more := ""
			if len(problems) > 1 {
				more = fmt.Sprintf(" (and %d more)", len(problems)-1)
			}
			return corrupt("bbolt consistency check: %s%s", problems[0], more)
		}
		meta := tx.Bucket(metaBucket)
		kb := tx.Bucket(keyBucket)
		if meta == nil || kb == nil {
			return corrupt("not an etcd database: no %q or %q bucket", metaBucket, keyBucket)
		}
		var finished, scheduled int64
		for _, c := range []struct {
			key []byte
			dst *int64
		}{{finishedCompactKey, &finished}, {scheduledCompactKey, &scheduled}} {
			if v := meta.Get(c.key); v != nil {
				r, _, err := parseRev(v)
				if err != nil {
					return corrupt("meta %s: %v", c.key, err)
				}
				*c.dst = r.main
			}
		}
		if v := meta.Get(consistentIndexKey); len(v) == 8 {
			f.info.ConsistentIndex = binary.BigEndian.Uint64(v)
		}
		if v := meta.Get(storageVersionKey); v != nil {
			f.info.StorageVersion = string(v)
		}
		f.info.CompactRevision = max(finished, scheduled)

		var last int64
		latest := map[string]latestRev{}
		if err := kb.ForEach(func(k, v []byte) error {
			r, tomb, err := parseRev(k)
			if err != nil {
				return err
			}
			var kv mvccpb.KeyValue
			if err := kv.Unmarshal(v); err != nil {
				return fmt.Errorf("revision %d_%d: value does not decode: %w", r.main, r.sub, err)
			}
			f.info.Revisions++
			last = r.main
			// The bucket is in revision order, so the last entry seen per key is its newest.
			latest[string(kv.Key)] = latestRev{rev: r, tombstone: tomb}
			return nil
		}); err != nil {
			return corrupt("key bucket: %v", err)
		}
		// As the store's restore does (server/storage/mvcc/kvstore.go): a store starts at revision
		// 1, and a compaction that removed the newest revisions still counts as the current one.
		f.info.Revision = max(1, last, finished, scheduled)
		for _, l := range latest {
			if !l.tombstone {
				f.info.Keys++
			}
		}
		f.latest = latest
		return nil
	})
}

// walkBucket reads every key and value of b and of the buckets nested in it.
func walkBucket(b *bolt.Bucket) error {
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			if nb := b.Bucket(k); nb != nil {
				return walkBucket(nb)
			}
		}
		return nil
	})
}

// HashKV computes the hash a member's HashKV(Revision) answers when its compaction revision is
// compactRev, the way etcd computes it (server/storage/mvcc/hash.go, kvstore.go hashByRev): CRC-32
// Castagnoli over "key" and then every key-bucket entry (revision bytes, then value) up to the
// revision, where an entry at or below the compaction counts only if it is what the compaction
// keeps (each key's newest revision that is not a tombstone) and a tombstone exactly at the
// compaction never counts.
func (f *File) HashKV(compactRev int64) (uint32, error) {
	rev := f.info.Revision
	// treeIndex.Keep(rev): each key's newest revision at or below rev, unless it is a tombstone
	// (keyIndex.keep drops a tombstone it lands on). Revisions in the file are at or below rev.
	keep := make(map[revision]struct{}, len(f.latest))
	for _, l := range f.latest {
		if !l.tombstone {
			keep[l.rev] = struct{}{}
		}
	}
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	h.Write(keyBucket)
	err := f.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(keyBucket).ForEach(func(k, v []byte) error {
			r, tomb, err := parseRev(k)
			if err != nil {
				return err
			}
			if r.main > rev {
				return nil
			}
			if r.main <= compactRev && len(keep) > 0 {
				if _, ok := keep[r]; !ok {
					return nil
				}
			}
			if r.main == compactRev && tomb {
				return nil
			}
			h.Write(k)
			h.Write(v)
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("hashing the key bucket: %w", err)
	}
	return h.Sum32(), nil
}
