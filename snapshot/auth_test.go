package snapshot

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

// enableAuth creates root (with role root, which etcd requires) and turns auth on.
func enableAuth(t *testing.T, endpoints []string, tlsFiles ...string) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.UserAdd(ctx, "root", "rootpw"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
}

// With auth on, a member that refuses connections fails at once even when its client was never
// created (the exporter started during its outage): creating a client authenticates, which must
// not wait for a connection that cannot come up.
func TestAuthStoppedMemberBeforeFirstSnapshotIsUnreachable(t *testing.T) {
	c := etcdtest.Start(t, 3)
	enableAuth(t, c.Endpoints())
	stopped := c.Members[1]
	stopped.Stop()
	// The stopped member comes first so that the member list also has to get past it.
	eps := []string{stopped.ClientURL, c.Members[0].ClientURL, c.Members[2].ClientURL}
	tk := newTaker(t, etcdconn.Config{Endpoints: eps, Username: "root", Password: "rootpw"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := tk.Take(ctx, Needs{Status: true, Probes: true})
	if s.MemberListErr != nil {
		t.Fatalf("member list: %v", s.MemberListErr)
	}
	logMembers(t, s)
	for _, m := range s.Members {
		if m.Name != stopped.Name {
			if !m.Up() {
				t.Errorf("%s down: %v", m.Name, m.StatusErr)
			}
			continue
		}
		if !errors.Is(m.StatusErr, ErrUnreachable) || errors.Is(m.StatusErr, context.DeadlineExceeded) {
			t.Errorf("stopped member status error = %v, want %v and no deadline", m.StatusErr, ErrUnreachable)
		}
		for _, p := range m.Probes {
			if !errors.Is(p.Err, ErrUnreachable) {
				t.Errorf("stopped member probe %s error = %v, want %v", p.Kind, p.Err, ErrUnreachable)
			}
		}
	}
}
