package snapshot

import (
	"context"
	"fmt"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// A member is its ID, not an address: several members may share one address (a VIP or DNS name in
// front of them), and one member may be reachable only on some of its addresses (a second
// advertised URL, a port-forward or NAT that only the configured endpoint goes through). The Taker
// learns from the header of every answer which member answered on which address, and reports an
// answer only for the member whose ID is in it.

// WrongMemberError reports an address that answered as another member than the one asked for.
type WrongMemberError struct {
	Endpoint string
	MemberID uint64
}

func (e *WrongMemberError) Error() string {
	return fmt.Sprintf("endpoint %s answered as member %s", e.Endpoint, IDString(e.MemberID))
}

// learn records that member id answered on addr.
func (t *Taker) learn(addr string, id uint64) {
	if id == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.memberOf[addr] = id
}

// claimedEndpoints returns the configured endpoints that some member advertises: those are that
// member's, whatever answered on them last.
func (t *Taker) claimedEndpoints(members []*Member) map[string]bool {
	claimed := map[string]bool{}
	for _, ep := range t.conn.Endpoints {
		for _, m := range members {
			for _, u := range m.ClientURLs {
				if sameEndpoint(u, ep) {
					claimed[ep] = true
				}
			}
		}
	}
	return claimed
}

// candidates lists the addresses to reach m by, best first: the one it last answered on (so that a
// dead address does not cost every scrape a share of its deadline), the configured endpoints it
// advertises (the user's spelling, and so the name its certificate is checked against), the
// configured endpoints known to be it, its other advertised URLs, and last the configured endpoints
// no member advertises and none has answered on yet (a port-forward to each member). A member
// that has never started has no address.
func (t *Taker) candidates(m *Member, claimed map[string]bool) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var own, ownConfigured, known, unknown []string
	for _, u := range m.ClientURLs {
		spelled := ""
		for _, ep := range t.conn.Endpoints {
			if sameEndpoint(u, ep) {
				spelled = ep
				break
			}
		}
		if spelled != "" {
			ownConfigured = append(ownConfigured, spelled)
		} else {
			own = append(own, u)
		}
	}
	for _, ep := range t.conn.Endpoints {
		id, ok := t.memberOf[ep]
		switch {
		case ok && id == m.ID:
			known = append(known, ep)
		case !ok && !claimed[ep]:
			unknown = append(unknown, ep)
		}
	}
	if len(m.ClientURLs) == 0 && len(known) == 0 {
		return nil
	}
	ordered := append(append(append(ownConfigured, known...), own...), unknown...)
	var out []string
	seen := map[string]bool{}
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	if last, ok := t.reachedBy[m.ID]; ok {
		for _, a := range ordered {
			if a == last {
				add(a)
			}
		}
	}
	for _, a := range ordered {
		add(a)
	}
	return out
}

// knownAddress returns the address m answered on last time when it is the first to try, "" when
// the member has to be found again.
func (t *Taker) knownAddress(m *Member) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if last, ok := t.reachedBy[m.ID]; ok && len(m.candidates) > 0 && m.candidates[0] == last {
		return last
	}
	return ""
}

// resolve asks Status on each of m's addresses in turn, each attempt getting a share of the
// remaining time, until one answers as m. It returns the address that did (the first one tried
// when none did) with its answer.
func (t *Taker) resolve(ctx context.Context, m *Member) (string, *pb.StatusResponse, error) {
	var errs attemptErrors
	var last error
	for i, addr := range m.candidates {
		if i > 0 && ctx.Err() != nil {
			break
		}
		actx, cancel := attemptContext(ctx, len(m.candidates)-i)
		resp, err := t.statusAt(actx, addr)
		cancel()
		if err == nil {
			id := resp.GetHeader().GetMemberId()
			t.learn(addr, id)
			if id == m.ID {
				t.mu.Lock()
				t.reachedBy[m.ID] = addr
				t.mu.Unlock()
				return addr, resp, nil
			}
			err = &WrongMemberError{Endpoint: addr, MemberID: id}
		}
		t.mu.Lock()
		if t.reachedBy[m.ID] == addr {
			delete(t.reachedBy, m.ID)
		}
		t.mu.Unlock()
		last = err
		if !strings.Contains(err.Error(), addr) {
			err = fmt.Errorf("%s: %w", addr, err)
		}
		errs = append(errs, err)
	}
	if len(errs) == 1 {
		// One address: its error alone, as the member's endpoint already says where.
		return m.candidates[0], nil, last
	}
	return m.candidates[0], nil, errs
}

// attemptErrors are the failures on each of a member's addresses, on one line.
type attemptErrors []error

func (e attemptErrors) Error() string {
	parts := make([]string, len(e))
	for i, err := range e {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

func (e attemptErrors) Unwrap() []error { return e }
