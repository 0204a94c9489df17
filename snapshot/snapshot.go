// Package snapshot takes one consistent look at every member of an etcd cluster under a single
// deadline. Everything that reports on a cluster (the collectors, the status API, the check
// command) reads a Snapshot instead of talking to etcd itself.
package snapshot

import (
	"fmt"
	"regexp"
	"strconv"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// ProbeKind names a latency probe: one real read against a single member.
type ProbeKind string

const (
	// ProbeReadLinearizable is a quorum read; it fails when the member cannot reach a leader.
	ProbeReadLinearizable ProbeKind = "read_linearizable"
	// ProbeReadSerializable is served from the member's local store, with or without quorum.
	ProbeReadSerializable ProbeKind = "read_serializable"
)

// ProbeKinds lists every probe, in the order they are reported.
var ProbeKinds = []ProbeKind{ProbeReadLinearizable, ProbeReadSerializable}

// Alarm types reported by etcd (etcdserverpb.AlarmType names).
const (
	AlarmNoSpace = "NOSPACE"
	AlarmCorrupt = "CORRUPT"
)

// AlarmTypes lists the alarms emitted for every member, raised or not.
var AlarmTypes = []string{AlarmNoSpace, AlarmCorrupt}

// Needs says which per-member calls a caller wants; MemberList is always made.
type Needs struct {
	Status bool
	Probes bool
}

// Snapshot is what a cluster looked like during one scrape.
type Snapshot struct {
	Start time.Time
	// Deadline is the deadline it was taken under (zero when none), which bounds the work of
	// whoever reads it for the same request.
	Deadline time.Time
	// Members is the cluster's membership as reported by MemberList; empty when no endpoint answered.
	Members []*Member
	// MemberListEndpoint is the endpoint that answered MemberList.
	MemberListEndpoint string
	MemberListErr      error
	MemberListDuration time.Duration
	// StatusDuration and ProbeDuration are the wall-clock time of each fan-out phase.
	StatusDuration time.Duration
	ProbeDuration  time.Duration
	Needs          Needs
	// UnknownAlarms are alarms raised for member IDs that are not in the member list.
	UnknownAlarms []MemberAlarm
	// DataCheck is the last comparison of the members' HashKV known to whoever took the
	// snapshot (a slow fact, checked apart from it: package consistency); nil when none is.
	DataCheck *DataCheck
}

// DataCheck is the outcome of one comparison of the members' HashKV, as the health verdict reads it.
type DataCheck struct {
	Time     time.Time
	Revision int64
	// Minority are the members whose hash differed from the majority's.
	Minority []uint64
}

// Member is one etcd member and what it answered.
type Member struct {
	ID         uint64
	Name       string
	ClientURLs []string
	PeerURLs   []string
	IsLearner  bool
	// Endpoint is the address this member answered on: one of its client URLs, or a configured
	// endpoint known by the member ID in its answers to be this member. When it did not answer, it
	// is the first address tried ("" if it has none yet).
	Endpoint string
	// candidates are the addresses to try, best first.
	candidates []string

	Status         *pb.StatusResponse
	StatusErr      error
	StatusDuration time.Duration
	// Alarms are the alarm types raised for this member, as reported by any member that answered.
	Alarms map[string]bool
	// Probes holds one result per kind in ProbeKinds(), in that order.
	Probes []Probe
}

// ProbeKinds lists the probes that apply to the member. A learner refuses linearizable reads
// ("rpc not supported for learner") by design, so that probe is not made against it: its failure
// would say nothing about the learner's health.
func (m *Member) ProbeKinds() []ProbeKind {
	if m.IsLearner {
		return []ProbeKind{ProbeReadSerializable}
	}
	return ProbeKinds
}

// Probe returns the member's result for kind; false when that probe was not made.
func (m *Member) Probe(kind ProbeKind) (Probe, bool) {
	for _, p := range m.Probes {
		if p.Kind == kind {
			return p, true
		}
	}
	return Probe{}, false
}

// Probe is the outcome of one probe read.
type Probe struct {
	Kind     ProbeKind
	Duration time.Duration
	Err      error
}

// MemberAlarm is an alarm raised for a member.
type MemberAlarm struct {
	MemberID uint64
	Alarm    string
}

// IDString renders a member ID as etcdctl prints it.
func IDString(id uint64) string { return strconv.FormatUint(id, 16) }

// Up reports whether the member answered Status this time.
func (m *Member) Up() bool { return m.Status != nil }

// Leader returns the leader ID the member reports (0: it knows no leader), valid when Up.
func (m *Member) Leader() uint64 {
	if m.Status == nil {
		return 0
	}
	return m.Status.Leader
}

// IsLeader reports whether the member says it is the leader.
func (m *Member) IsLeader() bool { return m.Up() && m.Status.Leader != 0 && m.Status.Leader == m.ID }

// Version is the etcd version the member reported, "" when it did not answer.
func (m *Member) Version() string {
	if m.Status == nil {
		return ""
	}
	return m.Status.Version
}

// Up reports whether any endpoint answered.
func (s *Snapshot) Up() bool {
	if s.MemberListErr == nil && len(s.Members) > 0 {
		return true
	}
	for _, m := range s.Members {
		if m.Up() {
			return true
		}
	}
	return false
}

// Cluster holds the facts derived from all members together.
type Cluster struct {
	Members   int
	Learners  int
	MembersUp int
	// VotingMembers and VotingMembersUp count the members that vote (learners excluded): only
	// they make or lose a quorum.
	VotingMembers   int
	VotingMembersUp int
	// Quorum is how many voting members must agree for the cluster to make progress.
	Quorum int
	// HasQuorum is true when at least Quorum voting members are up and name the same leader.
	HasQuorum bool
	// Leader is the leader named by at least Quorum up voting members (0 when none is), and
	// LeaderVotes how many name it: the one leader the cluster can make progress under. A stale
	// leader named only by a minority is not it.
	Leader      uint64
	LeaderVotes int
	// Leaders are the distinct leader IDs reported by the members that answered.
	Leaders []uint64
	// AnyStatus is true when at least one member answered Status.
	AnyStatus bool
}

// Cluster derives the cluster-wide facts of the snapshot. It is the one place that counts votes.
func (s *Snapshot) Cluster() Cluster {
	var c Cluster
	votes := map[uint64]int{}
	seen := map[uint64]bool{}
	for _, m := range s.Members {
		c.Members++
		if m.IsLearner {
			c.Learners++
		} else {
			c.VotingMembers++
		}
		if !m.Up() {
			continue
		}
		c.MembersUp++
		if !m.IsLearner {
			c.VotingMembersUp++
		}
		c.AnyStatus = true
		l := m.Leader()
		if l == 0 {
			continue
		}
		if !seen[l] {
			seen[l] = true
			c.Leaders = append(c.Leaders, l)
		}
		if !m.IsLearner {
			votes[l]++
		}
	}
	c.Quorum = c.VotingMembers/2 + 1
	for l, n := range votes {
		// At most one leader can hold a majority of the voting members.
		if n >= c.Quorum {
			c.HasQuorum = true
			c.Leader, c.LeaderVotes = l, n
		}
	}
	return c
}

// alarmPattern matches the alarms etcd lists in StatusResponse.errors, which are the text form of
// etcdserverpb.AlarmMember, e.g. "memberID:10276657743932975437 alarm:NOSPACE ".
var alarmPattern = regexp.MustCompile(`memberID:(\d+)\s+alarm:([A-Z_]+)`)

// parseAlarms extracts the alarms from a Status response's errors field.
func parseAlarms(errs []string) []MemberAlarm {
	var out []MemberAlarm
	for _, e := range errs {
		m := alarmPattern.FindStringSubmatch(e)
		if m == nil {
			continue
		}
		id, err := strconv.ParseUint(m[1], 10, 64)
		if err != nil {
			continue
		}
		out = append(out, MemberAlarm{MemberID: id, Alarm: m[2]})
	}
	return out
}

// String is a short human description, for logs.
func (a MemberAlarm) String() string {
	return fmt.Sprintf("%s on member %s", a.Alarm, IDString(a.MemberID))
}
