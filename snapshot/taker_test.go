package snapshot

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/certgen"
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
	// What is tested is the clients' lifetime, not the first snapshot's speed: on a loaded machine
	// a member of a cluster that has just started can miss one snapshot's deadline.
	var s *Snapshot
	for attempt := 0; attempt < 5; attempt++ {
		if s = take(t, tk); s.Cluster().MembersUp == 3 {
			break
		}
	}
	if got := s.Cluster().MembersUp; got != 3 {
		var errs []string
		for _, m := range s.Members {
			if m.StatusErr != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", m.Name, m.StatusErr))
			}
		}
		t.Fatalf("members up = %d, want 3 (%s)", got, strings.Join(errs, "; "))
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

// A stopped member refuses connections: that is reported as unreachable, not left to run into the
// deadline, on the first snapshot after the stop and on later ones; a restarted member is up again.
func TestStoppedMemberIsUnreachableNotTimedOut(t *testing.T) {
	c := etcdtest.Start(t, 3)
	tk, err := NewTaker(etcdconn.Config{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()
	if got := take(t, tk).Cluster().MembersUp; got != 3 {
		t.Fatalf("members up = %d, want 3", got)
	}
	stopped := c.Members[1]
	stopped.Stop()
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s := tk.Take(ctx, Needs{Status: true, Probes: true})
		cancel()
		for _, m := range s.Members {
			if m.Name != stopped.Name {
				if m.StatusErr != nil {
					t.Errorf("snapshot %d: %s status: %v", i, m.Name, m.StatusErr)
				}
				continue
			}
			if !errors.Is(m.StatusErr, ErrUnreachable) {
				t.Errorf("snapshot %d: stopped member status error = %v, want %v", i, m.StatusErr, ErrUnreachable)
			}
			for _, p := range m.Probes {
				if !errors.Is(p.Err, ErrUnreachable) {
					t.Errorf("snapshot %d: stopped member probe %s error = %v, want %v", i, p.Kind, p.Err, ErrUnreachable)
				}
			}
		}
	}
	stopped.Restart(t)
	for attempt := 0; ; attempt++ {
		if take(t, tk).Cluster().MembersUp == 3 {
			break
		}
		if attempt == 40 {
			t.Fatal("restarted member not up after 40 snapshots")
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// With no endpoint listening, the member list fails as unreachable instead of waiting out the
// deadline, so an API request or `check` against a dead cluster answers at once.
func TestNoEndpointListeningIsUnreachable(t *testing.T) {
	ep := fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))
	tk, err := NewTaker(etcdconn.Config{Endpoints: []string{ep}})
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := tk.Take(ctx, Needs{Status: true, Probes: true})
	if !errors.Is(s.MemberListErr, ErrUnreachable) {
		t.Fatalf("member list error = %v, want %v", s.MemberListErr, ErrUnreachable)
	}
	// Why, in the words of the failed dial, not gRPC's name for the state it left.
	if !strings.Contains(s.MemberListErr.Error(), "connection refused") {
		t.Errorf("member list error = %v, want it to say the connection was refused", s.MemberListErr)
	}
}

// A member whose certificate does not verify is unreachable with the TLS error that says why:
// here certificates for a DNS name, reached as 127.0.0.1 without --etcd.tls.server-name.
func TestTLSFailureSaysWhy(t *testing.T) {
	p := certgen.NewNamedEtcdPKI(t, "etcd.example")
	c := p.Start(t)
	tk, err := NewTaker(etcdconn.Config{Endpoints: c.Endpoints(), CAFile: p.CAFile, CertFile: p.ClientCert, KeyFile: p.ClientKey})
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = tk.Take(ctx, Needs{Status: true}).MemberListErr
	const want = "member unreachable: transport: authentication handshake failed: tls: failed to verify certificate: x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs"
	if !errors.Is(err, ErrUnreachable) || !strings.HasSuffix(err.Error(), want) {
		t.Fatalf("member list error = %v, want unreachable with %q", err, want)
	}
}

// The text of a failed connection comes from the server in part (a certificate's names, a
// proxy's answer): it is kept on one line of valid UTF-8 and bounded.
func TestConnectionErrorIsBounded(t *testing.T) {
	inner := "transport: " + strings.Repeat("é", 400) + "\nsecond line\xff"
	err := status.Error(codes.Unavailable, "connection error: desc = "+strconv.Quote(inner))
	got := connectionError(err)
	if len(got) > maxConnectionError+len("…") || strings.ContainsAny(got, "\n\r") || !utf8.ValidString(got) || !strings.HasPrefix(got, "transport: éé") || !strings.HasSuffix(got, "…") {
		t.Errorf("connectionError = %q (%d bytes)", got, len(got))
	}
	if got := connectionError(status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused"`)); got != "transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused" {
		t.Errorf("connectionError = %q", got)
	}
}
