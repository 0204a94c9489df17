package benchmark

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Latencies are recorded in nanoseconds, from 1 ns to one hour, to three significant digits:
// about 260 KiB per histogram, and any latency a client can feel is representable.
const (
	histMin     = 1
	histMax     = int64(time.Hour)
	histSigFigs = 3
)

// maxShards bounds the recorder's memory (a ~260 KiB histogram per shard, plus one for failures
// once a shard sees one) and the cost of merging at the end: one shard per worker for 100
// clients took 1.6% of the client's CPU in a 20,000-put run just to merge, while 16 shards
// are already uncontended at tens of thousands of operations per second.
const maxShards = 16

// recorder collects every operation's outcome in shards, each a mutex-guarded pair of histograms;
// the report merges them.
type recorder struct {
	shards []*shard
	done   atomic.Int64
}

type shard struct {
	mu       sync.Mutex
	ok       *hdrhistogram.Histogram
	failed   *hdrhistogram.Histogram // nil until the first failure
	errs     map[string]int64
	examples map[string]string
	lastEnd  time.Time
	// Pad shards apart so that workers on different cores do not share cache lines.
	_ [64]byte
}

func newShard() *shard {
	return &shard{ok: hdrhistogram.New(histMin, histMax, histSigFigs), errs: map[string]int64{}, examples: map[string]string{}}
}

func newRecorder(workers int) *recorder {
	r := &recorder{}
	for range min(max(workers, 1), maxShards) {
		r.shards = append(r.shards, newShard())
	}
	return r
}

func (r *recorder) record(worker int, latency time.Duration, end time.Time, err error) {
	v := min(max(int64(latency), histMin), histMax)
	s := r.shards[worker%len(r.shards)]
	s.mu.Lock()
	if err == nil {
		_ = s.ok.RecordValue(v)
	} else {
		if s.failed == nil {
			s.failed = hdrhistogram.New(histMin, histMax, histSigFigs)
		}
		_ = s.failed.RecordValue(v)
		code := errorCode(err)
		s.errs[code]++
		if _, seen := s.examples[code]; !seen {
			s.examples[code] = err.Error()
		}
	}
	if end.After(s.lastEnd) {
		s.lastEnd = end
	}
	s.mu.Unlock()
	r.done.Add(1)
}

// merged returns every shard's data in one shard.
func (r *recorder) merged() *shard {
	m := newShard()
	m.failed = hdrhistogram.New(histMin, histMax, histSigFigs)
	for _, s := range r.shards {
		s.mu.Lock()
		m.ok.Merge(s.ok)
		if s.failed != nil {
			m.failed.Merge(s.failed)
		}
		for k, v := range s.errs {
			m.errs[k] += v
		}
		for k, v := range s.examples {
			if _, seen := m.examples[k]; !seen {
				m.examples[k] = v
			}
		}
		if s.lastEnd.After(m.lastEnd) {
			m.lastEnd = s.lastEnd
		}
		s.mu.Unlock()
	}
	return m
}

// errorCode names an error by its gRPC code, the vocabulary etcd's own metrics use
// (grpc_server_handled_total{grpc_code}).
func errorCode(err error) string {
	switch {
	case errors.Is(err, context.Canceled):
		return codes.Canceled.String()
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded.String()
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code().String()
	}
	if s, ok := status.FromError(err); ok {
		return s.Code().String()
	}
	return codes.Unknown.String()
}

// allErrorCodes are the codes pushed even when zero, so that a successful run replaces the error
// counts of an earlier failed one on the Pushgateway.
var allErrorCodes = func() []string {
	var out []string
	for c := codes.Canceled; c <= codes.Unauthenticated; c++ {
		out = append(out, c.String())
	}
	return out
}()
