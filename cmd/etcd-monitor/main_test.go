package main

import (
	"path/filepath"
	"testing"
)

func TestBadInputExitsOne(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for name, args := range map[string][]string{
		"unknown flag":                 {"--no-such-flag"},
		"bad scheme":                   {"--etcd.endpoints=ftp://127.0.0.1:2379"},
		"no port":                      {"--etcd.endpoints=127.0.0.1"},
		"bad port":                     {"--etcd.endpoints=127.0.0.1:99999"},
		"unreadable CA":                {"--etcd.tls.ca-file=" + missing},
		"cert without key":             {"--etcd.tls.cert-file=" + missing},
		"missing password":             {"--etcd.username=u", "--etcd.password-file=" + missing},
		"user, no password":            {"--etcd.username=u"},
		"negative offset":              {"--scrape.timeout-offset=-1s"},
		"bad telemetry path":           {"--web.telemetry-path=metrics"},
		"unknown command":              {"frobnicate"},
		"zero cert interval":           {"--certificates.interval=0s"},
		"missing peer CA":              {"--certificates.peer-ca-file=" + missing},
		"zero consistency interval":    {"--consistency.interval=0s"},
		"negative consistency timeout": {"--consistency.timeout=-1s"},
	} {
		t.Run(name, func(t *testing.T) {
			if got := run(args); got != 1 {
				t.Errorf("run(%q) = %d, want 1", args, got)
			}
		})
	}
}
