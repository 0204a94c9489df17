package snapshot

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

func take(t *testing.T, tk *Taker) *Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return tk.Take(ctx, Needs{Status: true, Probes: true})
}

func TestClientsKeptAndClosedWhenMemberLeaves(t *testing.T) {
	c := etcdtest.Start(t, 3)
	// Only the first member is configured: the others are found through MemberList.
	tk, err := NewTaker(etcdconn.Config{Endpoints: []string{c.Members[0].ClientURL}})
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()
	s := take(t, tk)
	if got := s.Cluster().MembersUp; got != 3 {
		t.Fatalf("members up = %d, want 3", got)
	}
	tk.mu.Lock()
	first := map[string]*clientv3.Client{}
	for ep, cl := range tk.clients {
		first[ep] = cl
	}
	tk.mu.Unlock()
	if len(first) != 3 {
		t.Fatalf("%d clients after first snapshot, want 3", len(first))
	}
	take(t, tk)
	tk.mu.Lock()
	for ep, cl := range tk.clients {
		if first[ep] != cl {
			t.Errorf("client for %s was replaced between snapshots", ep)
		}
	}
	tk.mu.Unlock()

	gone := c.Members[2]
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{c.Members[0].ClientURL}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	// etcd refuses a removal until members have been connected for a while ("unhealthy cluster").
	removeID := gone.ID()
	for attempt := 0; ; attempt++ {
		_, err := cli.MemberRemove(context.Background(), removeID)
		if err == nil {
			break
		}
		if attempt == 40 {
			t.Fatalf("member remove: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	s = take(t, tk)
	if len(s.Members) != 2 {
		t.Fatalf("%d members after removal, want 2", len(s.Members))
	}
	tk.mu.Lock()
	defer tk.mu.Unlock()
	if _, ok := tk.clients[gone.ClientURL]; ok {
		t.Errorf("client of removed member %s still kept", gone.ClientURL)
	}
	if first[gone.ClientURL].Ctx().Err() == nil {
		t.Errorf("removed member's client was not closed")
	}
}

func TestParseAlarms(t *testing.T) {
	got := parseAlarms([]string{"etcdserver: no leader", "memberID:10276657743932975437 alarm:NOSPACE ", "memberID:7 alarm:CORRUPT"})
	want := []MemberAlarm{{10276657743932975437, AlarmNoSpace}, {7, AlarmCorrupt}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("parseAlarms = %v, want %v", got, want)
	}
}
