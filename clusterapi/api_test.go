package clusterapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/etcd-monitor/etcd-monitor/collector"
	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

type fixture struct {
	taker *snapshot.Taker
	api   *API
	exp   *collector.Exporter
	srv   *httptest.Server
	// takes counts the snapshots the API asked the taker for.
	takes atomic.Int32
	// gate, when set, runs before each snapshot (tests use it to let requests pile up).
	gate func()
}

// newFixture serves the API and /metrics, as the exporter does, on a loopback test server.
func newFixture(t *testing.T, endpoints []string, timeout time.Duration) *fixture {
	t.Helper()
	tk, err := snapshot.NewTaker(etcdconn.Config{Endpoints: endpoints})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tk.Close)
	f := &fixture{taker: tk}
	take := func(ctx context.Context, needs snapshot.Needs) *snapshot.Snapshot {
		f.takes.Add(1)
		if f.gate != nil {
			f.gate()
		}
		return tk.Take(ctx, needs)
	}
	f.api = New(Options{Snapshots: snapshot.NewShared(take, Needs), Timeout: timeout, Offset: 500 * time.Millisecond})
	f.exp, err = collector.New(tk, nil)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	f.api.Register(mux)
	mux.Handle("/metrics", f.exp.Handler(collector.HandlerOpts{Timeout: timeout, Offset: 500 * time.Millisecond}))
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

type answer struct {
	code   int
	header http.Header
	body   []byte
	resp   Response
	data   json.RawMessage
}

func (f *fixture) do(t *testing.T, method, path string, header map[string]string) answer {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{code: resp.StatusCode, header: resp.Header, body: b}
	if method == http.MethodHead || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		return a
	}
	var raw struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("%s %s: body is not JSON: %v\n%s", method, path, err, b)
	}
	a.resp = Response{Status: raw.Status, Error: raw.Error}
	a.data = raw.Data
	return a
}

func (f *fixture) status(t *testing.T) ClusterStatus {
	t.Helper()
	a := f.do(t, http.MethodGet, PathStatus, nil)
	if a.code != http.StatusOK || a.resp.Status != "success" {
		t.Fatalf("status: %d %s", a.code, a.body)
	}
	var cs ClusterStatus
	if err := json.Unmarshal(a.data, &cs); err != nil {
		t.Fatal(err)
	}
	return cs
}

// pollStatus asks until cond holds (an election after a stop takes a moment), bounded.
func (f *fixture) pollStatus(t *testing.T, what string, cond func(ClusterStatus) bool) ClusterStatus {
	t.Helper()
	var cs ClusterStatus
	for i := 0; i < 100; i++ {
		if cs = f.status(t); cond(cs) {
			return cs
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("never saw %s; last status: %+v", what, cs)
	return cs
}

// gaugeValues renders metrics as name{member="..."} -> value (member_id dropped for readability).
func gaugeValues(mfs []*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var parts []string
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "member" || lp.GetName() == "probe" {
					parts = append(parts, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
				}
			}
			out[mf.GetName()+"{"+strings.Join(parts, ",")+"}"] = m.GetGauge().GetValue()
		}
	}
	return out
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// compareWithMetrics checks that the API's JSON and the collectors' metrics say the same thing.
func compareWithMetrics(t *testing.T, cs ClusterStatus, m map[string]float64, live bool) {
	t.Helper()
	want := map[string]float64{
		"etcd_monitor_up{}":                 1,
		"etcd_monitor_cluster_members{}":    float64(cs.Cluster.Members),
		"etcd_monitor_cluster_members_up{}": float64(cs.Cluster.MembersUp),
		"etcd_monitor_cluster_quorum{}":     float64(cs.Cluster.Quorum),
		"etcd_monitor_cluster_has_quorum{}": b2f(cs.Cluster.HasQuorum),
		"etcd_monitor_cluster_leaders{}":    float64(len(cs.Cluster.Leaders)),
		"etcd_monitor_cluster_learners{}":   float64(cs.Cluster.Learners),
	}
	for _, mem := range cs.Members {
		l := fmt.Sprintf(`{member=%q}`, mem.Name)
		want["etcd_monitor_member_up"+l] = b2f(mem.Up)
		if st := mem.Status; st != nil {
			want["etcd_monitor_member_is_leader"+l] = b2f(st.IsLeader)
			want["etcd_monitor_member_has_leader"+l] = b2f(st.HasLeader)
			want["etcd_monitor_member_raft_term"+l] = float64(st.RaftTerm)
			want["etcd_monitor_member_db_size_bytes"+l] = float64(st.DBSizeBytes)
			if !live {
				// Indexes and in-use size move with every write; only one snapshot pins them.
				want["etcd_monitor_member_raft_index"+l] = float64(st.RaftIndex)
				want["etcd_monitor_member_raft_applied_index"+l] = float64(st.RaftAppliedIndex)
				want["etcd_monitor_member_db_size_in_use_bytes"+l] = float64(st.DBSizeInUseBytes)
				want["etcd_monitor_member_revision"+l] = float64(st.Revision)
			}
			if st.DBQuotaBytes != nil {
				want["etcd_monitor_member_db_quota_bytes"+l] = float64(*st.DBQuotaBytes)
			}
		}
		for _, p := range mem.Probes {
			pl := fmt.Sprintf(`{member=%q,probe=%q}`, mem.Name, p.Kind)
			want["etcd_monitor_member_probe_success"+pl] = b2f(p.Success)
			if !live && p.DurationSeconds != nil {
				want["etcd_monitor_member_probe_duration_seconds"+pl] = *p.DurationSeconds
			}
		}
	}
	for k, v := range want {
		got, ok := m[k]
		if !ok {
			t.Errorf("metric %s missing (API says %v)", k, v)
		} else if got != v {
			t.Errorf("metric %s = %v, API says %v", k, got, v)
		}
	}
	// Every member series in the metrics is a member the API lists.
	names := map[string]bool{}
	for _, mem := range cs.Members {
		names[mem.Name] = true
	}
	for k := range m {
		if i := strings.Index(k, `member="`); i >= 0 {
			name := strings.SplitN(k[i+len(`member="`):], `"`, 2)[0]
			if !names[name] {
				t.Errorf("metric %s names a member the API does not list", k)
			}
		}
	}
}

// collectOnce is a prometheus.Collector over one snapshot already taken.
type collectOnce struct {
	e *collector.Exporter
	s *snapshot.Snapshot
}

func (collectOnce) Describe(chan<- *prometheus.Desc)      {}
func (c collectOnce) Collect(ch chan<- prometheus.Metric) { c.e.Collect(c.s, ch) }

func TestStatusMatchesMetrics(t *testing.T) {
	c := etcdtest.Start(t, 3)
	c.Settle()
	f := newFixture(t, c.Endpoints(), 5*time.Second)

	t.Run("one snapshot", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s := f.taker.Take(ctx, Needs)
		// Through JSON, as a client reads it.
		b, err := json.Marshal(ClusterStatusOf(s))
		if err != nil {
			t.Fatal(err)
		}
		var cs ClusterStatus
		if err := json.Unmarshal(b, &cs); err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectOnce{f.exp, s})
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		if cs.Cluster.Members != 3 || cs.Cluster.MembersUp != 3 || !cs.Cluster.HasQuorum || cs.Cluster.Leader == "" {
			t.Fatalf("cluster = %+v, want 3 members up with a leader", cs.Cluster)
		}
		compareWithMetrics(t, cs, gaugeValues(mfs), false)
	})

	t.Run("live", func(t *testing.T) {
		cs := f.status(t)
		// What /metrics serves: a scrape with its own snapshot, right after the API's.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		reg := prometheus.NewRegistry()
		reg.MustRegister(f.exp.Scrape(ctx))
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		compareWithMetrics(t, cs, gaugeValues(mfs), true)
		for _, mem := range cs.Members {
			if mem.Status == nil || mem.Status.LeaderID != cs.Cluster.Leader || len(mem.ClientURLs) != 1 || len(mem.PeerURLs) != 1 || mem.Status.Version == "" {
				t.Errorf("member %+v: want up, naming leader %s, with URLs and version", mem, cs.Cluster.Leader)
			}
			if len(mem.Probes) != len(snapshot.ProbeKinds) {
				t.Errorf("member %s has %d probes, want %d", mem.Name, len(mem.Probes), len(snapshot.ProbeKinds))
			}
		}
	})
}

func TestStoppedMembers(t *testing.T) {
	c := etcdtest.Start(t, 3)
	f := newFixture(t, c.Endpoints(), 3*time.Second)
	f.pollStatus(t, "a healthy cluster", func(cs ClusterStatus) bool { return cs.Cluster.Health.Verdict == snapshot.Healthy })

	c.Members[2].Stop()
	cs := f.pollStatus(t, "m2 down with a leader", func(cs ClusterStatus) bool {
		return cs.Cluster.MembersUp == 2 && cs.Cluster.Leader != ""
	})
	for _, m := range cs.Members {
		if (m.Name == "m2") == m.Up {
			t.Errorf("member %s up=%v", m.Name, m.Up)
		}
		if m.Name == "m2" && (m.Status != nil || m.Error == "") {
			t.Errorf("stopped member: status %+v error %q, want null status and an error", m.Status, m.Error)
		}
	}
	if !cs.Cluster.HasQuorum || cs.Cluster.Health.Verdict != snapshot.Degraded {
		t.Errorf("cluster = %+v, want quorum and degraded", cs.Cluster)
	}
	a := f.do(t, http.MethodGet, PathLeader, nil)
	var l Leader
	if a.code != http.StatusOK || json.Unmarshal(a.data, &l) != nil || l.Member.ID != cs.Cluster.Leader || l.Votes < 2 || l.Quorum != 2 {
		t.Errorf("leader: %d %s", a.code, a.body)
	}
	a = f.do(t, http.MethodGet, PathLatency+"?member=m2", nil)
	var lat Latency
	if a.code != http.StatusOK || json.Unmarshal(a.data, &lat) != nil || len(lat.Members) != 1 || lat.Members[0].Up || lat.Members[0].Probes[0].Success {
		t.Errorf("latency of the stopped member: %d %s", a.code, a.body)
	}

	c.Members[1].Stop()
	cs = f.pollStatus(t, "no quorum", func(cs ClusterStatus) bool { return cs.Cluster.MembersUp == 1 })
	if cs.Cluster.HasQuorum || cs.Cluster.Health.Verdict != snapshot.Critical {
		t.Errorf("cluster = %+v, want no quorum and critical", cs.Cluster)
	}
	// The survivor may still name the old leader for a moment; once it stops, no quorum names one.
	var last answer
	for i := 0; i < 100; i++ {
		if last = f.do(t, http.MethodGet, PathLeader, nil); last.code == http.StatusServiceUnavailable {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if last.code != http.StatusServiceUnavailable || last.resp.Status != "error" || !strings.Contains(last.resp.Error, "no leader") {
		t.Errorf("leader without quorum: %d %s", last.code, last.body)
	}
}

// grpcHandled sums grpc_server_handled_total over every method: the embedded etcd servers count
// each RPC they answer in the default registry.
func grpcHandled(t *testing.T) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum, found := 0.0, false
	for _, mf := range mfs {
		if mf.GetName() != "grpc_server_handled_total" {
			continue
		}
		found = true
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	if !found {
		t.Fatal("grpc_server_handled_total is not in the default registry: cannot count etcd RPCs")
	}
	return sum
}

func TestConcurrentRequestsShareSnapshots(t *testing.T) {
	c := etcdtest.Start(t, 3)
	c.Settle()
	f := newFixture(t, c.Endpoints(), 5*time.Second)
	f.status(t) // connect every client first, so dialing is not counted below

	// RPCs of one snapshot, counted by the servers (the least of a few, in case of background RPCs).
	perSnapshot := -1.0
	for range 3 {
		before := grpcHandled(t)
		f.status(t)
		if d := grpcHandled(t) - before; perSnapshot < 0 || d < perSnapshot {
			perSnapshot = d
		}
	}
	// MemberList once, then Status and one read per probe kind for every member.
	if want := float64(1 + 3*(1+len(snapshot.ProbeKinds))); perSnapshot != want {
		t.Fatalf("one snapshot cost %v RPCs, want %v", perSnapshot, want)
	}

	const n = 100
	// Hold the first snapshot until every request has reached the API, as a burst would.
	var arrived atomic.Int32
	inner := f.srv.Config.Handler
	f.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		inner.ServeHTTP(w, r)
	})
	f.gate = func() {
		for i := 0; i < 1000 && arrived.Load() < n; i++ {
			time.Sleep(5 * time.Millisecond)
		}
	}
	takesBefore := f.takes.Load()
	before := grpcHandled(t)
	var wg sync.WaitGroup
	codes := make([]int, n)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: n}}
	defer client.CloseIdleConnections()
	for i := range n {
		wg.Go(func() {
			resp, err := client.Get(f.srv.URL + PathStatus)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes[i] = resp.StatusCode
		})
	}
	wg.Wait()
	rpcs := grpcHandled(t) - before
	takes := f.takes.Load() - takesBefore
	for i, code := range codes {
		if code != http.StatusOK {
			t.Fatalf("request %d: status %d", i, code)
		}
	}
	t.Logf("%d concurrent requests: %d snapshots, %v etcd RPCs (one snapshot: %v)", n, takes, rpcs, perSnapshot)
	if rpcs > 3*perSnapshot {
		t.Errorf("%d concurrent requests cost %v etcd RPCs, more than 3 snapshots (%v each)", n, rpcs, perSnapshot)
	}
}

func TestBadRequests(t *testing.T) {
	c := etcdtest.Start(t, 1)
	f := newFixture(t, c.Endpoints(), 3*time.Second)
	for _, tc := range []struct {
		method, path string
		header       map[string]string
		code         int
		errText      string
	}{
		{"GET", "/api/v1/cluster/nope", nil, 404, "unknown path"},
		{"GET", "/api/", nil, 404, "unknown path"},
		{"GET", "/api/v2/cluster/status", nil, 404, "unknown path"},
		{"POST", PathStatus, nil, 405, "read-only"},
		{"PUT", PathLeader, nil, 405, "read-only"},
		{"DELETE", PathLatency, nil, 405, "read-only"},
		{"POST", PathReady, nil, 405, "read-only"},
		{"GET", PathStatus + "?member=m0", nil, 400, `unknown parameter "member"`},
		{"GET", PathLatency + "?endpoint=127.0.0.1:1", nil, 400, `unknown parameter "endpoint"`},
		{"GET", PathLatency + "?member=m0&member=m1", nil, 400, "given 2 times"},
		{"GET", PathLatency + "?member=%zz", nil, 400, "bad query"},
		{"GET", PathLatency + "?member=nosuch", nil, 404, `unknown member "nosuch"`},
		{"GET", PathStatus, map[string]string{"X-Prometheus-Scrape-Timeout-Seconds": "abc"}, 400, "X-Prometheus-Scrape-Timeout-Seconds"},
		{"GET", PathLeader, map[string]string{"X-Prometheus-Scrape-Timeout-Seconds": "-1"}, 400, "X-Prometheus-Scrape-Timeout-Seconds"},
		// NaN passes every range comparison; it once removed the deadline.
		{"GET", PathStatus, map[string]string{"X-Prometheus-Scrape-Timeout-Seconds": "NaN"}, 400, "X-Prometheus-Scrape-Timeout-Seconds"},
		{"GET", PathLatency, map[string]string{"X-Prometheus-Scrape-Timeout-Seconds": "+Inf"}, 400, "X-Prometheus-Scrape-Timeout-Seconds"},
		{"GET", PathLeader, map[string]string{"X-Prometheus-Scrape-Timeout-Seconds": "0"}, 400, "X-Prometheus-Scrape-Timeout-Seconds"},
	} {
		a := f.do(t, tc.method, tc.path, tc.header)
		if a.code != tc.code || a.resp.Status != "error" || !strings.Contains(a.resp.Error, tc.errText) {
			t.Errorf("%s %s: %d %s; want %d with an error containing %q", tc.method, tc.path, a.code, a.body, tc.code, tc.errText)
		}
		if tc.code == 405 && a.header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow = %q", tc.method, tc.path, a.header.Get("Allow"))
		}
	}

	// What does work: HEAD, the member filter by name and by ID, a valid timeout header.
	if a := f.do(t, http.MethodHead, PathStatus, nil); a.code != 200 || len(a.body) != 0 {
		t.Errorf("HEAD: %d %q", a.code, a.body)
	}
	id := snapshot.IDString(c.Members[0].ID())
	for _, q := range []string{"m0", id} {
		a := f.do(t, http.MethodGet, PathLatency+"?member="+q, map[string]string{"X-Prometheus-Scrape-Timeout-Seconds": "2"})
		var lat Latency
		if a.code != 200 || json.Unmarshal(a.data, &lat) != nil || len(lat.Members) != 1 || lat.Members[0].ID != id || !lat.Members[0].Probes[0].Success {
			t.Errorf("latency?member=%s: %d %s", q, a.code, a.body)
		}
	}
	for _, p := range []string{PathHealthy, PathReady} {
		if a := f.do(t, http.MethodGet, p, nil); a.code != 200 {
			t.Errorf("%s: %d %s", p, a.code, a.body)
		}
	}
	f.api.ShuttingDown()
	if a := f.do(t, http.MethodGet, PathReady, nil); a.code != 503 {
		t.Errorf("ready while shutting down: %d", a.code)
	}
	if a := f.do(t, http.MethodGet, PathHealthy, nil); a.code != 200 {
		t.Errorf("healthy while shutting down: %d", a.code)
	}
}

func TestUnreachableEtcd(t *testing.T) {
	f := newFixture(t, []string{fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))}, time.Second)
	for _, p := range []string{PathStatus, PathLeader, PathLatency} {
		start := time.Now()
		a := f.do(t, http.MethodGet, p, nil)
		if a.code != http.StatusServiceUnavailable || a.resp.Status != "error" || !strings.Contains(a.resp.Error, "etcd unreachable") {
			t.Errorf("%s: %d %s", p, a.code, a.body)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s took %s with a 1s timeout", p, d)
		}
	}
	// The exporter itself is fine: readiness does not depend on etcd.
	if a := f.do(t, http.MethodGet, PathReady, nil); a.code != 200 {
		t.Errorf("ready: %d", a.code)
	}
}

func TestRequestsAddNothingToRaftLog(t *testing.T) {
	c := etcdtest.Start(t, 3)
	c.Settle()
	f := newFixture(t, c.Endpoints(), 5*time.Second)
	applied := func() []uint64 {
		var out []uint64
		for _, m := range c.Members {
			out = append(out, m.Etcd().Server.AppliedIndex())
		}
		return out
	}
	before := applied()
	for range 5 {
		for _, p := range []string{PathStatus, PathLeader, PathLatency, PathLatency + "?member=m1"} {
			if a := f.do(t, http.MethodGet, p, nil); a.code != http.StatusOK {
				t.Fatalf("%s: %d %s", p, a.code, a.body)
			}
		}
	}
	if after := applied(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("applied raft index moved from %v to %v over 20 API requests", before, after)
	}
}

// hungListener accepts TCP connections and never answers, like a frozen etcd process.
func hungListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + l.Addr().String()
}

// The timeout header sets the deadline as for a scrape: a hung etcd costs the header's time,
// not the much longer fallback.
func TestTimeoutHeaderBoundsTheAnswer(t *testing.T) {
	f := newFixture(t, []string{hungListener(t)}, time.Minute)
	start := time.Now()
	a := f.do(t, http.MethodGet, PathStatus, map[string]string{"X-Prometheus-Scrape-Timeout-Seconds": "1.5"})
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("answer took %s with a 1.5s header and a 1m fallback", d)
	}
	if a.code != http.StatusServiceUnavailable || !strings.Contains(a.resp.Error, "etcd unreachable") {
		t.Errorf("hung etcd: %d %s", a.code, a.body)
	}
}
