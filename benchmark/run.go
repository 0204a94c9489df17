package benchmark

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-monitor/etcd-monitor/pushgw"
)

// Runner runs one benchmark: pre-flight checks, the workload, cleanup, the report and the push.
type Runner struct {
	Config Config
	// Dial opens connection i (0 ≤ i < Config.Conns) to etcd.
	Dial func(i int) (*clientv3.Client, error)
	// Out receives the report.
	Out io.Writer
	// Progress, when not nil, receives a progress bar. Give it a terminal only.
	Progress io.Writer
	Logger   *slog.Logger

	// beforeOp, set by tests, runs inside each operation's measured interval (a stalled client).
	beforeOp func(worker int, i int64)
}

// cleanupTimeout bounds the work done after the run or after an interrupt: revoking leases,
// deleting the prefix.
const cleanupTimeout = time.Minute

// Run runs the benchmark. It returns the result whenever operations ran (so that callers can
// inspect it even when an error is returned) and an error when the run was refused, interrupted,
// had failed operations, or its cleanup or push failed.
func (r *Runner) Run(ctx context.Context) (*Result, error) {
	cfg := r.Config
	if cfg.RunID == "" {
		cfg.RunID = newRunID(time.Now())
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := r.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	out := r.Out
	if out == nil {
		out = io.Discard
	}

	conns := make([]*clientv3.Client, 0, cfg.Conns)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for i := range cfg.Conns {
		c, err := r.Dial(i)
		if err != nil {
			return nil, err
		}
		conns = append(conns, c)
	}
	workers := make([]*worker, cfg.Clients)
	for i := range workers {
		workers[i] = &worker{id: i, cli: conns[i%len(conns)]}
	}

	pre, err := preflight(ctx, conns[0], cfg)
	if err != nil {
		return nil, err
	}
	logger.Debug("pre-flight passed", "db_size_bytes", pre.dbSize, "quota_bytes", pre.quota, "estimated_write_bytes", pre.estimate)
	// Before the first write: a run killed with SIGKILL leaves its keys, and this line says
	// where they are.
	logger.Info("benchmark run starting", "run_id", cfg.RunID, "keys_under", cfg.runPrefix(),
		"keys_already_under_prefix", pre.existing, "prefix", cfg.Prefix)

	wl, err := newWorkload(cfg)
	if err != nil {
		return nil, err
	}

	// From here on the cluster may hold our keys: whatever happens, clean up with a context
	// that an interrupt does not cancel.
	cleanupCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	}
	res := &Result{Config: cfg}
	var errs []error

	if err := wl.setup(ctx, workers); err != nil {
		errs = append(errs, fmt.Errorf("setting up the %s workload: %w", cfg.Workload, err))
	} else {
		stop := r.loop(ctx, conns[0], cfg, wl, workers, pre, res)
		if stop != "" {
			res.StoppedEarly = stop
			errs = append(errs, errors.New(stop))
		}
	}
	tctx, cancel := cleanupCtx()
	if err := wl.teardown(tctx, workers); err != nil {
		errs = append(errs, fmt.Errorf("tearing down the %s workload: %w", cfg.Workload, err))
	}
	cancel()

	cctx, cancel := cleanupCtx()
	res.KeysRemoved, res.KeysKept, err = cleanup(cctx, conns[0], cfg)
	cancel()
	if err != nil {
		errs = append(errs, err)
	}
	if res.Failures > 0 {
		errs = append(errs, fmt.Errorf("%d of %d operations failed", res.Failures, res.Operations))
	}
	res.Success = len(errs) == 0

	if err := res.write(out, cfg.Output); err != nil {
		errs = append(errs, fmt.Errorf("writing the report: %w", err))
	}
	if cfg.PushgatewayURL != "" {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pushgw.Timeout)
		err := pushResults(pctx, cfg, res, time.Now())
		cancel()
		if err != nil {
			errs = append(errs, err)
		} else {
			logger.Info("pushed results", "url", cfg.PushgatewayURL, "job", pushJob, "workload", cfg.Workload, "run", cfg.RunName)
		}
	}
	return res, joinErrors(errs)
}

// joinErrors is errors.Join on one line: the CLI prints errors as one line each.
func joinErrors(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return lineErrors(errs)
}

type lineErrors []error

func (e lineErrors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e lineErrors) Unwrap() []error { return e }

// loop runs the operations and fills res. It returns why it stopped early, or "".
//
// Closed loop (rate 0): each worker starts its next operation when the previous one ends, and
// latency is measured from the start of the operation.
//
// Open loop (rate > 0): operation i is scheduled at start + i/rate whatever happens to earlier
// operations, and its latency is measured from that scheduled time. When every worker is busy
// (the cluster stalls), the operations that could not start on time carry their wait in their
// latency, as the callers of a real service would feel it: no coordinated omission.
func (r *Runner) loop(ctx context.Context, probe *clientv3.Client, cfg Config, wl workload, workers []*worker, pre preflightInfo, res *Result) string {
	rec := newRecorder(len(workers))
	// runCtx is cancelled on an interrupt or a hung operation: operations in flight are abandoned.
	// stop ends the run gracefully (quota limits): no new operation starts, those in flight end.
	runCtx, cancelRun := context.WithCancelCause(ctx)
	defer cancelRun(nil)
	var (
		stopOnce  sync.Once
		stopCause error
		stopped   = make(chan struct{})
	)
	stop := func(cause error) {
		stopOnce.Do(func() {
			stopCause = cause
			close(stopped)
		})
	}

	var bgWG sync.WaitGroup
	if cfg.writeFraction() > 0 {
		bgWG.Add(1)
		go func() {
			defer bgWG.Done()
			guardQuota(runCtx, probe, pre, stop)
		}()
	}
	if r.Progress != nil {
		bgWG.Add(1)
		go func() {
			defer bgWG.Done()
			showProgress(runCtx, r.Progress, cfg, rec)
		}()
	}

	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		interval float64
	)
	if cfg.Rate > 0 {
		interval = float64(time.Second) / cfg.Rate
	}
	bgWG.Add(1)
	go func() {
		defer bgWG.Done()
		watchHungOps(runCtx, workers, cancelRun)
	}()
	budget := newWriteBudget(cfg, pre)
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// gRPC derives a cancellable context from the caller's for every call, which locks
			// the nearest cancellable ancestor twice per operation. A context of the worker's own
			// keeps that lock private instead of having every worker queue on runCtx's.
			wctx, wcancel := context.WithCancel(runCtx)
			defer wcancel()
			timer := time.NewTimer(time.Hour)
			defer timer.Stop()
			for wctx.Err() == nil && !isClosed(stopped) {
				i := next.Add(1) - 1
				if cfg.Total > 0 && i >= int64(cfg.Total) {
					return
				}
				var sched time.Time
				if interval > 0 {
					sched = start.Add(time.Duration(float64(i) * interval))
					if cfg.Duration > 0 && !sched.Before(deadline) {
						return
					}
					if d := time.Until(sched); d > 0 {
						timer.Reset(d)
						select {
						case <-timer.C:
						case <-wctx.Done():
							return
						case <-stopped:
							return
						}
					}
				} else {
					sched = time.Now()
					if cfg.Duration > 0 && !sched.Before(deadline) {
						return
					}
				}
				if !budget.reserve() {
					stop(fmt.Errorf("stopped early: the writes would take the database past %.0f%% of its %s quota", QuotaUsageLimit*100, mib(pre.quota)))
					return
				}
				if interval > 0 {
					w.busySince.Store(time.Now().UnixNano())
				} else {
					w.busySince.Store(sched.UnixNano())
				}
				if r.beforeOp != nil {
					r.beforeOp(w.id, i)
				}
				// No per-operation context: a timer per operation and the lock contention of
				// registering it with the shared run context cost more client CPU than the
				// whole report; watchHungOps bounds operations instead.
				end, err := wl.op(wctx, w, i)
				w.busySince.Store(0)
				if end.IsZero() {
					end = time.Now()
				}
				rec.record(w.id, end.Sub(sched), end, err)
			}
		}()
	}
	wg.Wait()
	cancelRun(nil)
	bgWG.Wait()

	res.fill(rec, start, interval > 0)
	if stopCause != nil {
		return stopCause.Error()
	}
	if cause := context.Cause(runCtx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause.Error()
	}
	if ctx.Err() != nil {
		return fmt.Sprintf("interrupted after %d operations", res.Operations)
	}
	return ""
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// watchHungOps stops the run when an operation has had no answer for opTimeout: a member that
// accepts connections and never answers must not hold the benchmark (and its keys) forever.
func watchHungOps(ctx context.Context, workers []*worker, stop context.CancelCauseFunc) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, w := range workers {
				if since := w.busySince.Load(); since != 0 && now.UnixNano()-since > int64(opTimeout) {
					stop(fmt.Errorf("stopped early: an operation got no answer for %s", opTimeout))
					return
				}
			}
		}
	}
}

func showProgress(ctx context.Context, w io.Writer, cfg Config, rec *recorder) {
	max := int64(-1)
	if n := cfg.plannedOps(); n > 0 {
		max = n
	}
	bar := progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(cfg.Workload),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("ops"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			_ = bar.Set64(rec.done.Load())
		case <-ctx.Done():
			_ = bar.Set64(rec.done.Load())
			_ = bar.Finish()
			return
		}
	}
}
