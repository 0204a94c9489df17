package benchmark

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
)

// newRunID names a run's directory: its start time in UTC to the second, so that a directory left
// with --keep or by a killed run says when it was written, then 32 random bits, so that runs
// started in the same second (on one host or many) get different directories.
func newRunID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// keyFormat makes readable keys under the run's directory: "<dir>key-000000123" when --key-size
// leaves room for the "key-" word, "<dir>00000123" otherwise. The part after the directory is always
// exactly --key-size bytes, so the request size follows the flag as in etcd's own tool (whose keys
// are binary and have no prefix).
type keyFormat struct {
	prefix string
	word   string // "key-" or ""
	digits int
}

func newKeyFormat(prefix string, keySize, keySpace int) (keyFormat, error) {
	need := len(strconv.Itoa(max(keySpace-1, 0)))
	switch {
	case keySize-4 >= need:
		return keyFormat{prefix: prefix, word: "key-", digits: keySize - 4}, nil
	case keySize >= need:
		return keyFormat{prefix: prefix, digits: keySize}, nil
	}
	return keyFormat{}, fmt.Errorf("--key-size %d is too small for --key-space-size %d: need at least %d bytes", keySize, keySpace, need)
}

// key returns the key with index i, named under a kind ("" for plain keys, "lock-" or "election-").
func (f keyFormat) key(kind string, i int) string {
	b := make([]byte, 0, len(f.prefix)+len(kind)+len(f.word)+f.digits)
	b = append(b, f.prefix...)
	if kind != "" {
		b = append(b, kind...)
	} else {
		b = append(b, f.word...)
	}
	var num [20]byte
	n := strconv.AppendInt(num[:0], int64(i), 10)
	for range f.digits - len(n) {
		b = append(b, '0')
	}
	return string(append(b, n...))
}

// value returns a printable value of n bytes: random, so that nothing along the way can compress
// it into a cheaper request than the size promises.
func value(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
