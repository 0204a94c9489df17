package snapshot

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

// Three members advertise one shared address (a VIP) that reaches whichever member is first alive.
// Only the member that really answers on it is up; the others are reported as not reached, never
// with its data.
func TestSharedAddressAnswersOnlyForTheMemberBehindIt(t *testing.T) {
	vip := newForwarder(t)
	listen := make([]string, 3)
	c := etcdtest.Start(t, 3, func(i int, cfg *embed.Config) {
		listen[i] = listenHost(cfg)
		cfg.AdvertiseClientUrls = []url.URL{mustParseURL(t, vip.URL())}
	})
	vip.setTargets(listen...)
	tk := newTaker(t, etcdconn.Config{Endpoints: []string{vip.URL()}})

	check := func(s *Snapshot, upName string) {
		t.Helper()
		logMembers(t, s)
		var upID uint64
		for _, m := range s.Members {
			if m.Name == upName {
				upID = m.ID
			}
		}
		for _, m := range s.Members {
			if m.Name == upName {
				if !m.Up() {
					t.Errorf("%s (behind the VIP) down: %v", m.Name, m.StatusErr)
				} else if got := m.Status.Header.MemberId; got != m.ID {
					t.Errorf("%s reported with member %x's status", m.Name, got)
				}
				for _, p := range m.Probes {
					if p.Err != nil {
						t.Errorf("%s probe %s: %v", m.Name, p.Kind, p.Err)
					}
				}
				continue
			}
			if m.Up() {
				t.Errorf("%s up with status of member %x, but the VIP reaches %s", m.Name, m.Status.Header.MemberId, upName)
				continue
			}
			var wrong *WrongMemberError
			if m.Name != "m0" || upName == "m0" { // a stopped m0 may also be refused on the VIP
				if !errors.As(m.StatusErr, &wrong) || wrong.MemberID != upID {
					t.Errorf("%s status error = %v, want the VIP answering as %s (%x)", m.Name, m.StatusErr, upName, upID)
				} else if want := fmt.Sprintf("endpoint %s answered as member %s", vip.URL(), IDString(upID)); !strings.Contains(m.StatusErr.Error(), want) {
					t.Errorf("%s status error %q does not say %q", m.Name, m.StatusErr, want)
				}
			}
			for _, p := range m.Probes {
				if p.Err == nil {
					t.Errorf("%s probe %s counted though the member was not reached", m.Name, p.Kind)
				}
			}
		}
		if got := s.Cluster().MembersUp; got != 1 {
			t.Errorf("members up = %d, want 1", got)
		}
	}
	check(take(t, tk), "m0")

	// With m0 gone, the VIP reaches m1: now m1, and only m1, is up.
	c.Members[0].Stop()
	var s *Snapshot
	for attempt := 0; attempt < 40; attempt++ {
		s = take(t, tk)
		if m := byName(s)["m1"]; m != nil && m.Up() {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	check(s, "m1")
}

// A member advertising two client URLs and listening only on the second is reached on the second.
func TestMemberReachedByLaterAdvertisedURL(t *testing.T) {
	dead := closedURL(t)
	c := etcdtest.Start(t, 3, func(i int, cfg *embed.Config) {
		if i == 1 {
			cfg.AdvertiseClientUrls = []url.URL{mustParseURL(t, dead), cfg.ListenClientUrls[0]}
		}
	})
	// Only m0 is configured: m1 is known by its advertised URLs alone.
	tk := newTaker(t, etcdconn.Config{Endpoints: []string{c.Members[0].ClientURL}})
	for i := range 2 { // the second snapshot goes straight to the address that worked
		s := take(t, tk)
		for _, m := range s.Members {
			if !m.Up() {
				t.Errorf("snapshot %d: %s down: %v", i, m.Name, m.StatusErr)
			}
		}
		m := byName(s)["m1"]
		if m == nil || len(m.ClientURLs) != 2 || m.ClientURLs[0] != dead {
			t.Fatalf("m1 should advertise the closed URL first: %+v", m)
		}
		if m.Endpoint != m.ClientURLs[1] {
			t.Errorf("snapshot %d: m1 reached on %q, want %q", i, m.Endpoint, m.ClientURLs[1])
		}
	}
}

// Behind a NAT or port-forward the members advertise addresses the exporter cannot reach; the
// configured endpoint reaches one member. That member, identified by the ID in its answer, is up
// through the configured endpoint; the others are honestly down. With one port-forward per member
// configured, every member is found on its own.
func TestConfiguredEndpointReachesItsMemberBehindNAT(t *testing.T) {
	nat := []*forwarder{newForwarder(t), newForwarder(t), newForwarder(t)}
	c := etcdtest.Start(t, 3, func(i int, cfg *embed.Config) {
		nat[i].setTargets(listenHost(cfg))
		cfg.AdvertiseClientUrls = []url.URL{mustParseURL(t, closedURL(t))}
	})
	tk := newTaker(t, etcdconn.Config{Endpoints: []string{nat[0].URL()}})
	s := take(t, tk)
	if s.MemberListErr != nil {
		t.Fatalf("member list: %v", s.MemberListErr)
	}
	logMembers(t, s)
	for _, m := range s.Members {
		if m.Name == c.Members[0].Name {
			if !m.Up() {
				t.Errorf("%s down though the configured endpoint reaches it: %v", m.Name, m.StatusErr)
			} else if m.Endpoint != nat[0].URL() {
				t.Errorf("%s reached on %q, want the configured %q", m.Name, m.Endpoint, nat[0].URL())
			}
			for _, p := range m.Probes {
				if p.Err != nil {
					t.Errorf("%s probe %s: %v", m.Name, p.Kind, p.Err)
				}
			}
			continue
		}
		if m.Up() {
			t.Errorf("%s up, but only m0 is reachable", m.Name)
		}
		if !errors.Is(m.StatusErr, ErrUnreachable) {
			t.Errorf("%s status error = %v, want %v", m.Name, m.StatusErr, ErrUnreachable)
		}
	}
	if got := s.Cluster().MembersUp; got != 1 {
		t.Errorf("members up = %d, want 1", got)
	}

	all := newTaker(t, etcdconn.Config{Endpoints: []string{nat[0].URL(), nat[1].URL(), nat[2].URL()}})
	for i := range 2 {
		s := take(t, all)
		logMembers(t, s)
		for j, cm := range c.Members {
			m := byName(s)[cm.Name]
			if m == nil || !m.Up() {
				t.Errorf("snapshot %d, one port-forward each: %s not up: %+v", i, cm.Name, m)
			} else if m.Endpoint != nat[j].URL() {
				t.Errorf("snapshot %d: %s reached on %q, want its port-forward %q", i, cm.Name, m.Endpoint, nat[j].URL())
			}
		}
	}
}
