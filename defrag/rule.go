// Package defrag decides which etcd members need defragmenting and defragments them one at a time,
// followers first and the leader last, checking the cluster's health before and after each member.
package defrag

import (
	"fmt"
	"math"

	"github.com/dustin/go-humanize"
)

// MiB is 2^20 bytes.
const MiB = 1 << 20

// Rule decides whether a member's backend is worth defragmenting. A member needs it when either
// condition holds:
//
//   - fragmentation: at least MinFreeRatio of the file is free and at least MinFreeBytes are free;
//   - quota pressure: the file uses more than QuotaRatio of the member's quota and at least
//     QuotaMinFreeBytes would be reclaimed.
//
// A fixed set of thresholds rather than an expression language: each is one flag, documented in
// docs/defrag.md, and a typo is a flag parse error instead of a rule that silently never matches.
type Rule struct {
	MinFreeRatio      float64 `json:"min_free_ratio"`
	MinFreeBytes      int64   `json:"min_free_bytes"`
	QuotaRatio        float64 `json:"quota_ratio"`
	QuotaMinFreeBytes int64   `json:"quota_min_free_bytes"`
}

// DefaultRule is 45% and 100 MiB free, the thresholds of OpenShift's defrag controller
// (cluster-etcd-operator), or quota usage above 80% with 100 MiB reclaimable, the quota part of
// ahrtr/etcd-defrag's example rule.
var DefaultRule = Rule{
	MinFreeRatio:      0.45,
	MinFreeBytes:      100 * MiB,
	QuotaRatio:        0.8,
	QuotaMinFreeBytes: 100 * MiB,
}

// Validate reports the first threshold that makes no sense, in one line.
func (r Rule) Validate() error {
	switch {
	case math.IsNaN(r.MinFreeRatio) || r.MinFreeRatio < 0 || r.MinFreeRatio > 1:
		return fmt.Errorf("--rule.min-free-ratio must be from 0 to 1, got %v", r.MinFreeRatio)
	case math.IsNaN(r.QuotaRatio) || r.QuotaRatio <= 0 || r.QuotaRatio > 1:
		return fmt.Errorf("--rule.quota-ratio must be above 0 and at most 1, got %v", r.QuotaRatio)
	case r.MinFreeBytes < 0:
		return fmt.Errorf("--rule.min-free-bytes must not be negative, got %d", r.MinFreeBytes)
	case r.QuotaMinFreeBytes < 0:
		return fmt.Errorf("--rule.quota-min-free-bytes must not be negative, got %d", r.QuotaMinFreeBytes)
	}
	return nil
}

// Sizes are what a member reports about its backend.
type Sizes struct {
	DBSize      int64 `json:"db_size_bytes"`
	DBSizeInUse int64 `json:"db_size_in_use_bytes"`
	// Quota is 0 when unknown (etcd before 3.6 does not report it and no --quota-bytes was given).
	Quota int64 `json:"quota_bytes"`
}

// Free is what a defragmentation would give back to the file system.
func (s Sizes) Free() int64 { return max(s.DBSize-s.DBSizeInUse, 0) }

// FreeRatio is the free share of the file (0 for an empty file).
func (s Sizes) FreeRatio() float64 {
	if s.DBSize <= 0 {
		return 0
	}
	return float64(s.Free()) / float64(s.DBSize)
}

// QuotaUsage is the file's size over the quota, what etcd compares with the quota before raising
// NOSPACE; 0 when the quota is unknown.
func (s Sizes) QuotaUsage() float64 {
	if s.Quota <= 0 {
		return 0
	}
	return float64(s.DBSize) / float64(s.Quota)
}

// Evaluate says whether the rule asks for a defragmentation, and why in words.
func (r Rule) Evaluate(s Sizes) (bool, string) {
	free, ratio := s.Free(), s.FreeRatio()
	if ratio >= r.MinFreeRatio && free >= r.MinFreeBytes {
		return true, fmt.Sprintf("%.0f%% free (%s), at least %.0f%% and %s", 100*ratio, HumanBytes(free), 100*r.MinFreeRatio, HumanBytes(r.MinFreeBytes))
	}
	if s.Quota > 0 && s.QuotaUsage() > r.QuotaRatio && free >= r.QuotaMinFreeBytes {
		return true, fmt.Sprintf("quota %.0f%% used, above %.0f%%, and %s reclaimable, at least %s", 100*s.QuotaUsage(), 100*r.QuotaRatio, HumanBytes(free), HumanBytes(r.QuotaMinFreeBytes))
	}
	why := fmt.Sprintf("%.0f%% free (%s), below %.0f%% or %s", 100*ratio, HumanBytes(free), 100*r.MinFreeRatio, HumanBytes(r.MinFreeBytes))
	if s.Quota > 0 {
		why += fmt.Sprintf("; quota %.0f%% used", 100*s.QuotaUsage())
	} else {
		why += "; quota unknown (etcd < 3.6: give --quota-bytes)"
	}
	return false, why
}

// HumanBytes renders a size in binary units, as the check command does (go-humanize), negative
// sizes (a file that grew) included.
func HumanBytes(n int64) string {
	if n < 0 {
		return "-" + humanize.IBytes(uint64(-n))
	}
	return humanize.IBytes(uint64(n))
}
