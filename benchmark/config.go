// Package benchmark loads an etcd cluster with a chosen workload and reports what clients felt:
// per-operation latency in HDR histograms (successful and failed operations apart), errors by
// gRPC code and throughput. It is built to be run against live clusters: each run writes only in
// a directory of its own under the key prefix (named by its run ID), refuses to start when that
// could hurt (an active alarm, a database close to its quota), and deletes that directory, and
// nothing else, even when interrupted.
package benchmark

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Workload names.
const (
	WorkloadPut      = "put"
	WorkloadRange    = "range"
	WorkloadMixed    = "mixed"
	WorkloadTxnPut   = "txn-put"
	WorkloadWatch    = "watch"
	WorkloadLease    = "lease"
	WorkloadLock     = "lock"
	WorkloadElection = "election"
)

// Workloads lists every workload in the order the documentation presents them.
var Workloads = []string{
	WorkloadPut, WorkloadRange, WorkloadMixed, WorkloadTxnPut,
	WorkloadWatch, WorkloadLease, WorkloadLock, WorkloadElection,
}

// Defaults shared by the CLI and by callers of the package.
const (
	DefaultPrefix       = "/etcd-monitor-benchmark/"
	DefaultKeySize      = 13 // "key-" and nine digits: key-000000123
	DefaultValSize      = 8
	DefaultKeySpaceSize = 100000
	DefaultReadRatio    = 0.7
	DefaultRunName      = "default"
	// QuotaUsageLimit is the share of the backend quota the benchmark may fill, counting what is
	// already there. etcd raises NOSPACE at 100%; the margin leaves room for the cluster's own
	// writes while the benchmark runs.
	QuotaUsageLimit = 0.8
	// DefaultQuotaBytes is etcd's default --quota-backend-bytes (2 GiB), assumed when a server
	// does not report its quota (etcd 3.5 leaves StatusResponse.DbSizeQuota at 0).
	DefaultQuotaBytes = 2 << 30
	// maxKeySize and maxValSize stay well inside etcd's default 1.5 MiB request limit.
	maxKeySize = 1024
	maxValSize = 1 << 20
)

// Config holds one benchmark run's parameters.
type Config struct {
	Workload       string
	Conns          int // gRPC connections (clients) to etcd
	Clients        int // concurrent workers, spread over the connections
	KeySize        int // bytes of the key after the prefix
	ValSize        int
	Total          int           // operations to run; exclusive with Duration
	Duration       time.Duration // how long to run; exclusive with Total
	Rate           float64       // operations per second; 0 runs closed loop, as fast as possible
	SequentialKeys bool
	KeySpaceSize   int
	Prefix         string
	ReadRatio      float64 // share of reads in the mixed workload
	Consistency    string  // "l" (linearizable) or "s" (serializable) reads
	Keep           bool    // leave the run's keys in place afterwards
	Output         string  // "text" or "json"
	RunName        string  // stable name of the run, a Pushgateway grouping label
	// RunID names this run's own directory under Prefix, where all its keys are and which is
	// all its cleanup deletes. Empty: Runner.Run makes a new one (see newRunID).
	RunID          string
	PushgatewayURL string
}

// runIDRE is what a run ID may hold: one path element, safe in a key and a label value.
var runIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// runPrefix is the run's own directory: every key the run writes is under it, and its cleanup
// deletes it alone.
func (c Config) runPrefix() string { return c.Prefix + c.RunID + "/" }

// DefaultConfig returns the defaults the CLI uses.
func DefaultConfig() Config {
	return Config{
		Workload:     WorkloadPut,
		Conns:        1,
		Clients:      1,
		KeySize:      DefaultKeySize,
		ValSize:      DefaultValSize,
		KeySpaceSize: DefaultKeySpaceSize,
		Prefix:       DefaultPrefix,
		ReadRatio:    DefaultReadRatio,
		Consistency:  "l",
		Output:       "text",
		RunName:      DefaultRunName,
	}
}

// Validate checks everything that can be checked without contacting etcd. Each error is one line.
func (c Config) Validate() error {
	known := false
	for _, w := range Workloads {
		known = known || w == c.Workload
	}
	switch {
	case !known:
		return fmt.Errorf("unknown workload %q (want one of %s)", c.Workload, strings.Join(Workloads, ", "))
	case c.Conns < 1:
		return fmt.Errorf("--conns must be at least 1, got %d", c.Conns)
	case c.Clients < 1:
		return fmt.Errorf("--clients must be at least 1, got %d", c.Clients)
	case c.Conns > c.Clients:
		return fmt.Errorf("--conns (%d) must not exceed --clients (%d)", c.Conns, c.Clients)
	case c.KeySize < 1 || c.KeySize > maxKeySize:
		return fmt.Errorf("--key-size must be from 1 to %d, got %d", maxKeySize, c.KeySize)
	case c.ValSize < 0 || c.ValSize > maxValSize:
		return fmt.Errorf("--val-size must be from 0 to %d, got %d", maxValSize, c.ValSize)
	case c.Total < 0:
		return fmt.Errorf("--total must not be negative, got %d", c.Total)
	case c.Duration < 0:
		return fmt.Errorf("--duration must not be negative, got %s", c.Duration)
	case c.Total > 0 && c.Duration > 0:
		return errors.New("give either --total or --duration, not both")
	case c.Total == 0 && c.Duration == 0:
		return errors.New("give one of --total or --duration")
	case c.Rate < 0:
		return fmt.Errorf("--rate must not be negative, got %g", c.Rate)
	case c.KeySpaceSize < 1:
		return fmt.Errorf("--key-space-size must be at least 1, got %d", c.KeySpaceSize)
	case c.ReadRatio < 0 || c.ReadRatio > 1:
		return fmt.Errorf("--read-ratio must be from 0 to 1, got %g", c.ReadRatio)
	case c.Consistency != "l" && c.Consistency != "s":
		return fmt.Errorf("--consistency must be l (linearizable) or s (serializable), got %q", c.Consistency)
	case c.Output != "text" && c.Output != "json":
		return fmt.Errorf("--output must be text or json, got %q", c.Output)
	case c.RunName == "":
		return errors.New("--run.name must not be empty")
	case c.RunID != "" && !runIDRE.MatchString(c.RunID):
		return fmt.Errorf("run ID %q must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", c.RunID)
	}
	if err := validatePrefix(c.Prefix); err != nil {
		return err
	}
	if _, err := newKeyFormat(c.Prefix, c.KeySize, c.KeySpaceSize); err != nil {
		return err
	}
	if c.PushgatewayURL != "" {
		u, err := url.Parse(c.PushgatewayURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--pushgateway.url %q must be an http(s)://host:port URL", c.PushgatewayURL)
		}
	}
	return nil
}

// validatePrefix insists on a prefix that ends with "/" and names something below the root, so
// that deleting it can never reach keys of neighbours ("/foo" would also match "/foobar").
func validatePrefix(p string) error {
	if !strings.HasSuffix(p, "/") || strings.Trim(p, "/") == "" {
		return fmt.Errorf("--prefix %q must end with / and name a directory below the root, e.g. %s", p, DefaultPrefix)
	}
	return nil
}

// writes reports whether the workload writes keys, and so needs the quota checks.
func (c Config) writeFraction() float64 {
	switch c.Workload {
	case WorkloadRange:
		return 0
	case WorkloadMixed:
		return 1 - c.ReadRatio
	}
	return 1
}

// plannedOps is the number of operations the run will attempt, or -1 when it is bounded only by
// time and as fast as the cluster allows.
func (c Config) plannedOps() int64 {
	if c.Total > 0 {
		return int64(c.Total)
	}
	if c.Rate > 0 {
		return int64(c.Rate * c.Duration.Seconds())
	}
	return -1
}

// params is the run's parameters as label pairs (the Pushgateway info series, the JSON report).
func (c Config) params() [][2]string {
	return [][2]string{
		{"workload", c.Workload},
		{"conns", strconv.Itoa(c.Conns)},
		{"clients", strconv.Itoa(c.Clients)},
		{"key_size", strconv.Itoa(c.KeySize)},
		{"val_size", strconv.Itoa(c.ValSize)},
		{"total", strconv.Itoa(c.Total)},
		{"duration", c.Duration.String()},
		{"rate", strconv.FormatFloat(c.Rate, 'g', -1, 64)},
		{"sequential_keys", strconv.FormatBool(c.SequentialKeys)},
		{"key_space_size", strconv.Itoa(c.KeySpaceSize)},
		{"prefix", c.Prefix},
		{"run_id", c.RunID},
		{"read_ratio", strconv.FormatFloat(c.ReadRatio, 'g', -1, 64)},
		{"consistency", c.Consistency},
	}
}
