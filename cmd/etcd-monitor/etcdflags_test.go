package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// --etcd.password-file is passed on as a file to follow, not read once at start-up: after the
// user's password is changed in etcd and written to the file, the next snapshot succeeds.
func TestPasswordFileFlagIsFollowed(t *testing.T) {
	c := etcdtest.Start(t, 1)
	admin, err := etcdconn.New(etcdconn.Config{Endpoints: c.Endpoints()}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, user := range []string{"root", "monitor"} {
		if _, err := admin.UserAdd(ctx, user, user+"-first"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pwFile, []byte("monitor-first\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	app := kingpin.New("test", "")
	flags := addEtcdFlags(app.Command("exporter", "").Default())
	if _, err := app.Parse([]string{"--etcd.endpoints=" + c.Endpoints()[0], "--etcd.username=monitor", "--etcd.password-file=" + pwFile}); err != nil {
		t.Fatal(err)
	}
	conn, err := flags.config()
	if err != nil {
		t.Fatal(err)
	}
	taker, err := snapshot.NewTaker(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer taker.Close()
	probesOK := func(when string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s := taker.Take(ctx, snapshot.Needs{Status: true, Probes: true})
		if s.MemberListErr != nil {
			t.Fatalf("%s: %v", when, s.MemberListErr)
		}
		for _, m := range s.Members {
			for _, p := range m.Probes {
				if p.Err != nil {
					t.Fatalf("%s: probe %s: %v", when, p.Kind, p.Err)
				}
			}
		}
	}
	probesOK("before the change")

	root, err := etcdconn.New(etcdconn.Config{Endpoints: c.Endpoints(), Username: "root", Password: "root-first"}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if _, err := root.UserChangePassword(ctx, "monitor", "monitor-second"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pwFile, []byte("monitor-second\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	probesOK("after the change")
}
