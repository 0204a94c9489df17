package etcdtest

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// CorruptValue rewrites, in a stopped member's bbolt file, the value of every revision of key to
// other bytes of the same length, keeping each record a valid mvccpb.KeyValue: the member starts
// and serves as if nothing happened, with data no other member has (etcd's start-up corruption
// check is off by default). The values are upper-cased, so they must hold lower-case letters.
func CorruptValue(t testing.TB, dataDir, key string) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dataDir, "member", "snap", "db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open bbolt: %v", err)
	}
	defer db.Close()
	changed := 0
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("key"))
		if b == nil {
			return errors.New("no key bucket")
		}
		updates := map[string][]byte{}
		err := b.ForEach(func(k, v []byte) error {
			var kv mvccpb.KeyValue
			if err := kv.Unmarshal(v); err != nil {
				return fmt.Errorf("revision %x: %w", k, err)
			}
			if string(kv.Key) != key {
				return nil
			}
			kv.Value = bytes.ToUpper(kv.Value)
			out, err := kv.Marshal()
			if err != nil {
				return err
			}
			updates[string(k)] = out
			return nil
		})
		if err != nil {
			return err
		}
		for k, v := range updates {
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
			changed++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("rewriting %s: %v", key, err)
	}
	if changed == 0 {
		t.Fatalf("key %s not found in %s", key, dataDir)
	}
}
