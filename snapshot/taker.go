package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/connectivity"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
)

// DefaultProbeKey is read by the probes. Reading a key that does not exist still exercises the
// whole read path (for a linearizable read, a ReadIndex round with the leader) and touches no
// user data; etcdctl's endpoint health reads the same key.
const DefaultProbeKey = "health"

// Taker takes snapshots of one cluster. It keeps one client per member between snapshots and
// closes a member's client when the member leaves the cluster. It is safe for concurrent use.
type Taker struct {
	conn     etcdconn.Config
	creds    *etcdconn.Credentials // re-reads TLS and password files when they change (credentials.go)
	logger   *slog.Logger
	probeKey string

	mu      sync.Mutex
	clients map[string]*clientv3.Client // by endpoint URL
	// preferred is the endpoint that last answered MemberList; asking it first keeps a hung
	// endpoint early in the configured list from costing every scrape part of its deadline.
	preferred string
	closed    bool
}

// Option configures a Taker.
type Option func(*Taker)

// WithLogger sets the logger for connection problems.
func WithLogger(l *slog.Logger) Option { return func(t *Taker) { t.logger = l } }

// WithProbeKey sets the key the probes read.
func WithProbeKey(k string) Option { return func(t *Taker) { t.probeKey = k } }

// NewTaker validates the connection settings (loading TLS and password files) without contacting etcd,
// so that an unreachable cluster at start-up is a metric, not an error.
func NewTaker(conn etcdconn.Config, opts ...Option) (*Taker, error) {
	if err := conn.Validate(); err != nil {
		return nil, err
	}
	t := &Taker{
		conn:     conn,
		logger:   slog.New(slog.DiscardHandler),
		probeKey: DefaultProbeKey,
		clients:  map[string]*clientv3.Client{},
	}
	for _, o := range opts {
		o(t)
	}
	var err error
	if t.creds, err = conn.Credentials(t.logger); err != nil {
		return nil, err
	}
	return t, nil
}

// Close closes every client. Snapshots taken afterwards report every member down.
func (t *Taker) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for ep, c := range t.clients {
		_ = c.Close()
		delete(t.clients, ep)
	}
}

var errClosed = errors.New("snapshot taker closed")

// client returns the kept client for one endpoint, creating it when needed. Creation only blocks
// when auth is enabled (clientv3 fetches a token), and then no longer than the deadline of ctx.
func (t *Taker) client(ctx context.Context, endpoint string) (*clientv3.Client, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, errClosed
	}
	if c, ok := t.clients[endpoint]; ok {
		t.mu.Unlock()
		return c, nil
	}
	t.mu.Unlock()

	dialTimeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		dialTimeout = max(time.Until(dl), time.Millisecond)
	}
	c, err := clientv3.New(t.creds.ClientConfig(endpoint, dialTimeout))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", endpoint, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		_ = c.Close()
		return nil, errClosed
	}
	if existing, ok := t.clients[endpoint]; ok { // lost a race with a concurrent snapshot
		_ = c.Close()
		return existing, nil
	}
	t.clients[endpoint] = c
	return c, nil
}

// forget closes clients to endpoints that are neither configured nor a current member's.
func (t *Taker) forget(keep map[string]bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for ep, c := range t.clients {
		if !keep[ep] {
			t.logger.Debug("closing client of departed member", "endpoint", ep)
			_ = c.Close()
			delete(t.clients, ep)
		}
	}
}

// Take asks every member, concurrently, for what needs says, and returns when all have answered
// or ctx is done. It never returns an error: what failed is recorded in the snapshot.
func (t *Taker) Take(ctx context.Context, needs Needs) *Snapshot {
	s := &Snapshot{Start: time.Now(), Needs: needs}
	t.dropStaleClients()
	members, from, err := t.memberList(ctx)
	s.MemberListDuration = time.Since(s.Start)
	s.MemberListEndpoint, s.MemberListErr = from, err
	if err != nil {
		t.logger.Debug("member list failed on every endpoint", "err", err)
		return s
	}
	keep := map[string]bool{}
	for _, ep := range t.conn.Endpoints {
		keep[ep] = true
	}
	for _, pm := range members {
		m := &Member{
			ID: pm.ID, Name: pm.Name, ClientURLs: pm.ClientURLs, PeerURLs: pm.PeerURLs, IsLearner: pm.IsLearner,
			Alarms: map[string]bool{},
		}
		m.Endpoint = t.endpointFor(pm.ClientURLs)
		if m.Endpoint != "" {
			keep[m.Endpoint] = true
		}
		s.Members = append(s.Members, m)
	}
	t.forget(keep)

	var wg sync.WaitGroup
	var phaseMu sync.Mutex // guards the phase durations written by the goroutines
	phaseStart := time.Now()
	for _, m := range s.Members {
		if m.Endpoint == "" {
			m.StatusErr = errors.New("member has not started: it has no client URL yet")
			continue
		}
		if needs.Status {
			wg.Go(func() {
				t.status(ctx, m)
				phaseMu.Lock()
				s.StatusDuration = max(s.StatusDuration, time.Since(phaseStart))
				phaseMu.Unlock()
			})
		}
		if needs.Probes {
			kinds := m.ProbeKinds()
			m.Probes = make([]Probe, len(kinds))
			for i, kind := range kinds {
				wg.Go(func() {
					m.Probes[i] = t.probe(ctx, m, kind)
					phaseMu.Lock()
					s.ProbeDuration = max(s.ProbeDuration, time.Since(phaseStart))
					phaseMu.Unlock()
				})
			}
		}
	}
	wg.Wait()

	if needs.Status {
		s.UnknownAlarms = attributeAlarms(s.Members)
	}
	return s
}

// memberList asks one endpoint at a time, each attempt getting a share of the remaining time so
// that a hung endpoint cannot use it all. The list is read serializable: it is answered from the
// member's local state, so membership stays known when quorum is lost, and it adds nothing to the
// raft log.
func (t *Taker) memberList(ctx context.Context) ([]*memberListEntry, string, error) {
	t.mu.Lock()
	preferred := t.preferred
	t.mu.Unlock()
	order := make([]string, 0, len(t.conn.Endpoints))
	if preferred != "" {
		order = append(order, preferred)
	}
	for _, ep := range t.conn.Endpoints {
		if ep != preferred {
			order = append(order, ep)
		}
	}
	var errs []error
	for i, ep := range order {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		actx, cancel := attemptContext(ctx, len(order)-i)
		members, err := t.memberListFrom(actx, ep)
		cancel()
		if err == nil {
			t.mu.Lock()
			t.preferred = ep
			t.mu.Unlock()
			return members, ep, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", ep, err))
	}
	return nil, "", fmt.Errorf("member list: %w", errors.Join(errs...))
}

// attemptContext gives the last remaining attempt all the time left and earlier ones an equal
// share of it, leaving room for the per-member calls that follow.
func attemptContext(ctx context.Context, remaining int) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok || remaining <= 1 {
		return context.WithCancel(ctx)
	}
	share := time.Until(dl) / time.Duration(remaining+1)
	return context.WithTimeout(ctx, share)
}

type memberListEntry struct {
	ID         uint64
	Name       string
	ClientURLs []string
	PeerURLs   []string
	IsLearner  bool
}

func (t *Taker) memberListFrom(ctx context.Context, endpoint string) ([]*memberListEntry, error) {
	c, err := t.client(ctx, endpoint)
	if err != nil {
		return nil, err
	}
	if err := reachable(ctx, c); err != nil {
		return nil, err
	}
	resp, err := c.MemberList(ctx, clientv3.WithSerializable())
	if err != nil {
		return nil, err
	}
	out := make([]*memberListEntry, 0, len(resp.Members))
	for _, m := range resp.Members {
		out = append(out, &memberListEntry{ID: m.ID, Name: m.Name, ClientURLs: m.ClientURLs, PeerURLs: m.PeerURLs, IsLearner: m.IsLearner})
	}
	return out, nil
}

// endpointFor picks the client URL to reach a member by: one the user configured when the member
// advertises it, so that the user's choice of address (and its certificate name) is honoured.
func (t *Taker) endpointFor(clientURLs []string) string {
	for _, u := range clientURLs {
		for _, ep := range t.conn.Endpoints {
			if sameEndpoint(u, ep) {
				return ep
			}
		}
	}
	if len(clientURLs) == 0 {
		return ""
	}
	return clientURLs[0]
}

// sameEndpoint compares a member's advertised URL with a configured endpoint, which may lack a scheme.
func sameEndpoint(advertised, configured string) bool {
	if advertised == configured {
		return true
	}
	u, err := url.Parse(advertised)
	if err != nil {
		return false
	}
	return !strings.Contains(configured, "://") && u.Host == configured
}

// ErrUnreachable marks a member whose connection failed (refused, reset, no route) rather than
// one that did not answer in time.
var ErrUnreachable = errors.New("member unreachable")

// reachable waits until the member's connection is ready, or fails at once when gRPC reports it
// failing. clientv3 calls wait for a ready connection, so without this a stopped member (connection
// refused) would hold every call to it until the deadline. A hung member keeps a ready connection and
// is still bounded by ctx alone.
func reachable(ctx context.Context, c *clientv3.Client) error {
	conn := c.ActiveConnection()
	for {
		switch st := conn.GetState(); st {
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure, connectivity.Shutdown:
			return fmt.Errorf("%w: connection %s", ErrUnreachable, strings.ToLower(st.String()))
		case connectivity.Idle:
			conn.Connect()
			fallthrough
		default:
			if !conn.WaitForStateChange(ctx, st) {
				return ctx.Err()
			}
		}
	}
}

func (t *Taker) status(ctx context.Context, m *Member) {
	start := time.Now()
	c, err := t.client(ctx, m.Endpoint)
	var resp *clientv3.StatusResponse
	if err == nil {
		err = reachable(ctx, c)
	}
	if err == nil {
		resp, err = c.Status(ctx, m.Endpoint)
	}
	m.StatusDuration = time.Since(start)
	if err != nil {
		m.StatusErr = err
		t.logger.Debug("status failed", "member", m.Name, "endpoint", m.Endpoint, "err", err)
		return
	}
	m.Status = (*pb.StatusResponse)(resp)
}

func (t *Taker) probe(ctx context.Context, m *Member, kind ProbeKind) Probe {
	p := Probe{Kind: kind}
	c, err := t.client(ctx, m.Endpoint)
	if err != nil {
		p.Err = err
		return p
	}
	if err := reachable(ctx, c); err != nil {
		p.Err = err
		return p
	}
	var opts []clientv3.OpOption
	if kind == ProbeReadSerializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	start := time.Now()
	_, err = c.Get(ctx, t.probeKey, append(opts, clientv3.WithCountOnly())...)
	p.Duration = time.Since(start)
	// A user without read permission on the probe key still gets its answer from the member after
	// the read went through the same path, as etcdctl endpoint health also treats it.
	if err != nil && !errors.Is(err, rpctypes.ErrPermissionDenied) {
		p.Err = err
	}
	return p
}

// attributeAlarms gives each member the alarms any answering member reports for it, and returns
// those raised for IDs that are not members (a removed member's alarm still blocks writes).
func attributeAlarms(members []*Member) []MemberAlarm {
	byID := map[uint64]*Member{}
	for _, m := range members {
		byID[m.ID] = m
	}
	var unknown []MemberAlarm
	seenUnknown := map[MemberAlarm]bool{}
	for _, m := range members {
		if m.Status == nil {
			continue
		}
		for _, a := range parseAlarms(m.Status.Errors) {
			if target, ok := byID[a.MemberID]; ok {
				target.Alarms[a.Alarm] = true
			} else if !seenUnknown[a] {
				seenUnknown[a] = true
				unknown = append(unknown, a)
			}
		}
	}
	return unknown
}
