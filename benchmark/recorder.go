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

// recorder collects every operation's outcome. One mutex-guarded pair of histograms is cheaper
// than it sounds: recording takes ~100 ns, far below the cost of an etcd round trip, and it keeps
// memory flat whatever --clients is.
type recorder struct {
	mu       sync.Mutex
	ok       *hdrhistogram.Histogram
	failed   *hdrhistogram.Histogram
	errs     map[string]int64
	examples map[string]string
	lastEnd  time.Time
	done     atomic.Int64
}

func newRecorder() *recorder {
	return &recorder{
		ok:       hdrhistogram.New(histMin, histMax, histSigFigs),
		failed:   hdrhistogram.New(histMin, histMax, histSigFigs),
		errs:     map[string]int64{},
		examples: map[string]string{},
	}
}

func (r *recorder) record(latency time.Duration, end time.Time, err error) {
	v := min(max(int64(latency), histMin), histMax)
	r.mu.Lock()
	if err == nil {
		_ = r.ok.RecordValue(v)
	} else {
		_ = r.failed.RecordValue(v)
		code := errorCode(err)
		r.errs[code]++
		if _, seen := r.examples[code]; !seen {
			r.examples[code] = err.Error()
		}
	}
	if end.After(r.lastEnd) {
		r.lastEnd = end
	}
	r.mu.Unlock()
	r.done.Add(1)
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
