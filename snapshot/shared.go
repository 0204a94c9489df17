package snapshot

import (
	"context"
	"sync"
	"time"
)

// TakeFunc takes one snapshot; (*Taker).Take is the implementation.
type TakeFunc func(ctx context.Context, needs Needs) *Snapshot

// Shared lets concurrent callers share one in-flight snapshot instead of each asking every member
// again: a burst of API requests costs etcd one snapshot, not one per request. Nothing is kept once
// a snapshot is done, so every caller that arrives afterwards gets a fresh one.
//
// A caller joins an in-flight snapshot only when that snapshot's deadline is no later than its own,
// so joining never makes a caller wait past its deadline. A caller with an earlier deadline starts
// its own snapshot, which later callers may join in turn.
type Shared struct {
	take  TakeFunc
	needs Needs

	mu       sync.Mutex
	inflight []*sharedCall
}

type sharedCall struct {
	deadline time.Time
	done     chan struct{}
	snap     *Snapshot
	cancel   context.CancelFunc
	waiters  int // guarded by Shared.mu
}

// NewShared shares snapshots taken by take with needs.
func NewShared(take TakeFunc, needs Needs) *Shared {
	return &Shared{take: take, needs: needs}
}

// Needs is what every shared snapshot asks for.
func (s *Shared) Needs() Needs { return s.needs }

// Take returns a snapshot taken under a deadline no later than deadline: an in-flight one when
// there is one that fits, else a new one. The deadline is passed apart from ctx so that the taker,
// which returns just after its deadline with whatever did not answer marked down, is always waited
// for; ctx only says whether the caller is still there (Take returns ctx's error when it goes).
// The snapshot is shared with other callers and must not be modified.
//
// A caller that goes while others still wait gets ctx's error at once. The last caller to go
// cancels the snapshot and gets what it holds by then (the taker returns promptly once canceled,
// with whatever had not answered marked down): a server shutting down answers what it has.
func (s *Shared) Take(ctx context.Context, deadline time.Time) (*Snapshot, error) {
	s.mu.Lock()
	var call *sharedCall
	for _, c := range s.inflight {
		if !c.deadline.After(deadline) {
			call = c
			break
		}
	}
	if call == nil {
		// The snapshot must outlive the request that started it, since others may be waiting for
		// it: it keeps that request's values but not its cancellation, and is canceled only when
		// every waiter has gone.
		tctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
		call = &sharedCall{deadline: deadline, done: make(chan struct{}), cancel: cancel}
		s.inflight = append(s.inflight, call)
		go s.run(tctx, call)
	}
	call.waiters++
	s.mu.Unlock()

	select {
	case <-call.done:
		s.leave(call)
		return call.snap, nil
	case <-ctx.Done():
		if s.leave(call) {
			<-call.done
			return call.snap, nil
		}
		return nil, ctx.Err()
	}
}

func (s *Shared) run(ctx context.Context, call *sharedCall) {
	defer call.cancel()
	snap := s.take(ctx, s.needs)
	s.mu.Lock()
	s.drop(call)
	call.snap = snap
	s.mu.Unlock()
	close(call.done)
}

// drop removes call from the in-flight list, so that later callers start a fresh snapshot.
func (s *Shared) drop(call *sharedCall) {
	for i, c := range s.inflight {
		if c == call {
			s.inflight = append(s.inflight[:i], s.inflight[i+1:]...)
			return
		}
	}
}

// leave drops a waiter; the last one to give up before the snapshot is done cancels it, so a
// snapshot nobody waits for any more stops asking etcd. It reports whether the caller was that
// last waiter.
func (s *Shared) leave(call *sharedCall) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	call.waiters--
	if call.waiters > 0 {
		return false
	}
	select {
	case <-call.done:
	default:
		call.cancel()
		s.drop(call)
	}
	return true
}
