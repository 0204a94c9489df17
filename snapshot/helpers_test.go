package snapshot

import (
	"fmt"
	"net/url"
	"testing"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

func mustParseURL(t *testing.T, s string) url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return *u
}

// closedURL is a loopback client URL nothing listens on: connections to it are refused.
func closedURL(t *testing.T) string {
	return fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t))
}

func newTaker(t *testing.T, conn etcdconn.Config) *Taker {
	t.Helper()
	tk, err := NewTaker(conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tk.Close)
	return tk
}

func byName(s *Snapshot) map[string]*Member {
	out := map[string]*Member{}
	for _, m := range s.Members {
		out[m.Name] = m
	}
	return out
}

// listenHost is where a member really listens (its first listen client URL).
func listenHost(cfg *embed.Config) string { return cfg.ListenClientUrls[0].Host }

// logMembers shows each member's state, for reading a failed test.
func logMembers(t *testing.T, s *Snapshot) {
	t.Helper()
	for _, m := range s.Members {
		t.Logf("%s (%s) on %q: up=%v err=%v", m.Name, IDString(m.ID), m.Endpoint, m.Up(), m.StatusErr)
	}
}
