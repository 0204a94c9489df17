package backup

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// Result is the verdict on a snapshot file.
type Result string

const (
	// ResultIntact: the trailer and the database are sound; not compared with a cluster.
	ResultIntact Result = "intact"
	// ResultVerified: sound, and its hash equals the live members' HashKV at its revision.
	ResultVerified Result = "verified"
	// ResultMismatch: sound, but a live member's HashKV at its revision differs.
	ResultMismatch Result = "mismatch"
	// ResultCompacted: sound, but unverifiable: the cluster compacted past its revision.
	ResultCompacted Result = "compacted"
	// ResultUnverifiable: sound, but no member could be compared (unreachable, behind, or its
	// hash covers revisions the file's own compaction removed).
	ResultUnverifiable Result = "unverifiable"
	// ResultCorrupt: the trailer or the database is damaged.
	ResultCorrupt Result = "corrupt"
)

// Results lists every result, in the order they are reported.
var Results = []Result{ResultIntact, ResultVerified, ResultMismatch, ResultCompacted, ResultUnverifiable, ResultCorrupt}

// ExitCode is the `snapshot verify` exit status for the result.
func (r Result) ExitCode() int {
	switch r {
	case ResultIntact, ResultVerified:
		return 0
	case ResultCorrupt:
		return 2
	default:
		return 1
	}
}

// Member comparison outcomes.
const (
	MemberMatch     = "match"
	MemberMismatch  = "mismatch"
	MemberCompacted = "compacted"
	// MemberBehind: the member has not reached the file's revision yet.
	MemberBehind = "behind"
	// MemberIncomparable: the member's hash starts below the file's compaction.
	MemberIncomparable = "incomparable"
	MemberError        = "error"
)

// MemberHash is one member's HashKV at the file's revision, compared with the file.
type MemberHash struct {
	Name     string `json:"name"`
	ID       string `json:"id"`
	Endpoint string `json:"endpoint"`
	Outcome  string `json:"outcome"`
	// Hash and CompactRevision are the member's answer; FileHash the file's hash computed with
	// the member's compaction revision.
	Hash            uint32 `json:"hash,omitempty"`
	CompactRevision int64  `json:"compact_revision,omitempty"`
	FileHash        uint32 `json:"file_hash,omitempty"`
	Error           string `json:"error,omitempty"`
}

// Verification is the comparison of a file with a live cluster.
type Verification struct {
	Result  Result       `json:"result"`
	Reason  string       `json:"reason,omitempty"`
	Members []MemberHash `json:"members"`
}

// VerifyAgainst asks every voting member of the cluster (learners refuse HashKV) for HashKV at
// the file's revision, concurrently, each on a client bound to that member alone, and compares.
// Any differing member makes a mismatch; otherwise one matching member verifies the file. Members
// whose Status failed in the snapshot the list came from are not asked; ctx bounds the rest.
func VerifyAgainst(ctx context.Context, f *File, conn etcdconn.Config, members []*snapshot.Member) Verification {
	v := Verification{Members: []MemberHash{}}
	if _, err := conn.Credentials(nil); err != nil {
		v.Result, v.Reason = ResultUnverifiable, err.Error()
		return v
	}
	var targets []*snapshot.Member
	for _, m := range members {
		if !m.IsLearner && m.Endpoint != "" {
			targets = append(targets, m)
		}
	}
	if len(targets) == 0 {
		v.Result, v.Reason = ResultUnverifiable, "no voting member with a client URL to compare with"
		return v
	}
	hashes := make([]MemberHash, len(targets))
	var fileHashes sync.Map // compaction revision -> file hash (or error), computed once each
	var hashMu sync.Mutex
	fileHash := func(compactRev int64) (uint32, error) {
		hashMu.Lock() // one walk of the file at a time: they would only compete for the disk
		defer hashMu.Unlock()
		if h, ok := fileHashes.Load(compactRev); ok {
			return h.(uint32), nil
		}
		h, err := f.HashKV(compactRev)
		if err == nil {
			fileHashes.Store(compactRev, h)
		}
		return h, err
	}
	var wg sync.WaitGroup
	for i, m := range targets {
		if m.StatusErr != nil {
			// Down when the cluster was looked at: asking again would only wait on it.
			hashes[i] = MemberHash{Name: m.Name, ID: snapshot.IDString(m.ID), Endpoint: m.Endpoint,
				Outcome: MemberError, Error: "did not answer Status: " + m.StatusErr.Error()}
			continue
		}
		wg.Go(func() {
			hashes[i] = compareMember(ctx, f, conn, m, fileHash)
		})
	}
	wg.Wait()
	v.Members = hashes

	count := map[string][]string{}
	for _, h := range hashes {
		count[h.Outcome] = append(count[h.Outcome], h.Name)
	}
	rev := f.Info().Revision
	switch {
	case len(count[MemberMismatch]) > 0:
		v.Result = ResultMismatch
		v.Reason = fmt.Sprintf("HashKV at revision %d differs on %s", rev, strings.Join(count[MemberMismatch], ", "))
	case len(count[MemberMatch]) > 0:
		v.Result = ResultVerified
	case len(count[MemberCompacted]) > 0:
		v.Result = ResultCompacted
		v.Reason = fmt.Sprintf("unverifiable: the cluster compacted past revision %d (%s)", rev, strings.Join(count[MemberCompacted], ", "))
	default:
		v.Result = ResultUnverifiable
		var parts []string
		for _, h := range hashes {
			parts = append(parts, fmt.Sprintf("%s: %s", h.Name, h.Error))
		}
		v.Reason = "no member could be compared: " + strings.Join(parts, "; ")
	}
	return v
}

func compareMember(ctx context.Context, f *File, conn etcdconn.Config, m *snapshot.Member, fileHash func(int64) (uint32, error)) MemberHash {
	out := MemberHash{Name: m.Name, ID: snapshot.IDString(m.ID), Endpoint: m.Endpoint}
	resp, err := hashKV(ctx, conn, m.Endpoint, f.Info().Revision)
	switch {
	case errors.Is(err, rpctypes.ErrCompacted):
		out.Outcome, out.Error = MemberCompacted, err.Error()
		return out
	case errors.Is(err, rpctypes.ErrFutureRev):
		out.Outcome, out.Error = MemberBehind, err.Error()
		return out
	case err != nil:
		out.Outcome, out.Error = MemberError, err.Error()
		return out
	case resp.GetHeader().GetMemberId() != m.ID:
		// An address can reach another member (a VIP, a reused address): its hash is not m's.
		out.Outcome = MemberError
		out.Error = fmt.Sprintf("answered by member %s on %s", snapshot.IDString(resp.GetHeader().GetMemberId()), m.Endpoint)
		return out
	}
	// A member's hash is comparable only if every revision it covers is still in the file. At a
	// compaction's revision etcd answers with the hash it stored while compacting, which starts
	// at the compaction before and so covers revisions the file no longer holds. HashKV(0) is
	// never answered from that store: when the member is still at the file's revision, it gives
	// a hash of the current compaction.
	if !comparable(f, resp) {
		if r0, err := hashKV(ctx, conn, m.Endpoint, 0); err == nil && r0.HashRevision == f.Info().Revision && comparable(f, r0) {
			resp = r0
		}
	}
	out.Hash, out.CompactRevision = resp.Hash, resp.CompactRevision
	if !comparable(f, resp) {
		out.Outcome = MemberIncomparable
		out.Error = fmt.Sprintf("its hash starts at compaction %d, below the file's compaction %d", resp.CompactRevision, f.Info().CompactRevision)
		return out
	}
	fh, err := fileHash(resp.CompactRevision)
	if err != nil {
		out.Outcome, out.Error = MemberError, err.Error()
		return out
	}
	out.FileHash = fh
	if fh == resp.Hash {
		out.Outcome = MemberMatch
	} else {
		out.Outcome = MemberMismatch
	}
	return out
}

// comparable says whether the member's hash covers only revisions the file holds. A member that
// never compacted answers -1; a file that never was holds no compaction (0).
func comparable(f *File, resp *pb.HashKVResponse) bool {
	fc := f.Info().CompactRevision
	return fc == 0 || resp.CompactRevision >= fc
}

// hashKV asks one member, on a client bound to its endpoint alone (a client with several
// endpoints balances and could answer from another member).
func hashKV(ctx context.Context, conn etcdconn.Config, endpoint string, rev int64) (*pb.HashKVResponse, error) {
	cli, err := dial(ctx, conn, endpoint)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	resp, err := pb.NewMaintenanceClient(cli.ActiveConnection()).HashKV(ctx, &pb.HashKVRequest{Revision: rev})
	if err != nil {
		return nil, fmt.Errorf("HashKV on %s: %w", endpoint, rpctypes.Error(err))
	}
	return resp, nil
}

// dial returns a client bound to one endpoint, with the credentials every client of the exporter
// uses (etcdconn.Credentials): the server verified against --etcd.tls.server-name when it is given,
// not the dialed host as clientv3's own TLS would, and the password file as it is now.
func dial(ctx context.Context, conn etcdconn.Config, endpoint string) (*clientv3.Client, error) {
	cr, err := conn.Credentials(nil)
	if err != nil {
		return nil, err
	}
	dialTimeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		dialTimeout = max(min(dialTimeout, time.Until(dl)), time.Millisecond)
	}
	cfg := cr.ClientConfig(endpoint, dialTimeout)
	cfg.Context = ctx
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", endpoint, err)
	}
	return cli, nil
}
