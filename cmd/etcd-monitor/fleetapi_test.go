package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-monitor/etcd-monitor/clusterapi"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// /api/v1/clusters judges every cluster; the single-cluster paths take ?cluster=.
func TestFleetStatusAPI(t *testing.T) {
	c := etcdtest.Start(t, 1)
	path := filepath.Join(t.TempDir(), "fleet.yml")
	fleetFile(t, path, "good="+c.Endpoints()[0], "broken="+closedPort(t))
	srv := testFleet(t, path, false)

	code, body := request(t, http.MethodGet, srv.URL+"/api/v1/clusters")
	var list struct {
		Status string         `json:"status"`
		Data   []FleetCluster `json:"data"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &list) != nil || list.Status != "success" || len(list.Data) != 2 {
		t.Fatalf("/api/v1/clusters: %d\n%s", code, body)
	}
	byName := map[string]FleetCluster{}
	for _, fc := range list.Data {
		byName[fc.Name] = fc
	}
	if g := byName["good"]; !g.Up || g.Cluster.Health.Verdict != snapshot.Healthy || g.Cluster.MembersUp != 1 || g.Cluster.Leader == "" {
		t.Errorf("good: %+v", g)
	}
	if b := byName["broken"]; b.Up || b.Cluster.Health.Verdict != snapshot.Critical || b.Error == "" {
		t.Errorf("broken: %+v", b)
	}
	if list.Data[0].Name != "broken" || list.Data[1].Name != "good" {
		t.Errorf("not sorted by name: %s, %s", list.Data[0].Name, list.Data[1].Name)
	}
	code, body = request(t, http.MethodGet, srv.URL+"/api/v1/clusters?cluster=good")
	if code != 200 || strings.Contains(body, `"broken"`) || !strings.Contains(body, `"good"`) {
		t.Errorf("/api/v1/clusters?cluster=good: %d\n%s", code, body)
	}

	code, body = request(t, http.MethodGet, srv.URL+clusterapi.PathStatus+"?cluster=good")
	var st struct {
		Data clusterapi.ClusterStatus `json:"data"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || st.Data.Cluster.MembersUp != 1 || len(st.Data.Members) != 1 {
		t.Errorf("status of good: %d\n%s", code, body)
	}
	if code, _ := request(t, http.MethodGet, srv.URL+clusterapi.PathStatus+"?cluster=broken"); code != http.StatusServiceUnavailable {
		t.Errorf("status of broken: %d, want 503 as in flags mode", code)
	}
	member := st.Data.Members[0].Name
	if code, body := request(t, http.MethodGet, srv.URL+clusterapi.PathLatency+"?cluster=good&member="+member); code != 200 || !strings.Contains(body, member) {
		t.Errorf("latency of good's member: %d\n%s", code, body)
	}
	if code, body := request(t, http.MethodGet, srv.URL+clusterapi.PathLeader+"?cluster=good"); code != 200 || !strings.Contains(body, member) {
		t.Errorf("leader of good: %d\n%s", code, body)
	}

	for q, want := range map[string]string{
		clusterapi.PathStatus:                              "missing parameter cluster",
		clusterapi.PathStatus + "?cluster=nope":            `unknown cluster \"nope\"`,
		clusterapi.PathStatus + "?cluster=good&cluster=b":  "given 2 times",
		clusterapi.PathStatus + "?cluster=good&target=x":   `unknown parameter \"target\"`,
		clusterapi.PathLatency + "?cluster=good&member=zz": `unknown member \"zz\"`,
		"/api/v1/clusters?cluster=nope":                    `unknown cluster \"nope\"`,
		"/api/v1/clusters?endpoints=127.0.0.1:2379":        `unknown parameter \"endpoints\"`,
	} {
		code, body := request(t, http.MethodGet, srv.URL+q)
		if code/100 != 4 || !strings.Contains(body, want) {
			t.Errorf("%s: %d %s, want 4xx with %s", q, code, body, want)
		}
	}
	if code, _ := request(t, http.MethodGet, srv.URL+"/api/v1/nope?cluster=good"); code != 404 {
		t.Errorf("unknown path: %d", code)
	}
}

// /api/v1/clusters takes at most fleetSnapshots snapshots at once. Every cluster is reached
// through a frozen forwarder, so each snapshot holds its member list call until the deadline:
// the clusters whose turn comes after it never send a call.
func TestFleetStatusIsBounded(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ep := strings.TrimPrefix(c.Endpoints()[0], "http://")
	path := filepath.Join(t.TempDir(), "fleet.yml")
	var freezers []*freezer
	var clusters []string
	for i := range fleetSnapshots + 3 {
		f := startFreezer(t, ep)
		freezers = append(freezers, f)
		clusters = append(clusters, fmt.Sprintf("c%02d=%s", i, f.addr()))
	}
	fleetFile(t, path, clusters...)
	srv := testFleet(t, path, false)
	// Every cluster once, so that each keeps a connection through its forwarder; a generous
	// deadline, since 11 snapshots share a busy machine.
	warm, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/clusters", nil)
	warm.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", "20")
	resp, err := http.DefaultClient.Do(warm)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.Contains(string(body), `"up": false`) {
		t.Fatalf("before the freeze: %d\n%s", resp.StatusCode, body)
	}
	for _, f := range freezers {
		f.freeze()
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/clusters", nil)
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", "2")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Data []FleetCluster `json:"data"`
	}
	err = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if err != nil || len(list.Data) != len(freezers) {
		t.Fatalf("frozen: %v %+v", err, list)
	}
	for _, fc := range list.Data {
		if fc.Up {
			t.Errorf("%s up through a frozen forwarder", fc.Name)
		}
	}
	reached := 0
	for _, f := range freezers {
		if len(f.held) > 0 {
			reached++
		}
	}
	if reached != fleetSnapshots {
		t.Errorf("%d clusters asked at once, want %d (fleetSnapshots)", reached, fleetSnapshots)
	}
}
