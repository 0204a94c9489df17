package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// SaveOptions configure one `snapshot save`.
type SaveOptions struct {
	Conn    etcdconn.Config
	Dir     string
	Cluster string
	// Member names the member to stream from (its name or hex ID); empty chooses a follower.
	Member string
	// Keep, when positive, is how many of the cluster's snapshots retention leaves in Dir.
	Keep int
	// StatusTimeout bounds the look at the cluster that chooses the member.
	StatusTimeout time.Duration
	// VerifyTimeout bounds the comparison with the members' HashKV, so that a member that hangs
	// after the look at the cluster cannot hold the save (default 5 minutes).
	VerifyTimeout time.Duration
	Logger        *slog.Logger
}

// SaveResult is what one save did; it is filled as far as the save went, also on failure.
type SaveResult struct {
	Cluster string `json:"cluster"`
	// Path is the final file; empty unless the save succeeded.
	Path         string        `json:"path,omitempty"`
	Member       string        `json:"member,omitempty"`
	MemberID     string        `json:"member_id,omitempty"`
	Endpoint     string        `json:"endpoint,omitempty"`
	Start        time.Time     `json:"start"`
	Duration     time.Duration `json:"-"`
	File         *Info         `json:"file,omitempty"`
	Verification *Verification `json:"verification,omitempty"`
	Removed      []string      `json:"removed,omitempty"`
}

// Result is the verdict on the file streamed, "" when no file was checked.
func (r *SaveResult) Result() Result {
	if r.Verification != nil {
		return r.Verification.Result
	}
	return ""
}

// ErrNoMember says no member was fit to stream a snapshot from.
var ErrNoMember = errors.New("no healthy member to take a snapshot from")

// Save streams a snapshot from one healthy member into a temporary file in Dir, syncs it,
// verifies it (trailer, database, HashKV against the live members) and renames it to its final
// name, then syncs Dir. The file never appears under a final name unless it is whole and
// verified (or unverifiable only because of the cluster's state); on any failure, cancellation
// of ctx included, the temporary file is removed.
func Save(ctx context.Context, o SaveOptions) (res *SaveResult, err error) {
	res = &SaveResult{Cluster: o.Cluster, Start: time.Now()}
	defer func() { res.Duration = time.Since(res.Start) }()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := ValidateCluster(o.Cluster); err != nil {
		return res, err
	}
	if fi, err := os.Stat(o.Dir); err != nil {
		return res, fmt.Errorf("snapshot directory: %w", err)
	} else if !fi.IsDir() {
		return res, fmt.Errorf("snapshot directory %s is not a directory", o.Dir)
	}
	if o.StatusTimeout <= 0 {
		o.StatusTimeout = 10 * time.Second
	}
	if o.VerifyTimeout <= 0 {
		o.VerifyTimeout = 5 * time.Minute
	}

	taker, err := snapshot.NewTaker(o.Conn, snapshot.WithLogger(o.Logger))
	if err != nil {
		return res, err
	}
	defer taker.Close()
	sctx, cancel := context.WithTimeout(ctx, o.StatusTimeout)
	s := taker.Take(sctx, snapshot.Needs{Status: true})
	cancel()
	if s.MemberListErr != nil {
		return res, fmt.Errorf("listing the cluster's members: %w", s.MemberListErr)
	}
	m, err := ChooseMember(s, o.Member)
	if err != nil {
		return res, err
	}
	res.Member, res.MemberID, res.Endpoint = m.Name, snapshot.IDString(m.ID), m.Endpoint
	o.Logger.Info("streaming snapshot", "member", m.Name, "member_id", res.MemberID, "endpoint", m.Endpoint, "dir", o.Dir)

	tmp, err := os.CreateTemp(o.Dir, tempPattern(o.Cluster))
	if err != nil {
		return res, fmt.Errorf("creating the temporary file: %w", err)
	}
	tmpName := tmp.Name()
	renamed := false
	defer func() {
		if !renamed {
			_ = tmp.Close()
			if rerr := os.Remove(tmpName); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = errors.Join(err, fmt.Errorf("removing the temporary file: %w", rerr))
			}
		}
	}()
	if err := stream(ctx, o.Conn, m.Endpoint, tmp); err != nil {
		return res, err
	}
	if err := tmp.Sync(); err != nil {
		return res, fmt.Errorf("syncing %s: %w", tmpName, err)
	}
	if err := tmp.Close(); err != nil {
		return res, fmt.Errorf("closing %s: %w", tmpName, err)
	}

	f, err := Open(tmpName)
	if err != nil {
		if IsCorrupt(err) {
			res.Verification = &Verification{Result: ResultCorrupt, Reason: err.Error(), Members: []MemberHash{}}
		}
		return res, fmt.Errorf("snapshot from %s: %w", m.Name, err)
	}
	info := f.Info()
	res.File = &info
	vctx, vcancel := context.WithTimeout(ctx, o.VerifyTimeout)
	v := VerifyAgainst(vctx, f, o.Conn, s.Members)
	vcancel()
	_ = f.Close()
	res.Verification = &v
	if err := ctx.Err(); err != nil {
		return res, err
	}
	switch v.Result {
	case ResultMismatch:
		return res, fmt.Errorf("snapshot from %s at revision %d does not match the cluster: %s", m.Name, info.Revision, v.Reason)
	case ResultCompacted, ResultUnverifiable:
		o.Logger.Warn("snapshot kept unverified", "revision", info.Revision, "reason", v.Reason)
	}

	final := filepath.Join(o.Dir, FileName(o.Cluster, res.Start, info.Revision))
	if err := os.Rename(tmpName, final); err != nil {
		return res, fmt.Errorf("renaming the snapshot: %w", err)
	}
	renamed = true
	info.Path = final
	res.File = &info
	if err := syncDir(o.Dir); err != nil {
		return res, err
	}
	res.Path = final
	removed, err := Prune(o.Dir, o.Cluster, o.Keep)
	res.Removed = removed
	if err != nil {
		return res, err
	}
	return res, nil
}

// stream copies the member's Maintenance.Snapshot into w over a client bound to that member.
func stream(ctx context.Context, conn etcdconn.Config, endpoint string, w io.Writer) error {
	cli, err := dial(ctx, conn, endpoint)
	if err != nil {
		return err
	}
	defer cli.Close()
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("snapshot from %s: %w", endpoint, err)
	}
	defer rc.Close()
	if _, err := io.Copy(w, rc); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("snapshot from %s interrupted: %w", endpoint, ctx.Err())
		}
		return fmt.Errorf("snapshot from %s: %w", endpoint, err)
	}
	// A signal that arrives after the last byte still stops the save before the rename.
	if ctx.Err() != nil {
		return fmt.Errorf("snapshot from %s interrupted: %w", endpoint, ctx.Err())
	}
	return nil
}

// ChooseMember picks the member to stream from. want, when set, is a member's name or hex ID and
// must be up. Otherwise the choice spares the leader: an up voting follower that follows the
// quorum's leader and has no CORRUPT alarm, the most caught-up (highest applied index) first;
// the leader only when no follower qualifies. Learners refuse Maintenance.Snapshot.
func ChooseMember(s *snapshot.Snapshot, want string) (*snapshot.Member, error) {
	if want != "" {
		for _, m := range s.Members {
			if m.Name == want || snapshot.IDString(m.ID) == want || strconv.FormatUint(m.ID, 10) == want {
				switch {
				case m.IsLearner:
					return nil, fmt.Errorf("member %s is a learner: learners refuse Maintenance.Snapshot", want)
				case !m.Up():
					return nil, fmt.Errorf("member %s is down: %v", want, m.StatusErr)
				}
				return m, nil
			}
		}
		var names []string
		for _, m := range s.Members {
			names = append(names, m.Name+" ("+snapshot.IDString(m.ID)+")")
		}
		return nil, fmt.Errorf("no member named %q; members: %v", want, names)
	}
	c := s.Cluster()
	var followers []*snapshot.Member
	var leader *snapshot.Member
	for _, m := range s.Members {
		if m.IsLearner || !m.Up() || m.Alarms[snapshot.AlarmCorrupt] {
			continue
		}
		if m.IsLeader() {
			if c.HasQuorum && m.ID == c.Leader {
				leader = m
			}
			continue
		}
		if c.HasQuorum && m.Leader() == c.Leader {
			followers = append(followers, m)
		}
	}
	slices.SortStableFunc(followers, func(a, b *snapshot.Member) int {
		ai, bi := a.Status.RaftAppliedIndex, b.Status.RaftAppliedIndex
		switch {
		case ai > bi:
			return -1
		case ai < bi:
			return 1
		}
		return 0
	})
	if len(followers) > 0 {
		return followers[0], nil
	}
	if leader != nil {
		return leader, nil
	}
	return nil, fmt.Errorf("%w: %d of %d voting members up, quorum %v", ErrNoMember, c.VotingMembersUp, c.VotingMembers, c.HasQuorum)
}
