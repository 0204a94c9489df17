package snapshot

import (
	"slices"
	"testing"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
)

// The order a member's addresses are tried in, without etcd: it decides what a scrape costs when
// some of them are dead.
func TestCandidatesOrder(t *testing.T) {
	tk, err := NewTaker(etcdconn.Config{Endpoints: []string{
		"127.0.0.1:2379",        // advertised by m1, in the user's spelling
		"http://10.0.0.9:2379",  // a port-forward known to reach m1
		"http://10.0.0.8:2379",  // a port-forward known to reach m2
		"http://10.0.0.7:2379",  // a port-forward nobody answered on yet
		"http://192.0.2.1:2379", // advertised by m2
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()
	m1 := &Member{ID: 1, ClientURLs: []string{"http://172.16.0.1:2379", "http://127.0.0.1:2379", "http://172.16.0.2:2379"}}
	m2 := &Member{ID: 2, ClientURLs: []string{"http://192.0.2.1:2379"}}
	unstarted := &Member{ID: 3}
	tk.memberOf["http://10.0.0.9:2379"] = 1
	tk.memberOf["http://10.0.0.8:2379"] = 2
	claimed := tk.claimedEndpoints([]*Member{m1, m2, unstarted})

	want := []string{"127.0.0.1:2379", "http://10.0.0.9:2379", "http://172.16.0.1:2379", "http://172.16.0.2:2379", "http://10.0.0.7:2379"}
	if got := tk.candidates(m1, claimed); !slices.Equal(got, want) {
		t.Errorf("m1 candidates = %q, want %q", got, want)
	}
	// The address it answered on last time comes first.
	tk.reachedBy[1] = "http://172.16.0.2:2379"
	want = []string{"http://172.16.0.2:2379", "127.0.0.1:2379", "http://10.0.0.9:2379", "http://172.16.0.1:2379", "http://10.0.0.7:2379"}
	if got := tk.candidates(m1, claimed); !slices.Equal(got, want) {
		t.Errorf("m1 candidates after answering on its last URL = %q, want %q", got, want)
	}
	// An address it no longer has is not tried.
	tk.reachedBy[2] = "http://198.51.100.1:2379"
	want = []string{"http://192.0.2.1:2379", "http://10.0.0.8:2379", "http://10.0.0.7:2379"}
	if got := tk.candidates(m2, claimed); !slices.Equal(got, want) {
		t.Errorf("m2 candidates = %q, want %q", got, want)
	}
	if got := tk.candidates(unstarted, claimed); len(got) != 0 {
		t.Errorf("unstarted member candidates = %q, want none", got)
	}
}
