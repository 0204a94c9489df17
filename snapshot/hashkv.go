package snapshot

import (
	"context"
	"errors"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// HashKV asks member m for the hash of its keyspace up to rev, on the kept connection to the
// address m answered Status on in its snapshot. HashKV is no raft proposal: it reads the member's
// own backend. The answer counts only when its header names m: an address may reach another
// member (a VIP, a reused address), whose hash would be taken for m's.
func (t *Taker) HashKV(ctx context.Context, m *Member, rev int64) (*pb.HashKVResponse, error) {
	if !m.Up() || m.Endpoint == "" {
		return nil, errors.New("member did not answer Status: no address known to reach it")
	}
	c, err := t.client(ctx, m.Endpoint)
	if err != nil {
		return nil, err
	}
	resp, err := pb.NewMaintenanceClient(c.ActiveConnection()).HashKV(ctx, &pb.HashKVRequest{Revision: rev})
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("HashKV on %s: %w", m.Endpoint, ctx.Err())
		}
		return nil, fmt.Errorf("HashKV on %s: %w", m.Endpoint, rpctypes.Error(err))
	}
	if id := resp.GetHeader().GetMemberId(); id != m.ID {
		t.learn(m.Endpoint, id)
		return nil, &WrongMemberError{Endpoint: m.Endpoint, MemberID: id}
	}
	return resp, nil
}

// Revision asks member m for its current revision (a Status call, no proposal), on the same
// connection as HashKV.
func (t *Taker) Revision(ctx context.Context, m *Member) (int64, error) {
	if !m.Up() || m.Endpoint == "" {
		return 0, errors.New("member did not answer Status: no address known to reach it")
	}
	resp, err := t.statusAt(ctx, m.Endpoint)
	if err != nil {
		return 0, fmt.Errorf("status on %s: %w", m.Endpoint, err)
	}
	if id := resp.GetHeader().GetMemberId(); id != m.ID {
		t.learn(m.Endpoint, id)
		return 0, &WrongMemberError{Endpoint: m.Endpoint, MemberID: id}
	}
	return resp.GetHeader().GetRevision(), nil
}
