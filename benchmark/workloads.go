package benchmark

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

const (
	// maxSeedKeys bounds how many keys range and mixed write before the clock starts, so that
	// reads find data without the seeding dwarfing a short run.
	maxSeedKeys = 10000
	// sessionTTL is the lease TTL (seconds) of lease, lock and election workers: long enough
	// to ride out a slow cluster, short enough that an abandoned lease expires on its own.
	sessionTTL = 60
	// opTimeout bounds every operation (setup ones by context, measured ones by watchHungOps),
	// so that a hung member cannot stall a run forever.
	opTimeout = time.Minute
)

// worker is one concurrent client of the benchmark, bound to one of the connections.
type worker struct {
	id      int
	cli     *clientv3.Client
	lease   clientv3.LeaseID
	session *concurrency.Session
	// busySince is when the current operation started (Unix ns), 0 between operations.
	busySince atomic.Int64
}

// workload runs one kind of operation. op returns when the operation ended; a zero time means
// "now" (the watch workload ends when the event arrives, which may be before Put returns).
type workload interface {
	setup(ctx context.Context, workers []*worker) error
	op(ctx context.Context, w *worker, i int64) (time.Time, error)
	teardown(ctx context.Context, workers []*worker) error
}

type base struct {
	cfg   Config
	keys  keyFormat
	val   string
	seeds int // keys written before the run, the range of read keys
	// table holds every plain key when the key space is small enough, built before the clock
	// starts so that an operation formats and allocates no key (as etcd's tool pre-builds its
	// requests).
	table []string
}

// maxKeyTable bounds the pre-built key table (about 40 MiB at most with short keys).
const maxKeyTable = 1 << 20

// plainKey returns plain key i.
func (b *base) plainKey(i int) string {
	if b.table != nil {
		return b.table[i]
	}
	return b.keys.key("", i)
}

// keyIndex picks the key of operation i.
func (b *base) keyIndex(i int64) int {
	if b.cfg.SequentialKeys {
		return int(i % int64(b.cfg.KeySpaceSize))
	}
	return rand.IntN(b.cfg.KeySpaceSize)
}

func (b *base) readKey(i int64) string {
	if b.cfg.SequentialKeys {
		return b.plainKey(int(i % int64(b.seeds)))
	}
	return b.plainKey(rand.IntN(b.seeds))
}

func (b *base) readOpts() []clientv3.OpOption {
	if b.cfg.Consistency == "s" {
		return []clientv3.OpOption{clientv3.WithSerializable()}
	}
	return nil
}

func (b *base) setup(context.Context, []*worker) error    { return nil }
func (b *base) teardown(context.Context, []*worker) error { return nil }

func newWorkload(cfg Config) (workload, error) {
	kf, err := newKeyFormat(cfg.runPrefix(), cfg.KeySize, cfg.KeySpaceSize)
	if err != nil {
		return nil, err
	}
	b := base{cfg: cfg, keys: kf, val: value(cfg.ValSize)}
	switch cfg.Workload {
	case WorkloadPut, WorkloadTxnPut, WorkloadRange, WorkloadMixed, WorkloadWatch:
		if cfg.KeySpaceSize <= maxKeyTable {
			b.table = make([]string, cfg.KeySpaceSize)
			for i := range b.table {
				b.table[i] = kf.key("", i)
			}
		}
	}
	switch cfg.Workload {
	case WorkloadPut:
		return &putWorkload{b}, nil
	case WorkloadTxnPut:
		return &txnPutWorkload{b}, nil
	case WorkloadRange:
		return &readWorkload{base: b}, nil
	case WorkloadMixed:
		return &readWorkload{base: b, mixed: true}, nil
	case WorkloadWatch:
		return &watchWorkload{base: b}, nil
	case WorkloadLease:
		return &leaseWorkload{b}, nil
	case WorkloadLock, WorkloadElection:
		return &sessionWorkload{b}, nil
	}
	return nil, fmt.Errorf("unknown workload %q", cfg.Workload)
}

type putWorkload struct{ base }

func (p *putWorkload) op(ctx context.Context, w *worker, i int64) (time.Time, error) {
	_, err := w.cli.Put(ctx, p.plainKey(p.keyIndex(i)), p.val)
	return time.Time{}, err
}

type txnPutWorkload struct{ base }

func (p *txnPutWorkload) op(ctx context.Context, w *worker, i int64) (time.Time, error) {
	_, err := w.cli.Txn(ctx).Then(clientv3.OpPut(p.plainKey(p.keyIndex(i)), p.val)).Commit()
	return time.Time{}, err
}

// readWorkload is range (only reads) and mixed (reads with probability --read-ratio, puts
// otherwise). Reads go to keys seeded before the clock starts.
type readWorkload struct {
	base
	mixed bool
}

func (r *readWorkload) setup(ctx context.Context, workers []*worker) error {
	r.seeds = min(r.cfg.KeySpaceSize, maxSeedKeys)
	return seed(ctx, workers, r.seeds, func(ctx context.Context, w *worker, i int) error {
		_, err := w.cli.Put(ctx, r.plainKey(i), r.val)
		return err
	})
}

func (r *readWorkload) op(ctx context.Context, w *worker, i int64) (time.Time, error) {
	if r.mixed && rand.Float64() >= r.cfg.ReadRatio {
		_, err := w.cli.Put(ctx, r.plainKey(r.keyIndex(i)), r.val)
		return time.Time{}, err
	}
	_, err := w.cli.Get(ctx, r.readKey(i), r.readOpts()...)
	return time.Time{}, err
}

// seed runs n setup operations spread over the workers.
func seed(ctx context.Context, workers []*worker, n int, f func(context.Context, *worker, int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for j, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := j; i < n; i += len(workers) {
				octx, cancel := context.WithTimeout(ctx, opTimeout)
				err := f(octx, w, i)
				cancel()
				if err != nil {
					mu.Lock()
					first = firstErr(first, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// watchWorkload measures put-to-event latency: each operation puts a key in the run's directory
// and ends when one watcher on that directory receives the event of that revision.
type watchWorkload struct {
	base
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	arrived map[int64]time.Time
	waiting map[int64]chan time.Time
	err     error
}

func (ww *watchWorkload) setup(ctx context.Context, workers []*worker) error {
	ww.arrived = map[int64]time.Time{}
	ww.waiting = map[int64]chan time.Time{}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(context.Background()))
	ww.cancel, ww.done = cancel, make(chan struct{})
	// The run's own directory: another run's puts under the same prefix are not this run's events.
	wch := workers[0].cli.Watch(wctx, ww.cfg.runPrefix(), clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	select {
	case wr, ok := <-wch:
		if !ok || wr.Err() != nil || !wr.Created {
			cancel()
			for range wch { //nolint:revive // drain so the watcher goroutine ends
			}
			return fmt.Errorf("starting the watch on %s: %w", ww.cfg.runPrefix(), firstErr(wr.Err(), errors.New("watch not created")))
		}
	case <-ctx.Done():
		cancel()
		for range wch { //nolint:revive
		}
		return ctx.Err()
	}
	go ww.receive(wch)
	return nil
}

func (ww *watchWorkload) receive(wch clientv3.WatchChan) {
	defer close(ww.done)
	for wr := range wch {
		now := time.Now()
		ww.mu.Lock()
		if err := wr.Err(); err != nil && ww.err == nil {
			ww.err = err
		}
		for _, ev := range wr.Events {
			rev := ev.Kv.ModRevision
			if ch, ok := ww.waiting[rev]; ok {
				delete(ww.waiting, rev)
				ch <- now
			} else {
				ww.arrived[rev] = now
			}
		}
		ww.mu.Unlock()
	}
	ww.mu.Lock()
	if ww.err == nil {
		ww.err = errors.New("watch closed")
	}
	for rev, ch := range ww.waiting {
		delete(ww.waiting, rev)
		close(ch)
	}
	ww.mu.Unlock()
}

func (ww *watchWorkload) op(ctx context.Context, w *worker, i int64) (time.Time, error) {
	resp, err := w.cli.Put(ctx, ww.plainKey(ww.keyIndex(i)), ww.val)
	if err != nil {
		return time.Time{}, err
	}
	rev := resp.Header.Revision
	ww.mu.Lock()
	if t, ok := ww.arrived[rev]; ok {
		delete(ww.arrived, rev)
		ww.mu.Unlock()
		return t, nil
	}
	if ww.err != nil {
		err := ww.err
		ww.mu.Unlock()
		return time.Time{}, fmt.Errorf("watch: %w", err)
	}
	ch := make(chan time.Time, 1)
	ww.waiting[rev] = ch
	ww.mu.Unlock()
	select {
	case t, ok := <-ch:
		if !ok {
			return time.Time{}, errors.New("watch closed before the event arrived")
		}
		return t, nil
	case <-ctx.Done():
		ww.mu.Lock()
		delete(ww.waiting, rev)
		ww.mu.Unlock()
		return time.Time{}, ctx.Err()
	}
}

func (ww *watchWorkload) teardown(context.Context, []*worker) error {
	if ww.cancel != nil {
		ww.cancel()
		<-ww.done
	}
	return nil
}

// leaseWorkload grants one lease per worker before the clock starts; each operation is one
// keep-alive round trip (what a client holding a lease pays to keep it).
type leaseWorkload struct{ base }

func (l *leaseWorkload) setup(ctx context.Context, workers []*worker) error {
	return seed(ctx, workers, len(workers), func(ctx context.Context, _ *worker, i int) error {
		w := workers[i]
		resp, err := w.cli.Grant(ctx, sessionTTL)
		if err != nil {
			return fmt.Errorf("granting a lease: %w", err)
		}
		w.lease = resp.ID
		return nil
	})
}

func (l *leaseWorkload) op(ctx context.Context, w *worker, _ int64) (time.Time, error) {
	_, err := w.cli.KeepAliveOnce(ctx, w.lease)
	return time.Time{}, err
}

func (l *leaseWorkload) teardown(ctx context.Context, workers []*worker) error {
	return seed(ctx, workers, len(workers), func(ctx context.Context, _ *worker, i int) error {
		w := workers[i]
		if w.lease == 0 {
			return nil
		}
		_, err := w.cli.Revoke(ctx, w.lease)
		if err != nil {
			return fmt.Errorf("revoking lease %x: %w", int64(w.lease), err)
		}
		w.lease = 0
		return nil
	})
}

// sessionWorkload is lock (acquire and release a concurrency.Mutex) and election (campaign and
// resign). Each worker holds one session (a lease) for the run; the lock or election name is
// drawn from the key space, so --key-space-size=1 makes every worker contend for one lock.
type sessionWorkload struct{ base }

func (s *sessionWorkload) setup(ctx context.Context, workers []*worker) error {
	return seed(ctx, workers, len(workers), func(ctx context.Context, _ *worker, i int) error {
		w := workers[i]
		sess, err := concurrency.NewSession(w.cli, concurrency.WithTTL(sessionTTL), concurrency.WithContext(context.Background()))
		if err != nil {
			return fmt.Errorf("creating a session: %w", err)
		}
		w.session = sess
		return nil
	})
}

func (s *sessionWorkload) op(ctx context.Context, w *worker, i int64) (time.Time, error) {
	idx := s.keyIndex(i)
	if s.cfg.Workload == WorkloadLock {
		m := concurrency.NewMutex(w.session, s.keys.key("lock-", idx))
		if err := m.Lock(ctx); err != nil {
			return time.Time{}, err
		}
		return time.Time{}, m.Unlock(ctx)
	}
	e := concurrency.NewElection(w.session, s.keys.key("election-", idx))
	if err := e.Campaign(ctx, s.val); err != nil {
		return time.Time{}, err
	}
	return time.Time{}, e.Resign(ctx)
}

// teardown closes the sessions, which revokes their leases and with them any lock or election
// key an interrupted operation left behind.
func (s *sessionWorkload) teardown(ctx context.Context, workers []*worker) error {
	return seed(ctx, workers, len(workers), func(ctx context.Context, _ *worker, i int) error {
		w := workers[i]
		if w.session == nil {
			return nil
		}
		err := w.session.Close()
		w.session = nil
		if err != nil {
			return fmt.Errorf("closing a session: %w", err)
		}
		return nil
	})
}
