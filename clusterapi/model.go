package clusterapi

import (
	"time"

	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// ClusterStatus is the answer of /api/v1/cluster/status.
type ClusterStatus struct {
	Snapshot SnapshotInfo `json:"snapshot"`
	Cluster  Cluster      `json:"cluster"`
	Members  []Member     `json:"members"`
	// Certificates is present when the exporter checks certificates (etcd reached over TLS).
	Certificates *Certificates `json:"certificates,omitempty"`
}

// SnapshotInfo says when and how the snapshot behind an answer was taken.
type SnapshotInfo struct {
	Start              time.Time `json:"start"`
	MemberListEndpoint string    `json:"member_list_endpoint"`
	MemberListSeconds  float64   `json:"member_list_duration_seconds"`
	StatusSeconds      float64   `json:"status_duration_seconds"`
	ProbeSeconds       float64   `json:"probe_duration_seconds"`
}

// Cluster holds the facts derived from all members together, and the verdict.
type Cluster struct {
	Members   int  `json:"members"`
	Learners  int  `json:"learners"`
	MembersUp int  `json:"members_up"`
	Quorum    int  `json:"quorum"`
	HasQuorum bool `json:"has_quorum"`
	// Leaders are the distinct leader IDs the members that answered name (2 or more: they disagree).
	Leaders []string `json:"leaders"`
	// Leader is the leader named by a quorum of voting members, "" when there is none.
	Leader        string          `json:"leader"`
	Health        snapshot.Health `json:"health"`
	UnknownAlarms []string        `json:"unknown_alarms"`
}

// Member is one member: what the member list says, and what it answered.
type Member struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	ClientURLs []string `json:"client_urls"`
	PeerURLs   []string `json:"peer_urls"`
	// Endpoint is the client URL the exporter asked.
	Endpoint  string `json:"endpoint"`
	IsLearner bool   `json:"is_learner"`
	Up        bool   `json:"up"`
	// Error is why the member did not answer Status.
	Error  string        `json:"error,omitempty"`
	Status *MemberStatus `json:"status"` // null when the member did not answer
	Alarms []string      `json:"alarms"`
	Probes []Probe       `json:"probes"`
}

// MemberStatus is the member's answer to Status.
type MemberStatus struct {
	Version string `json:"version"`
	// LeaderID is the leader the member names, "" when it knows none.
	LeaderID         string  `json:"leader_id"`
	IsLeader         bool    `json:"is_leader"`
	HasLeader        bool    `json:"has_leader"`
	RaftTerm         uint64  `json:"raft_term"`
	RaftIndex        uint64  `json:"raft_index"`
	RaftAppliedIndex uint64  `json:"raft_applied_index"`
	Revision         int64   `json:"revision"`
	DBSizeBytes      int64   `json:"db_size_bytes"`
	DBSizeInUseBytes int64   `json:"db_size_in_use_bytes"`
	DBQuotaBytes     *int64  `json:"db_quota_bytes"` // null before etcd 3.6
	DurationSeconds  float64 `json:"duration_seconds"`
	// Errors are the member's own errors field (e.g. "etcdserver: no leader", raised alarms).
	Errors []string `json:"errors"`
}

// Probe is one probe read against the member alone.
type Probe struct {
	Kind    snapshot.ProbeKind `json:"kind"`
	Success bool               `json:"success"`
	// DurationSeconds is null when the read failed (as the metric is then not emitted).
	DurationSeconds *float64 `json:"duration_seconds"`
	Error           string   `json:"error,omitempty"`
}

// Leader is the answer of /api/v1/cluster/leader.
type Leader struct {
	Member Member `json:"member"`
	// Votes is how many up voting members name this leader; Quorum how many must.
	Votes  int `json:"votes"`
	Quorum int `json:"quorum"`
}

// Latency is the answer of /api/v1/metrics/latency.
type Latency struct {
	Start   time.Time       `json:"start"`
	Members []MemberLatency `json:"members"`
}

// MemberLatency is the latest probe of each kind against one member.
type MemberLatency struct {
	ID     string  `json:"id"`
	Name   string  `json:"name"`
	Up     bool    `json:"up"`
	Probes []Probe `json:"probes"`
}

// ClusterStatusOf renders a snapshot.
func ClusterStatusOf(s *snapshot.Snapshot) ClusterStatus {
	c := s.Cluster()
	out := ClusterStatus{
		Snapshot: SnapshotInfo{
			Start:              s.Start.UTC(),
			MemberListEndpoint: s.MemberListEndpoint,
			MemberListSeconds:  s.MemberListDuration.Seconds(),
			StatusSeconds:      s.StatusDuration.Seconds(),
			ProbeSeconds:       s.ProbeDuration.Seconds(),
		},
		Cluster: Cluster{
			Members:       c.Members,
			Learners:      c.Learners,
			MembersUp:     c.MembersUp,
			Quorum:        c.Quorum,
			HasQuorum:     c.HasQuorum,
			Leaders:       []string{},
			Health:        s.Health(),
			UnknownAlarms: []string{},
		},
		Members: []Member{},
	}
	for _, l := range c.Leaders {
		out.Cluster.Leaders = append(out.Cluster.Leaders, snapshot.IDString(l))
	}
	if c.Leader != 0 {
		out.Cluster.Leader = snapshot.IDString(c.Leader)
	}
	for _, a := range s.UnknownAlarms {
		out.Cluster.UnknownAlarms = append(out.Cluster.UnknownAlarms, a.String())
	}
	for _, m := range s.Members {
		out.Members = append(out.Members, MemberOf(m))
	}
	return out
}

// MemberOf renders one member. It is the one JSON shape of a member: the status API and
// `etcd-monitor check --output=json` both use it.
func MemberOf(m *snapshot.Member) Member {
	out := Member{
		ID:         snapshot.IDString(m.ID),
		Name:       m.Name,
		ClientURLs: nonNil(m.ClientURLs),
		PeerURLs:   nonNil(m.PeerURLs),
		Endpoint:   m.Endpoint,
		IsLearner:  m.IsLearner,
		Up:         m.Up(),
		Alarms:     []string{},
		Probes:     probesOf(m),
	}
	if m.StatusErr != nil {
		out.Error = m.StatusErr.Error()
	}
	for _, a := range snapshot.AlarmTypes {
		if m.Alarms[a] {
			out.Alarms = append(out.Alarms, a)
		}
	}
	if st := m.Status; st != nil {
		ms := &MemberStatus{
			Version:          st.Version,
			IsLeader:         m.IsLeader(),
			HasLeader:        st.Leader != 0,
			RaftTerm:         st.RaftTerm,
			RaftIndex:        st.RaftIndex,
			RaftAppliedIndex: st.RaftAppliedIndex,
			DBSizeBytes:      st.DbSize,
			DBSizeInUseBytes: st.DbSizeInUse,
			DurationSeconds:  m.StatusDuration.Seconds(),
			Errors:           nonNil(st.Errors),
		}
		if st.Leader != 0 {
			ms.LeaderID = snapshot.IDString(st.Leader)
		}
		if st.Header != nil {
			ms.Revision = st.Header.Revision
		}
		if st.DbSizeQuota > 0 {
			q := st.DbSizeQuota
			ms.DBQuotaBytes = &q
		}
		out.Status = ms
	}
	return out
}

func probesOf(m *snapshot.Member) []Probe {
	out := []Probe{}
	for _, p := range m.Probes {
		pr := Probe{Kind: p.Kind, Success: p.Err == nil}
		if p.Err != nil {
			pr.Error = p.Err.Error()
		} else {
			d := p.Duration.Seconds()
			pr.DurationSeconds = &d
		}
		out = append(out, pr)
	}
	return out
}

// LeaderOf returns the leader a quorum names; false when there is none.
func LeaderOf(s *snapshot.Snapshot) (Leader, bool) {
	c := s.Cluster()
	if c.Leader == 0 {
		return Leader{}, false
	}
	for _, m := range s.Members {
		if m.ID == c.Leader {
			return Leader{Member: MemberOf(m), Votes: c.LeaderVotes, Quorum: c.Quorum}, true
		}
	}
	// Named by a quorum but absent from the member list we read: report what is known.
	return Leader{Member: Member{ID: snapshot.IDString(c.Leader), ClientURLs: []string{}, PeerURLs: []string{}, Alarms: []string{}, Probes: []Probe{}}, Votes: c.LeaderVotes, Quorum: c.Quorum}, true
}

// LatencyOf returns the probes of every member.
func LatencyOf(s *snapshot.Snapshot) Latency {
	out := Latency{Start: s.Start.UTC(), Members: []MemberLatency{}}
	for _, m := range s.Members {
		out.Members = append(out.Members, MemberLatency{ID: snapshot.IDString(m.ID), Name: m.Name, Up: m.Up(), Probes: probesOf(m)})
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
