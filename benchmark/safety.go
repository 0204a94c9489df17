package benchmark

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// preflightTimeout bounds each pre-flight request, so that an unreachable or hung cluster is
// reported instead of waited for.
const preflightTimeout = 10 * time.Second

// bytesPerRevision is the estimated on-disk overhead of one revision beyond its key and value:
// the bbolt key (a 17-byte revision), the mvccpb.KeyValue framing (revisions, version, lease),
// bbolt's 16-byte leaf element header, and slack for page fill. Over-estimating is the safe side.
const bytesPerRevision = 128

type preflightInfo struct {
	existing  int64
	dbSize    int64 // largest db size over the members asked
	quota     int64 // smallest quota over the members asked
	estimate  int64 // bytes the run would add, -1 when unbounded
	endpoints []string
}

func (p preflightInfo) limit() int64 { return int64(float64(p.quota) * QuotaUsageLimit) }

// preflight refuses to run when the run could hurt the cluster or someone else's data.
func preflight(ctx context.Context, cli *clientv3.Client, cfg Config) (preflightInfo, error) {
	info := preflightInfo{endpoints: cli.Endpoints()}

	// AlarmList is a raft proposal: fine once per run, never on a scrape path.
	actx, cancel := context.WithTimeout(ctx, preflightTimeout)
	alarms, err := cli.AlarmList(actx)
	cancel()
	if err != nil {
		return info, fmt.Errorf("listing etcd alarms: %w", err)
	}
	if len(alarms.Alarms) > 0 {
		var list []string
		for _, a := range alarms.Alarms {
			list = append(list, fmt.Sprintf("%s on member %x", a.Alarm, a.MemberID))
		}
		return info, fmt.Errorf("refusing to run: the cluster has active alarms (%s); fix and disarm them first", strings.Join(list, ", "))
	}

	// Keys already under the prefix (a user's, or other runs', finished with --keep or still
	// running) are no reason to refuse: this run never writes or deletes outside its own
	// directory. They are counted for the log only.
	gctx, cancel := context.WithTimeout(ctx, preflightTimeout)
	resp, err := cli.Get(gctx, cfg.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	cancel()
	if err != nil {
		return info, fmt.Errorf("counting keys under %s: %w", cfg.Prefix, err)
	}
	info.existing = resp.Count
	// The run's own directory must be new: the cleanup deletes everything in it, so a key
	// there that this run did not write would be lost. A generated run ID is never reused
	// (its time and 32 random bits); this stops a caller that chose one.
	own := cfg.runPrefix()
	gctx, cancel = context.WithTimeout(ctx, preflightTimeout)
	resp, err = cli.Get(gctx, own, clientv3.WithPrefix(), clientv3.WithCountOnly())
	cancel()
	if err != nil {
		return info, fmt.Errorf("counting keys under %s: %w", own, err)
	}
	if resp.Count > 0 {
		return info, fmt.Errorf("refusing to run: the run's directory %s already holds %d keys that this run did not write; choose another run ID", own, resp.Count)
	}

	if err := info.readSize(ctx, cli); err != nil {
		return info, err
	}
	info.estimate = estimateBytes(cfg)
	if cfg.writeFraction() == 0 {
		return info, nil
	}
	if info.dbSize >= info.limit() {
		return info, fmt.Errorf("refusing to run: the database is already %s of its %s quota, past the %.0f%% limit", mib(info.dbSize), mib(info.quota), QuotaUsageLimit*100)
	}
	if info.estimate >= 0 && info.dbSize+info.estimate > info.limit() {
		return info, fmt.Errorf("refusing to run: the run would write about %s, taking the database from %s past %.0f%% of its %s quota; lower --total, --val-size or --duration",
			mib(info.estimate), mib(info.dbSize), QuotaUsageLimit*100, mib(info.quota))
	}
	return info, nil
}

// readSize asks every configured endpoint for its db size and quota. One answer is enough: a
// member that does not answer is no reason to refuse, the others' sizes are close.
func (p *preflightInfo) readSize(ctx context.Context, cli *clientv3.Client) error {
	var errs []error
	answered := false
	for _, ep := range p.endpoints {
		sctx, cancel := context.WithTimeout(ctx, preflightTimeout)
		st, err := cli.Status(sctx, ep)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ep, err))
			continue
		}
		quota := st.DbSizeQuota
		if quota <= 0 {
			quota = DefaultQuotaBytes // etcd 3.5 does not report its quota
		}
		if !answered || quota < p.quota {
			p.quota = quota
		}
		p.dbSize = max(p.dbSize, st.DbSize)
		answered = true
	}
	if !answered {
		return fmt.Errorf("reading the database size: %w", errors.Join(errs...))
	}
	return nil
}

// writeCost is the estimated database growth of a run: fixed (seeds, leases) plus per operation.
// Nothing is compacted, so every write stays as a revision; the final delete adds one tombstone
// per distinct key.
type writeCost struct {
	fixed     int64   // seeds, and a lease grant and revoke per worker
	perOp     float64 // average over operations
	tombstone int64   // per distinct key written
}

func newWriteCost(cfg Config) writeCost {
	key := int64(len(cfg.runPrefix()) + max(cfg.KeySize, len("election-")+cfg.KeySize))
	val := int64(cfg.ValSize)
	c := writeCost{tombstone: key + bytesPerRevision}
	switch cfg.Workload {
	case WorkloadPut, WorkloadTxnPut, WorkloadWatch, WorkloadMixed:
		c.perOp = cfg.writeFraction() * float64(key+val+bytesPerRevision)
	case WorkloadLock, WorkloadElection:
		// a key (name + lease id) created and deleted per operation, nothing left to tombstone
		c.perOp = 2 * float64(key+17+val+bytesPerRevision)
		c.tombstone = 0
	case WorkloadRange, WorkloadLease:
		c.tombstone = 0 // reads and keep-alives do not touch the key space
	}
	if cfg.Workload == WorkloadRange || cfg.Workload == WorkloadMixed {
		seeds := int64(min(cfg.KeySpaceSize, maxSeedKeys))
		c.fixed += seeds * (key + val + bytesPerRevision + key + bytesPerRevision)
	}
	c.fixed += int64(cfg.Clients) * 2 * bytesPerRevision
	return c
}

// estimateBytes is how much the run could add to the database, or -1 when it is bounded only by
// time.
func estimateBytes(cfg Config) int64 {
	ops := cfg.plannedOps()
	if ops < 0 {
		return -1
	}
	c := newWriteCost(cfg)
	distinct := min(ops, int64(cfg.KeySpaceSize))
	return c.fixed + int64(c.perOp*float64(ops)) + distinct*c.tombstone
}

// writeBudget stops a run bounded by time alone before its writes, as estimated, take the
// database past the limit: the database size polled by guardQuota lags a fast writer by up to a
// second, time enough to hit NOSPACE on a small quota. Each operation reserves its cost before
// it is sent, a tombstone included, which over-estimates on purpose.
type writeBudget struct {
	left  atomic.Int64
	perOp int64
}

// newWriteBudget returns nil when the pre-flight estimate already bounds the run.
func newWriteBudget(cfg Config, pre preflightInfo) *writeBudget {
	if cfg.plannedOps() >= 0 || cfg.writeFraction() == 0 {
		return nil
	}
	c := newWriteCost(cfg)
	b := &writeBudget{perOp: int64(math.Ceil(c.perOp + cfg.writeFraction()*float64(c.tombstone)))}
	b.left.Store(pre.limit() - pre.dbSize - c.fixed)
	return b
}

// reserve reports whether one more operation fits.
func (b *writeBudget) reserve() bool { return b == nil || b.left.Add(-b.perOp) >= 0 }

// guardQuota stops the run when the database crosses the limit anyway: runs bounded by time alone
// have no estimate, and other clients write too.
func guardQuota(ctx context.Context, cli *clientv3.Client, pre preflightInfo, stop func(error)) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var p preflightInfo
		p.endpoints = pre.endpoints
		if err := p.readSize(ctx, cli); err != nil {
			continue
		}
		if p.dbSize >= p.limit() {
			stop(fmt.Errorf("stopped early: the database reached %s, %.0f%% of its %s quota", mib(p.dbSize), QuotaUsageLimit*100, mib(p.quota)))
			return
		}
	}
}

// cleanup deletes the run's own directory (unless --keep) and returns how many keys it removed:
// keys elsewhere under the prefix, other runs' or anyone's, are never touched. It never compacts
// or defragments: those are the operator's decisions.
// With --keep it counts the keys left in the run's directory instead.
func cleanup(ctx context.Context, cli *clientv3.Client, cfg Config) (removed, kept int64, err error) {
	own := cfg.runPrefix()
	if cfg.Keep {
		resp, err := cli.Get(ctx, own, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return 0, 0, fmt.Errorf("counting the kept keys under %s: %w", own, err)
		}
		return 0, resp.Count, nil
	}
	resp, err := cli.Delete(ctx, own, clientv3.WithPrefix())
	if err != nil {
		return 0, 0, fmt.Errorf("deleting the benchmark's keys under %s (delete them with: etcdctl del --prefix %s): %w", own, own, err)
	}
	return resp.Deleted, 0, nil
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
