// Package consistency compares the members' key-value hashes (HashKV) at one revision, so that
// data that silently diverged on one member is seen: etcd's own corruption checks are off by
// default, and its periodic check skips members that do not answer. HashKV reads a member's whole
// keyspace, so a Checker runs at most once per interval and serves its last result in between.
package consistency

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// Hasher asks one member for its HashKV, or its current revision; *snapshot.Taker is the
// implementation. It must return an answer only when the answer's header names m.
type Hasher interface {
	HashKV(ctx context.Context, m *snapshot.Member, rev int64) (*pb.HashKVResponse, error)
	Revision(ctx context.Context, m *snapshot.Member) (int64, error)
}

// Why a member was not compared. A member left without a verdict is "unknown", never consistent.
const (
	// ReasonMemberDown: the member did not answer Status in the snapshot the check started from.
	ReasonMemberDown = "member_down"
	// ReasonHashFailed: HashKV failed (timeout, refused, answered by another member).
	ReasonHashFailed = "hash_failed"
	// ReasonPermissionDenied: auth is enabled and the exporter's user is not root: etcd allows
	// HashKV to the root role only (IsAdminPermitted, as for Snapshot and Defragment).
	ReasonPermissionDenied = "permission_denied"
	// ReasonCompacted: the revision was compacted on the member on every attempt.
	ReasonCompacted = "revision_compacted"
	// ReasonCompactRevisionDiffers: the member's compact revision is not that of the compared
	// members: hashes over different ranges of history cannot be compared.
	ReasonCompactRevisionDiffers = "compact_revision_differs"
	// ReasonTooFewMembers: fewer than two members could be compared (a single-member cluster).
	ReasonTooFewMembers = "too_few_members"
	// ReasonNoMajority: no hash is held by more than half of the compared members.
	ReasonNoMajority = "no_majority"
)

// Reasons lists every reason, in the order they are reported.
var Reasons = []string{ReasonMemberDown, ReasonHashFailed, ReasonPermissionDenied, ReasonCompacted, ReasonCompactRevisionDiffers, ReasonTooFewMembers, ReasonNoMajority}

// MaxAttempts bounds the attempts of one check: a compaction between choosing the revision and
// asking (or between two members' answers) makes the next attempt pick a newer revision.
const MaxAttempts = 3

// MemberResult is one voting member's part in a check.
type MemberResult struct {
	ID   uint64
	Name string
	// Compared is true when the member's hash was compared with the others'; then Agrees says
	// whether it equals the majority's. Otherwise Reason says why not.
	Compared bool
	Agrees   bool
	Reason   string
	Err      error
	// Hash and CompactRevision are the member's answer, when it answered.
	Hash            uint32
	CompactRevision int64
}

// Result is the outcome of one check.
type Result struct {
	Time     time.Time
	Duration time.Duration
	// Revision is the revision the hashes were taken at (of the last attempt) and
	// CompactRevision that of the compared members (-1: never compacted, as etcd reports it).
	Revision        int64
	CompactRevision int64
	// Compared is true when at least two members were compared and a majority found.
	Compared bool
	// DistinctHashes counts the different hashes among the members with the compared compact revision.
	DistinctHashes int
	Attempts       int
	// Members holds the voting members, in the snapshot's order. Learners refuse HashKV
	// ("rpc not supported for learner") and are left out.
	Members []MemberResult
}

// Minority names the compared members whose hash differs from the majority's.
func (r *Result) Minority() []string {
	var out []string
	for _, m := range r.Members {
		if m.Compared && !m.Agrees {
			out = append(out, m.Name)
		}
	}
	return out
}

// DataCheck is the result as the snapshot's health verdict reads it; nil when nothing was compared.
func (r *Result) DataCheck() *snapshot.DataCheck {
	if r == nil || !r.Compared {
		return nil
	}
	dc := &snapshot.DataCheck{Time: r.Time, Revision: r.Revision}
	for _, m := range r.Members {
		if m.Compared && !m.Agrees {
			dc.Minority = append(dc.Minority, m.ID)
		}
	}
	return dc
}

// Checker runs one cluster's checks: at most once per interval, each started by a caller that
// finds the last result too old (lazily: no caller, no check), each bounded by its own timeout and
// by Close.
type Checker struct {
	hasher   Hasher
	interval time.Duration
	timeout  time.Duration
	logger   *slog.Logger

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	last        *Result
	lastSuccess time.Time     // of the last check that compared members
	started     time.Time     // of the last check started
	running     chan struct{} // closed when the running check ends; nil when none runs
	unknown     map[string]uint64
	closed      bool
}

// New returns a Checker; interval and timeout must be positive.
func New(h Hasher, interval, timeout time.Duration, logger *slog.Logger) (*Checker, error) {
	if interval <= 0 {
		return nil, fmt.Errorf("consistency interval must be positive, got %s", interval)
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("consistency timeout must be positive, got %s", timeout)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Checker{hasher: h, interval: interval, timeout: timeout, logger: logger,
		ctx: ctx, cancel: cancel, unknown: map[string]uint64{}}, nil
}

// Close stops a running check and waits for it to end.
func (c *Checker) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
}

// State is what a Checker knows.
type State struct {
	// Last is the last finished check, nil before the first.
	Last *Result
	// LastSuccess is when the last check that compared members started (zero: none yet).
	LastSuccess time.Time
	// Unknown counts, by reason, the members left without a verdict since the Checker was made.
	Unknown map[string]uint64
}

// Peek returns the Checker's state without starting a check.
func (c *Checker) Peek() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stateLocked()
}

func (c *Checker) stateLocked() State {
	counts := make(map[string]uint64, len(c.unknown))
	for k, v := range c.unknown {
		counts[k] = v
	}
	return State{Last: c.last, LastSuccess: c.lastSuccess, Unknown: counts}
}

// Latest returns the Checker's state. When the last check started an interval ago or
// more, it first starts one from s and waits for it until deadline (zero: until it ends); a check
// still running then keeps running, and a later call gets its result. A call made while a check
// runs does not wait for it.
func (c *Checker) Latest(s *snapshot.Snapshot, deadline time.Time) State {
	c.mu.Lock()
	// Only the caller that starts a check waits for it: while a long check runs (a cold
	// database, a member hanging in HashKV) the other scrapes are answered at once with the last
	// result instead of each waiting until its deadline.
	var wait chan struct{}
	if !c.closed && c.running == nil && s.MemberListErr == nil && len(s.Members) > 0 &&
		(c.started.IsZero() || time.Since(c.started) >= c.interval) {
		c.started = time.Now()
		done := make(chan struct{})
		c.running = done
		wait = done
		c.wg.Go(func() {
			ctx, cancel := context.WithTimeout(c.ctx, c.timeout)
			r := Check(ctx, c.hasher, s)
			cancel()
			c.mu.Lock()
			c.last = r
			if r.Compared {
				c.lastSuccess = r.Time
			}
			for _, m := range r.Members {
				if !m.Compared {
					c.unknown[m.Reason]++
				}
			}
			c.running = nil
			c.mu.Unlock()
			close(done)
			if minority := r.Minority(); len(minority) > 0 {
				c.logger.Warn("members' data differ", "revision", r.Revision, "minority", minority)
			}
		})
	}
	c.mu.Unlock()
	if wait != nil {
		var timer <-chan time.Time
		if !deadline.IsZero() {
			t := time.NewTimer(time.Until(deadline))
			defer t.Stop()
			timer = t.C
		}
		select {
		case <-wait:
		case <-timer:
		case <-c.ctx.Done():
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stateLocked()
}

// Check compares the voting members of s once, under ctx. The revision is the lowest current
// revision in the members' Status answers, which every member that answered has applied.
func Check(ctx context.Context, h Hasher, s *snapshot.Snapshot) *Result {
	r := &Result{Time: time.Now()}
	defer func() { r.Duration = time.Since(r.Time) }()
	var targets []int // indexes into r.Members of the members asked
	var asked []*snapshot.Member
	var rev int64
	for _, m := range s.Members {
		if m.IsLearner {
			continue
		}
		mr := MemberResult{ID: m.ID, Name: m.Name}
		if !m.Up() {
			mr.Reason, mr.Err = ReasonMemberDown, m.StatusErr
		} else {
			targets = append(targets, len(r.Members))
			asked = append(asked, m)
			if cur := m.Status.GetHeader().GetRevision(); rev == 0 || cur < rev {
				rev = cur
			}
		}
		r.Members = append(r.Members, mr)
	}
	if len(asked) == 0 {
		return r
	}
	type answer struct {
		resp *pb.HashKVResponse
		err  error
	}
	var answers []answer
	for r.Attempts = 1; ; r.Attempts++ {
		answers = make([]answer, len(asked))
		var wg sync.WaitGroup
		for i, m := range asked {
			wg.Go(func() {
				resp, err := h.HashKV(ctx, m, rev)
				answers[i] = answer{resp, err}
			})
		}
		wg.Wait()
		r.Revision = rev
		// A compaction raced the check when a member already compacted past rev, or members
		// answered with different compact revisions: one of them has applied a compaction the
		// others have not yet.
		race := false
		compacts := map[int64]bool{}
		for _, a := range answers {
			switch {
			case errors.Is(a.err, rpctypes.ErrCompacted), errors.Is(a.err, rpctypes.ErrFutureRev):
				race = true
			case a.err == nil:
				compacts[a.resp.CompactRevision] = true
			}
		}
		race = race || len(compacts) > 1
		if !race || r.Attempts >= MaxAttempts || ctx.Err() != nil {
			break
		}
		// The members' current revisions now are past the compaction they applied; the lowest
		// is one every one of them has.
		next := lowestRevision(ctx, h, asked)
		if next <= rev {
			break
		}
		rev = next
	}

	// Compare the largest group of members sharing a compact revision (the newest on a tie).
	byCompact := map[int64][]int{}
	for i, a := range answers {
		mr := &r.Members[targets[i]]
		switch {
		case errors.Is(a.err, rpctypes.ErrCompacted):
			mr.Reason, mr.Err = ReasonCompacted, a.err
		case errors.Is(a.err, rpctypes.ErrPermissionDenied):
			mr.Reason, mr.Err = ReasonPermissionDenied, a.err
		case a.err != nil:
			mr.Reason, mr.Err = ReasonHashFailed, a.err
		default:
			mr.Hash, mr.CompactRevision = a.resp.Hash, a.resp.CompactRevision
			byCompact[a.resp.CompactRevision] = append(byCompact[a.resp.CompactRevision], targets[i])
		}
	}
	if len(byCompact) == 0 {
		return r
	}
	var compactRevs []int64
	for cr := range byCompact {
		compactRevs = append(compactRevs, cr)
	}
	sort.Slice(compactRevs, func(i, j int) bool {
		a, b := byCompact[compactRevs[i]], byCompact[compactRevs[j]]
		if len(a) != len(b) {
			return len(a) > len(b)
		}
		return compactRevs[i] > compactRevs[j]
	})
	chosen := compactRevs[0]
	for _, cr := range compactRevs[1:] {
		for _, i := range byCompact[cr] {
			r.Members[i].Reason = ReasonCompactRevisionDiffers
			r.Members[i].Err = fmt.Errorf("compact revision %d, compared members' %d", cr, chosen)
		}
	}
	group := byCompact[chosen]
	r.CompactRevision = chosen
	votes := map[uint32]int{}
	for _, i := range group {
		votes[r.Members[i].Hash]++
	}
	r.DistinctHashes = len(votes)
	if len(group) < 2 {
		for _, i := range group {
			r.Members[i].Reason = ReasonTooFewMembers
		}
		return r
	}
	var majority uint32
	found := false
	for hash, n := range votes {
		if 2*n > len(group) {
			majority, found = hash, true
		}
	}
	for _, i := range group {
		if !found {
			r.Members[i].Reason = ReasonNoMajority
			continue
		}
		r.Members[i].Compared = true
		r.Members[i].Agrees = r.Members[i].Hash == majority
	}
	r.Compared = found
	return r
}

// lowestRevision is the lowest current revision among the members that answer (0 when none does).
func lowestRevision(ctx context.Context, h Hasher, members []*snapshot.Member) int64 {
	revs := make([]int64, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Go(func() {
			if rev, err := h.Revision(ctx, m); err == nil {
				revs[i] = rev
			}
		})
	}
	wg.Wait()
	var low int64
	for _, rev := range revs {
		if rev > 0 && (low == 0 || rev < low) {
			low = rev
		}
	}
	return low
}
