package defrag

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// Config is what a run does, from the command's flags.
type Config struct {
	Rule Rule
	// QuotaBytes is the backend quota of members that do not report theirs (etcd < 3.6); 0: unknown.
	QuotaBytes int64
	DryRun     bool
	// MoveLeader hands leadership to a caught-up follower before the leader is defragmented, so
	// that the cluster never waits on a leader whose backend is locked.
	MoveLeader bool
	// DisarmNoSpace disarms the NOSPACE alarm at the end when every member's file is below
	// Rule.QuotaRatio of its quota.
	DisarmNoSpace bool
	// MemberTimeout bounds each wait for the cluster or a member to be ready, before and after a
	// defragmentation, and a leadership transfer.
	MemberTimeout time.Duration
	// DefragTimeout bounds the Defragment call itself: a large file takes a while to rewrite.
	DefragTimeout time.Duration
	// MaxApplyLag is how far a member's applied index may trail the leader's and still count as
	// caught up.
	MaxApplyLag uint64
	// PollInterval is the pause between two looks at the cluster while waiting.
	PollInterval time.Duration
}

// DefaultConfig holds the flag defaults.
func DefaultConfig() Config {
	return Config{
		Rule:          DefaultRule,
		MemberTimeout: 2 * time.Minute,
		DefragTimeout: 10 * time.Minute,
		MaxApplyLag:   1000,
		PollInterval:  200 * time.Millisecond,
	}
}

// Validate reports the first bad flag value, in one line.
func (c Config) Validate() error {
	if err := c.Rule.Validate(); err != nil {
		return err
	}
	switch {
	case c.QuotaBytes < 0:
		return fmt.Errorf("--quota-bytes must not be negative, got %d", c.QuotaBytes)
	case c.MemberTimeout <= 0:
		return fmt.Errorf("--member-timeout must be positive, got %s", c.MemberTimeout)
	case c.DefragTimeout <= 0:
		return fmt.Errorf("--defrag-timeout must be positive, got %s", c.DefragTimeout)
	}
	return nil
}

// Hooks are called around each Defragment call; tests use them to see which members were being
// defragmented when.
type Hooks struct {
	// Chosen is called when a member is picked as the next one, before its checks.
	Chosen      func(memberID uint64)
	DefragStart func(memberID uint64)
	DefragEnd   func(memberID uint64, err error)
}

// Runner defragments one cluster.
type Runner struct {
	Config
	Conn etcdconn.Config
	// Taker takes every look at the cluster; the caller closes it.
	Taker *snapshot.Taker
	// Progress receives a line as each member starts and ends; nil discards them.
	Progress io.Writer
	Logger   *slog.Logger
	Hooks    Hooks

	creds   *etcdconn.Credentials
	clients map[string]*clientv3.Client
}

// Report is the outcome of a run (or the plan of a dry run).
type Report struct {
	DryRun          bool            `json:"dry_run"`
	Rule            Rule            `json:"rule"`
	Start           time.Time       `json:"start"`
	DurationSeconds float64         `json:"duration_seconds"`
	Members         []*MemberResult `json:"members"`
	// Blocked, in a dry run, is why a real run would not start now (it would wait for at most
	// --member-timeout, then stop): "" when the cluster is ready.
	Blocked string `json:"blocked,omitempty"`
	// NoSpace says what --disarm-nospace did: "disarmed", "kept: <why>", or "" when no NOSPACE
	// alarm was raised or the flag was not given.
	NoSpace string `json:"nospace,omitempty"`
	Success bool   `json:"success"`
	Error   string `json:"error,omitempty"`
}

// Defragmented counts the members defragmented by this run.
func (r *Report) Defragmented() int {
	n := 0
	for _, m := range r.Members {
		if m.State == StateDone {
			n++
		}
	}
	return n
}

// Reclaimed is the bytes given back by this run, over all members.
func (r *Report) Reclaimed() int64 {
	var n int64
	for _, m := range r.Members {
		n += m.Reclaimed()
	}
	return n
}

// errFatal marks a condition waiting cannot fix (a CORRUPT alarm).
var errFatal = errors.New("refusing to go on")

// errBecameLeader says the member picked as a follower won an election before its turn came.
var errBecameLeader = errors.New("became the leader before its turn")

// maxRepicks bounds how often elections may reorder a run before it gives up.
const maxRepicks = 10

// Run plans, and unless DryRun defragments the members the rule selects. The report is returned
// also with an error, which says why the run stopped.
func (r *Runner) Run(ctx context.Context) (*Report, error) {
	rep := &Report{DryRun: r.DryRun, Rule: r.Rule, Start: time.Now()}
	err := r.run(ctx, rep)
	rep.DurationSeconds = time.Since(rep.Start).Seconds()
	rep.Success = err == nil
	if err != nil {
		rep.Error = err.Error()
	}
	return rep, err
}

func (r *Runner) run(ctx context.Context, rep *Report) error {
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	if r.Progress == nil {
		r.Progress = io.Discard
	}
	if r.PollInterval <= 0 {
		r.PollInterval = DefaultConfig().PollInterval
	}
	if err := r.Validate(); err != nil {
		return err
	}
	tctx, cancel := context.WithTimeout(ctx, r.MemberTimeout)
	s := r.Taker.Take(tctx, snapshot.Needs{Status: true})
	cancel()
	if s.MemberListErr != nil {
		return fmt.Errorf("no endpoint answered: %w", s.MemberListErr)
	}
	rep.Members = plan(s, r.Rule, r.QuotaBytes)
	if r.DryRun {
		if err := r.ready(s, nil); err != nil {
			rep.Blocked = err.Error()
		}
		return nil
	}

	var err error
	// The credentials every client of the exporter uses: the server verified against
	// --etcd.tls.server-name when it is given (clientv3's own TLS verifies the dialed host).
	if r.creds, err = r.Conn.Credentials(nil); err != nil {
		return err
	}
	r.clients = map[string]*clientv3.Client{}
	defer func() {
		for _, c := range r.clients {
			_ = c.Close()
		}
	}()

	todo := ordered(rep.Members)
	repicks := 0
	for step := 1; len(todo) > 0; step++ {
		// Who leads is looked up again before each member: an election during the run must not
		// put the new leader before a follower.
		s, err := r.waitReady(ctx, nil, false)
		if err != nil {
			return fmt.Errorf("before the next member: %w", err)
		}
		leader := s.Cluster().Leader
		i := slices.IndexFunc(todo, func(m *MemberResult) bool { return m.id != leader })
		if i < 0 {
			i = 0 // only the leader is left
		}
		m := todo[i]
		if r.Hooks.Chosen != nil {
			r.Hooks.Chosen(m.id)
		}
		err = r.member(ctx, s, m, step, step+len(todo)-1, len(todo) == 1)
		if errors.Is(err, errBecameLeader) && repicks < maxRepicks {
			// Not its turn any more: pick again among the same members.
			repicks++
			r.Logger.Info("member became the leader before its turn; picking another", "member", m.Name)
			step--
			continue
		}
		todo = slices.Delete(todo, i, i+1)
		if err != nil {
			m.State, m.Error = StateFailed, err.Error()
			return fmt.Errorf("member %s (%s): %w", m.Name, m.ID, err)
		}
	}
	if r.DisarmNoSpace {
		return r.disarmNoSpace(ctx, rep)
	}
	return nil
}

// member defragments one member between its health checks. Unless it is the last, a member that
// leads once its checks passed is not defragmented (errBecameLeader): the leader goes last.
func (r *Runner) member(ctx context.Context, s *snapshot.Snapshot, m *MemberResult, step, total int, last bool) error {
	if m.id == s.Cluster().Leader && r.MoveLeader && s.Cluster().VotingMembers > 1 {
		if err := r.moveLeader(ctx, s, m); err != nil {
			return err
		}
	}
	s, err := r.waitReady(ctx, m, false)
	if err != nil {
		return fmt.Errorf("not ready to be defragmented: %w", err)
	}
	if !last && s.Cluster().Leader == m.id {
		return errBecameLeader
	}
	// The sizes just before, not those of the plan: the writer kept writing meanwhile.
	if sm := findMember(s, m.id); sm != nil && sm.Status != nil {
		m.Before, m.QuotaSource = sizes(sm, r.QuotaBytes)
	}
	fmt.Fprintf(r.Progress, "[%d/%d] %s (%s) defragmenting: %s, %s free (%.0f%%)\n",
		step, total, m.Name, m.ID, HumanBytes(m.Before.DBSize), HumanBytes(m.Before.Free()), 100*m.Before.FreeRatio())
	c, err := r.client(ctx, m.Endpoint)
	if err != nil {
		return err
	}
	start := time.Now()
	if r.Hooks.DefragStart != nil {
		r.Hooks.DefragStart(m.id)
	}
	dctx, cancel := context.WithTimeout(ctx, r.DefragTimeout)
	_, err = c.Defragment(dctx, m.Endpoint)
	cancel()
	if r.Hooks.DefragEnd != nil {
		r.Hooks.DefragEnd(m.id, err)
	}
	m.DurationSeconds = time.Since(start).Seconds()
	if err != nil {
		fmt.Fprintf(r.Progress, "[%d/%d] %s (%s) FAILED after %.1fs: %v\n", step, total, m.Name, m.ID, m.DurationSeconds, err)
		return fmt.Errorf("defragment: %w", err)
	}
	s, err = r.waitReady(ctx, m, true)
	if err != nil {
		fmt.Fprintf(r.Progress, "[%d/%d] %s (%s) FAILED: defragmented in %.1fs but not healthy again: %v\n", step, total, m.Name, m.ID, m.DurationSeconds, err)
		return fmt.Errorf("after defragmenting: %w", err)
	}
	if sm := findMember(s, m.id); sm != nil && sm.Status != nil {
		after, _ := sizes(sm, r.QuotaBytes)
		m.After = &after
	}
	m.State = StateDone
	line := fmt.Sprintf("[%d/%d] %s (%s) done in %.1fs", step, total, m.Name, m.ID, m.DurationSeconds)
	if m.After != nil {
		line += fmt.Sprintf(": %s -> %s, reclaimed %s", HumanBytes(m.Before.DBSize), HumanBytes(m.After.DBSize), HumanBytes(m.Reclaimed()))
	}
	fmt.Fprintln(r.Progress, line)
	return nil
}

// waitReady takes looks at the cluster until it is ready for (or after) a defragmentation, for
// at most MemberTimeout. The cluster is ready when it has quorum, every voting member answers
// (defragmenting one member while another is down could cost the quorum: a member rewriting its
// backend serves nothing) and no CORRUPT alarm is raised. With m, m must also be up with its
// applied index within MaxApplyLag of the leader's, and with linearizable answer a linearizable
// read.
func (r *Runner) waitReady(ctx context.Context, m *MemberResult, linearizable bool) (*snapshot.Snapshot, error) {
	wctx, cancel := context.WithTimeout(ctx, r.MemberTimeout)
	defer cancel()
	var last error
	for attempt := 0; ; attempt++ {
		s := r.Taker.Take(wctx, snapshot.Needs{Status: true})
		err := r.ready(s, m)
		if err == nil && linearizable {
			err = r.linearizableRead(wctx, m)
		}
		if err == nil {
			return s, nil
		}
		if errors.Is(err, errFatal) {
			return nil, err
		}
		last = err
		if attempt == 0 || attempt%25 == 0 {
			r.Logger.Info("waiting for the cluster", "member", memberName(m), "reason", err)
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("not ready within --member-timeout=%s: %w", r.MemberTimeout, last)
		case <-time.After(r.PollInterval):
		}
	}
}

func memberName(m *MemberResult) string {
	if m == nil {
		return ""
	}
	return m.Name
}

// ready checks one look at the cluster; see waitReady.
func (r *Runner) ready(s *snapshot.Snapshot, m *MemberResult) error {
	if s.MemberListErr != nil {
		return fmt.Errorf("no endpoint answered: %w", s.MemberListErr)
	}
	for _, sm := range s.Members {
		if sm.Alarms[snapshot.AlarmCorrupt] {
			return fmt.Errorf("%w: CORRUPT alarm raised for member %s (%s)", errFatal, sm.Name, snapshot.IDString(sm.ID))
		}
	}
	for _, a := range s.UnknownAlarms {
		if a.Alarm == snapshot.AlarmCorrupt {
			return fmt.Errorf("%w: %s", errFatal, a)
		}
	}
	c := s.Cluster()
	if !c.HasQuorum {
		return fmt.Errorf("no quorum: %d of %d voting members up and agreeing on a leader, %d needed", c.LeaderVotes, c.VotingMembers, c.Quorum)
	}
	for _, sm := range s.Members {
		if !sm.IsLearner && !sm.Up() {
			return fmt.Errorf("voting member %s (%s) is down: %v", sm.Name, snapshot.IDString(sm.ID), sm.StatusErr)
		}
	}
	if m == nil {
		return nil
	}
	sm, leader := findMember(s, m.id), findMember(s, c.Leader)
	if sm == nil {
		return fmt.Errorf("%w: member %s (%s) is no longer in the member list", errFatal, m.Name, m.ID)
	}
	if !sm.Up() {
		return fmt.Errorf("member is down: %v", sm.StatusErr)
	}
	if leader == nil || leader.Status == nil {
		return errors.New("the leader did not answer Status")
	}
	la, ma := leader.Status.RaftAppliedIndex, sm.Status.RaftAppliedIndex
	if la > ma && la-ma > r.MaxApplyLag {
		return fmt.Errorf("applied index %d trails the leader's %d by more than %d", ma, la, r.MaxApplyLag)
	}
	return nil
}

// linearizableRead reads the probe key through the member alone: it answers only once the member
// can serve again and reaches the leader.
func (r *Runner) linearizableRead(ctx context.Context, m *MemberResult) error {
	c, err := r.client(ctx, m.Endpoint)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = c.Get(rctx, snapshot.DefaultProbeKey, clientv3.WithCountOnly())
	// A user without read permission on the key still got the member's answer.
	if err != nil && !errors.Is(err, rpctypes.ErrPermissionDenied) {
		return fmt.Errorf("linearizable read: %w", err)
	}
	return nil
}

// moveLeader hands leadership from m to the voting follower that applied the most, and waits
// until the cluster names another leader.
func (r *Runner) moveLeader(ctx context.Context, s *snapshot.Snapshot, m *MemberResult) error {
	var to *snapshot.Member
	for _, sm := range s.Members {
		if sm.ID == m.id || sm.IsLearner || !sm.Up() {
			continue
		}
		if to == nil || sm.Status.RaftAppliedIndex > to.Status.RaftAppliedIndex {
			to = sm
		}
	}
	if to == nil {
		return errors.New("--move-leader: no voting follower is up to take over")
	}
	c, err := r.client(ctx, m.Endpoint)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.Progress, "moving leadership from %s (%s) to %s (%s)\n", m.Name, m.ID, to.Name, snapshot.IDString(to.ID))
	mctx, cancel := context.WithTimeout(ctx, r.MemberTimeout)
	defer cancel()
	if _, err := c.MoveLeader(mctx, to.ID); err != nil {
		return fmt.Errorf("moving leadership to %s (%s): %w", to.Name, snapshot.IDString(to.ID), err)
	}
	for {
		ns := r.Taker.Take(mctx, snapshot.Needs{Status: true})
		if l := ns.Cluster().Leader; l != 0 && l != m.id {
			return nil
		}
		select {
		case <-mctx.Done():
			return fmt.Errorf("leadership still with %s (%s) after --member-timeout=%s", m.Name, m.ID, r.MemberTimeout)
		case <-time.After(r.PollInterval):
		}
	}
}

// disarmNoSpace disarms NOSPACE alarms once every member's file is below the quota threshold;
// it never touches any other alarm.
func (r *Runner) disarmNoSpace(ctx context.Context, rep *Report) error {
	tctx, cancel := context.WithTimeout(ctx, r.MemberTimeout)
	defer cancel()
	s := r.Taker.Take(tctx, snapshot.Needs{Status: true})
	var alarms []snapshot.MemberAlarm
	for _, sm := range s.Members {
		if sm.Alarms[snapshot.AlarmNoSpace] {
			alarms = append(alarms, snapshot.MemberAlarm{MemberID: sm.ID, Alarm: snapshot.AlarmNoSpace})
		}
	}
	for _, a := range s.UnknownAlarms {
		if a.Alarm == snapshot.AlarmNoSpace {
			alarms = append(alarms, a)
		}
	}
	if len(alarms) == 0 {
		return nil
	}
	var via *snapshot.Member
	for _, sm := range s.Members {
		if sm.Status == nil {
			rep.NoSpace = fmt.Sprintf("kept: member %s (%s) did not answer Status", sm.Name, snapshot.IDString(sm.ID))
			return nil
		}
		sz, _ := sizes(sm, r.QuotaBytes)
		if sz.Quota <= 0 {
			rep.NoSpace = fmt.Sprintf("kept: the quota of member %s (%s) is unknown (give --quota-bytes)", sm.Name, snapshot.IDString(sm.ID))
			return nil
		}
		if u := sz.QuotaUsage(); u >= r.Rule.QuotaRatio {
			rep.NoSpace = fmt.Sprintf("kept: member %s (%s) still uses %.0f%% of its quota, at least --rule.quota-ratio=%.0f%%", sm.Name, snapshot.IDString(sm.ID), 100*u, 100*r.Rule.QuotaRatio)
			return nil
		}
		if !sm.IsLearner && (via == nil || sm.ID == s.Cluster().Leader) {
			via = sm
		}
	}
	if via == nil {
		return errors.New("--disarm-nospace: no voting member to send the disarm to")
	}
	c, err := r.client(tctx, via.Endpoint)
	if err != nil {
		return err
	}
	for _, a := range alarms {
		if _, err := c.AlarmDisarm(tctx, &clientv3.AlarmMember{MemberID: a.MemberID, Alarm: pb.AlarmType_NOSPACE}); err != nil {
			return fmt.Errorf("--disarm-nospace: disarming %s: %w", a, err)
		}
		fmt.Fprintf(r.Progress, "disarmed NOSPACE of member %s\n", snapshot.IDString(a.MemberID))
	}
	rep.NoSpace = "disarmed"
	return nil
}

// client returns a client bound to one member's endpoint alone, so that a call meant for that
// member is never balanced to another.
func (r *Runner) client(ctx context.Context, endpoint string) (*clientv3.Client, error) {
	if c, ok := r.clients[endpoint]; ok {
		return c, nil
	}
	dial := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		dial = max(min(time.Until(dl), dial), time.Millisecond)
	}
	c, err := clientv3.New(r.creds.ClientConfig(endpoint, dial))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", endpoint, err)
	}
	r.clients[endpoint] = c
	return c, nil
}

func findMember(s *snapshot.Snapshot, id uint64) *snapshot.Member {
	for _, m := range s.Members {
		if m.ID == id {
			return m
		}
	}
	return nil
}
