package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
)

// DefaultProbeKey is read by the probes. Reading a key that does not exist still exercises the
// whole read path (for a linearizable read, a ReadIndex round with the leader) and touches no
// user data; etcdctl's endpoint health reads the same key.
const DefaultProbeKey = "health"

// Taker takes snapshots of one cluster. It keeps one client per address (configured endpoint or
// advertised client URL) between snapshots, learns from the answers which member each address
// reaches, and closes a client when no member or configured endpoint uses its address any more.
// It is safe for concurrent use.
type Taker struct {
	conn     etcdconn.Config
	creds    *etcdconn.Credentials // re-reads TLS and password files when they change (credentials.go)
	logger   *slog.Logger
	probeKey string

	mu      sync.Mutex
	clients map[string]*clientv3.Client // by address
	// creating holds, per endpoint, a channel closed when the creation under way ends.
	creating map[string]chan struct{}
	// memberOf is the member that last answered on an address (by the ID in its answer's header);
	// reachedBy is the address each member last answered on.
	memberOf  map[string]uint64
	reachedBy map[uint64]string
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
		conn:      conn,
		logger:    slog.New(slog.DiscardHandler),
		probeKey:  DefaultProbeKey,
		clients:   map[string]*clientv3.Client{},
		creating:  map[string]chan struct{}{},
		memberOf:  map[string]uint64{},
		reachedBy: map[uint64]string{},
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

// ErrPlaintextURL marks an address that is not used because it would carry the password, token
// and every answer unencrypted although TLS is configured. clientv3 drops TLS for http:// and
// unix:// endpoints whatever its TLS configuration, and members may advertise such URLs.
var ErrPlaintextURL = errors.New("TLS is configured and credentials would be sent in clear")

// plaintext reports whether clientv3 would connect to endpoint without TLS. An endpoint without a
// scheme uses TLS when TLS is configured.
func plaintext(endpoint string) bool {
	return strings.HasPrefix(endpoint, "http://") || strings.HasPrefix(endpoint, "unix:")
}

// client returns the kept client for one endpoint, creating it when needed. Creation only blocks
// when auth is enabled (clientv3 fetches a token), and then no longer than the deadline of ctx.
// Concurrent callers for one endpoint wait for a single creation, so that a member's Status and
// probes share one connection from the first snapshot on.
func (t *Taker) client(ctx context.Context, endpoint string) (*clientv3.Client, error) {
	if t.conn.UsesTLS() && plaintext(endpoint) {
		return nil, fmt.Errorf("refusing %s: %w", endpoint, ErrPlaintextURL)
	}
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return nil, errClosed
		}
		if c, ok := t.clients[endpoint]; ok {
			t.mu.Unlock()
			return c, nil
		}
		wait, busy := t.creating[endpoint]
		if !busy {
			done := make(chan struct{})
			t.creating[endpoint] = done
			t.mu.Unlock()
			c, err := t.create(ctx, endpoint)
			t.mu.Lock()
			delete(t.creating, endpoint)
			close(done)
			t.mu.Unlock()
			return c, err
		}
		t.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// create dials a client for endpoint and keeps it; the caller holds the endpoint's creation slot.
func (t *Taker) create(ctx context.Context, endpoint string) (*clientv3.Client, error) {
	dialTimeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		dialTimeout = max(time.Until(dl), time.Millisecond)
	}
	cfg := t.creds.ClientConfig(endpoint, dialTimeout)
	// Every call, the token request clientv3.New makes when auth is on included, first checks the
	// connection: a refused connection fails it at once instead of holding it to the deadline.
	cfg.DialOptions = append(cfg.DialOptions, grpc.WithChainUnaryInterceptor(failFast))
	c, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", endpoint, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		_ = c.Close()
		return nil, errClosed
	}
	t.clients[endpoint] = c
	return c, nil
}

// forget closes clients to addresses that are neither configured nor a current member's, and
// drops what was learned about departed members and addresses.
func (t *Taker) forget(keep map[string]bool, members []*Member) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for ep, c := range t.clients {
		if !keep[ep] {
			t.logger.Debug("closing client of departed member", "endpoint", ep)
			_ = c.Close()
			delete(t.clients, ep)
		}
	}
	for addr := range t.memberOf {
		if !keep[addr] {
			delete(t.memberOf, addr)
		}
	}
	current := map[uint64]bool{}
	for _, m := range members {
		current[m.ID] = true
	}
	for id := range t.reachedBy {
		if !current[id] {
			delete(t.reachedBy, id)
		}
	}
}

// Take asks every member, concurrently, for what needs says, and returns when all have answered
// or ctx is done. It never returns an error: what failed is recorded in the snapshot.
func (t *Taker) Take(ctx context.Context, needs Needs) *Snapshot {
	s := &Snapshot{Start: time.Now(), Needs: needs}
	s.Deadline, _ = ctx.Deadline()
	t.dropStaleClients()
	members, from, err := t.memberList(ctx)
	s.MemberListDuration = time.Since(s.Start)
	s.MemberListEndpoint, s.MemberListErr = from, err
	if err != nil {
		t.logger.Debug("member list failed on every endpoint", "err", err)
		return s
	}
	for _, pm := range members {
		s.Members = append(s.Members, &Member{
			ID: pm.ID, Name: pm.Name, ClientURLs: pm.ClientURLs, PeerURLs: pm.PeerURLs, IsLearner: pm.IsLearner,
			Alarms: map[string]bool{},
		})
	}
	keep := map[string]bool{}
	for _, ep := range t.conn.Endpoints {
		keep[ep] = true
	}
	claimed := t.claimedEndpoints(s.Members)
	for _, m := range s.Members {
		m.candidates = t.candidates(m, claimed)
		for _, a := range m.candidates {
			keep[a] = true
		}
		if len(m.candidates) > 0 {
			m.Endpoint = m.candidates[0]
		}
	}
	t.forget(keep, s.Members)

	var wg sync.WaitGroup
	var phaseMu sync.Mutex // guards the phase durations written by the goroutines
	phaseStart := time.Now()
	phaseDone := func(d *time.Duration) func() {
		return func() {
			phaseMu.Lock()
			*d = max(*d, time.Since(phaseStart))
			phaseMu.Unlock()
		}
	}
	for _, m := range s.Members {
		if len(m.candidates) == 0 {
			m.StatusErr = errors.New("member has not started: it has no client URL yet")
			continue
		}
		if needs.Status || needs.Probes {
			wg.Go(func() { t.ask(ctx, m, needs, phaseDone(&s.StatusDuration), phaseDone(&s.ProbeDuration)) })
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
		if !strings.Contains(err.Error(), ep) {
			err = fmt.Errorf("%s: %w", ep, err)
		}
		errs = append(errs, err)
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
	resp, err := c.MemberList(ctx, clientv3.WithSerializable())
	if err != nil {
		return nil, err
	}
	// The header says which member this endpoint is, which matters when it is not an address that
	// member advertises (a port-forward, a NAT).
	t.learn(endpoint, resp.Header.GetMemberId())
	out := make([]*memberListEntry, 0, len(resp.Members))
	for _, m := range resp.Members {
		out = append(out, &memberListEntry{ID: m.ID, Name: m.Name, ClientURLs: m.ClientURLs, PeerURLs: m.PeerURLs, IsLearner: m.IsLearner})
	}
	return out, nil
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

// reachable waits until the connection is ready, or fails at once when gRPC reports it failing.
// clientv3 calls wait for a ready connection, so without this a stopped member (connection
// refused) would hold every call to it until the deadline. A hung member keeps a ready connection
// and is still bounded by ctx alone.
func reachable(ctx context.Context, conn *grpc.ClientConn) error {
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

// failFast is a gRPC interceptor that makes each call check reachable first. Its error is not a
// gRPC status, so clientv3's retry interceptor (outside it) does not retry it.
func failFast(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if err := reachable(ctx, cc); err != nil {
		if !errors.Is(err, ErrUnreachable) {
			return err
		}
		// gRPC keeps why the connection failed (refused, a TLS handshake error) and gives it to a
		// call that does not wait for the connection: one such call says why, at once. Should the
		// connection have come back meanwhile, the call is simply made.
		cause := invoker(ctx, method, req, reply, cc, append(opts, grpc.WaitForReady(false))...)
		if cause == nil {
			return nil
		}
		return fmt.Errorf("%w: %s", ErrUnreachable, connectionError(cause))
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// maxConnectionError bounds the text kept of a failed connection: a TLS error lists every name
// of the certificate the server sent, which is the server's to choose.
const maxConnectionError = 300

// connectionError is gRPC's reason for a failed connection, without its wrapping, on one line
// of valid UTF-8 and at most maxConnectionError bytes.
func connectionError(err error) string {
	msg := status.Convert(err).Message()
	if inner, ok := strings.CutPrefix(msg, "connection error: desc = "); ok {
		if uq, err := strconv.Unquote(inner); err == nil {
			inner = uq
		}
		msg = inner
	}
	msg = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(msg, "\uFFFD"))
	if len(msg) > maxConnectionError {
		cut := maxConnectionError
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "…"
	}
	return msg
}

// ask finds m on one of its addresses by asking Status there, then makes the probes on the
// connection known to reach it. When m's address is known from the last snapshot the probes start
// at once beside Status and are kept only if Status confirms the member there; otherwise they run
// once the member is found, so that no probe answered by another member counts for m.
func (t *Taker) ask(ctx context.Context, m *Member, needs Needs, statusDone, probesDone func()) {
	known := t.knownAddress(m)
	earlyCtx, cancelEarly := context.WithCancel(ctx)
	defer cancelEarly()
	var early []Probe
	var earlyWG sync.WaitGroup
	if needs.Probes && known != "" {
		early = t.probes(earlyCtx, m, known, &earlyWG)
	}
	start := time.Now()
	addr, resp, err := t.resolve(ctx, m)
	m.StatusDuration = time.Since(start)
	m.Endpoint = addr
	if err != nil {
		m.StatusErr = err
		t.logger.Debug("status failed", "member", m.Name, "endpoint", addr, "err", err)
	} else {
		m.Status = resp
	}
	statusDone()
	if !needs.Probes {
		return
	}
	if err != nil || addr != known {
		cancelEarly()
	}
	earlyWG.Wait()
	switch {
	case err != nil:
		// The member was not reached: a probe's answer would not be known to be its.
		m.Probes = make([]Probe, 0, len(m.ProbeKinds()))
		for _, kind := range m.ProbeKinds() {
			m.Probes = append(m.Probes, Probe{Kind: kind, Err: err})
		}
	case addr == known:
		m.Probes = early
	default:
		var wg sync.WaitGroup
		m.Probes = t.probes(ctx, m, addr, &wg)
		wg.Wait()
	}
	probesDone()
}

// statusAt asks Status of whatever member answers on addr.
func (t *Taker) statusAt(ctx context.Context, addr string) (*pb.StatusResponse, error) {
	c, err := t.client(ctx, addr)
	if err != nil {
		return nil, err
	}
	// clientv3's Maintenance.Status dials a new connection (TCP, and TLS when used) on every call;
	// the kept connection answers the same RPC.
	resp, err := pb.NewMaintenanceClient(c.ActiveConnection()).Status(ctx, &pb.StatusRequest{})
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return resp, err
}

// probes starts every probe that applies to m against addr; the results are in place once wg is done.
func (t *Taker) probes(ctx context.Context, m *Member, addr string, wg *sync.WaitGroup) []Probe {
	kinds := m.ProbeKinds()
	out := make([]Probe, len(kinds))
	for i, kind := range kinds {
		wg.Go(func() { out[i] = t.probe(ctx, m, addr, kind) })
	}
	return out
}

func (t *Taker) probe(ctx context.Context, m *Member, addr string, kind ProbeKind) Probe {
	p := Probe{Kind: kind}
	c, err := t.client(ctx, addr)
	if err != nil {
		p.Err = err
		return p
	}
	var opts []clientv3.OpOption
	if kind == ProbeReadSerializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	start := time.Now()
	resp, err := c.Get(ctx, t.probeKey, append(opts, clientv3.WithCountOnly())...)
	p.Duration = time.Since(start)
	switch {
	case err == nil:
		if id := resp.Header.GetMemberId(); id != m.ID {
			t.learn(addr, id)
			p.Err = &WrongMemberError{Endpoint: addr, MemberID: id}
		}
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		// A user without read permission on the probe key still gets its answer from the member
		// after the read went through the same path, as etcdctl endpoint health also treats it.
	default:
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
