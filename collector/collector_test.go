package collector

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/goleak"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// newExporter builds an exporter over endpoints with every default collector.
func newExporter(t *testing.T, conn etcdconn.Config) (*Exporter, *snapshot.Taker) {
	t.Helper()
	taker, err := snapshot.NewTaker(conn)
	if err != nil {
		t.Fatalf("NewTaker: %v", err)
	}
	t.Cleanup(taker.Close)
	e, err := New(taker, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(e.Close)
	return e, taker
}

// registryFor returns a registry that takes a fresh snapshot with the given timeout at each Gather.
func registryFor(e *Exporter, timeout time.Duration) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		reg := prometheus.NewRegistry()
		reg.MustRegister(e.Scrape(ctx))
		return reg.Gather()
	})
}

// values gathers once and returns metric name+labels -> value.
func values(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var parts []string
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "member_id" || lp.GetName() == "client_urls" || lp.GetName() == "peer_urls" {
					continue
				}
				parts = append(parts, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			v := m.GetGauge().GetValue()
			if mf.GetType() == dto.MetricType_COUNTER {
				v = m.GetCounter().GetValue()
			}
			out[mf.GetName()+"{"+strings.Join(parts, ",")+"}"] = v
		}
	}
	return out
}

func TestSingleMemberExposition(t *testing.T) {
	c := etcdtest.Start(t, 1)
	m := c.Members[0]
	e, _ := newExporter(t, etcdconn.Config{Endpoints: c.Endpoints()})
	id := snapshot.IDString(m.ID())
	expected := fmt.Sprintf(`
# HELP etcd_monitor_up 1 when at least one etcd endpoint answered this scrape, else 0.
# TYPE etcd_monitor_up gauge
etcd_monitor_up 1
# HELP etcd_monitor_cluster_members Members in the member list, learners included.
# TYPE etcd_monitor_cluster_members gauge
etcd_monitor_cluster_members 1
# HELP etcd_monitor_cluster_learners Learner (non-voting) members in the member list.
# TYPE etcd_monitor_cluster_learners gauge
etcd_monitor_cluster_learners 0
# HELP etcd_monitor_cluster_members_up Members that answered Status within the scrape deadline, learners included.
# TYPE etcd_monitor_cluster_members_up gauge
etcd_monitor_cluster_members_up 1
# HELP etcd_monitor_cluster_voting_members_up Voting members (learners excluded) that answered Status within the scrape deadline; compare with quorum.
# TYPE etcd_monitor_cluster_voting_members_up gauge
etcd_monitor_cluster_voting_members_up 1
# HELP etcd_monitor_cluster_quorum Voting members needed for quorum.
# TYPE etcd_monitor_cluster_quorum gauge
etcd_monitor_cluster_quorum 1
# HELP etcd_monitor_cluster_has_quorum 1 when at least a quorum of voting members is up and names the same leader.
# TYPE etcd_monitor_cluster_has_quorum gauge
etcd_monitor_cluster_has_quorum 1
# HELP etcd_monitor_cluster_leaders Distinct leader IDs reported by the members that answered: 0 is no leader, 2 or more means members disagree (a stale leader cut off from its peers).
# TYPE etcd_monitor_cluster_leaders gauge
etcd_monitor_cluster_leaders 1
# HELP etcd_monitor_member_up 1 when the member answered Status within the scrape deadline, else 0.
# TYPE etcd_monitor_member_up gauge
etcd_monitor_member_up{member="m0",member_id="%[1]s"} 1
# HELP etcd_monitor_member_is_leader 1 when the member reports itself as the raft leader.
# TYPE etcd_monitor_member_is_leader gauge
etcd_monitor_member_is_leader{member="m0",member_id="%[1]s"} 1
# HELP etcd_monitor_member_has_leader 1 when the member knows a leader, in its own view.
# TYPE etcd_monitor_member_has_leader gauge
etcd_monitor_member_has_leader{member="m0",member_id="%[1]s"} 1
# HELP etcd_monitor_member_alarm 1 when the alarm is raised for the member, as reported by any member that answered; both alarm types are emitted for every member.
# TYPE etcd_monitor_member_alarm gauge
etcd_monitor_member_alarm{alarm="CORRUPT",member="m0",member_id="%[1]s"} 0
etcd_monitor_member_alarm{alarm="NOSPACE",member="m0",member_id="%[1]s"} 0
# HELP etcd_monitor_member_probe_success 1 when this scrape's probe read against the member succeeded, else 0.
# TYPE etcd_monitor_member_probe_success gauge
etcd_monitor_member_probe_success{member="m0",member_id="%[1]s",probe="read_linearizable"} 1
etcd_monitor_member_probe_success{member="m0",member_id="%[1]s",probe="read_serializable"} 1
# HELP etcd_monitor_member_db_quota_bytes Backend quota (--quota-backend-bytes) the member reports; etcd 3.6 and later.
# TYPE etcd_monitor_member_db_quota_bytes gauge
etcd_monitor_member_db_quota_bytes{member="m0",member_id="%[1]s"} 2.147483648e+09
# HELP etcd_monitor_member_info Member metadata from the member list, present while the member is in the list, up or down.
# TYPE etcd_monitor_member_info gauge
etcd_monitor_member_info{client_urls="%[2]s",is_learner="false",member="m0",member_id="%[1]s",peer_urls="%[3]s"} 1
# HELP etcd_monitor_member_version_info 1 with the etcd version the member reports; absent while the member does not answer Status.
# TYPE etcd_monitor_member_version_info gauge
etcd_monitor_member_version_info{member="m0",member_id="%[1]s",version="3.6.16"} 1
# HELP etcd_monitor_scrape_collector_success 1 when the collector obtained its data from etcd, else 0.
# TYPE etcd_monitor_scrape_collector_success gauge
etcd_monitor_scrape_collector_success{collector="alarms"} 1
etcd_monitor_scrape_collector_success{collector="cluster"} 1
etcd_monitor_scrape_collector_success{collector="consistency"} 1
etcd_monitor_scrape_collector_success{collector="members"} 1
etcd_monitor_scrape_collector_success{collector="probe"} 1
etcd_monitor_scrape_collector_success{collector="status"} 1
# HELP etcd_monitor_scrape_metric_errors_total Series a collector could not build since the exporter started (a value from etcd Prometheus refuses); the series is dropped, the rest of the scrape served.
# TYPE etcd_monitor_scrape_metric_errors_total counter
etcd_monitor_scrape_metric_errors_total{collector="alarms"} 0
etcd_monitor_scrape_metric_errors_total{collector="cluster"} 0
etcd_monitor_scrape_metric_errors_total{collector="consistency"} 0
etcd_monitor_scrape_metric_errors_total{collector="members"} 0
etcd_monitor_scrape_metric_errors_total{collector="probe"} 0
etcd_monitor_scrape_metric_errors_total{collector="status"} 0
# HELP etcd_monitor_scrape_collector_panics_total Panics recovered in a collector since the exporter started; the scrape that met one reports the collector failed.
# TYPE etcd_monitor_scrape_collector_panics_total counter
etcd_monitor_scrape_collector_panics_total{collector="alarms"} 0
etcd_monitor_scrape_collector_panics_total{collector="cluster"} 0
etcd_monitor_scrape_collector_panics_total{collector="consistency"} 0
etcd_monitor_scrape_collector_panics_total{collector="members"} 0
etcd_monitor_scrape_collector_panics_total{collector="probe"} 0
etcd_monitor_scrape_collector_panics_total{collector="status"} 0
`, id, m.ClientURL, m.Etcd().Config().AdvertisePeerUrls[0].String())
	names := []string{
		"etcd_monitor_up", "etcd_monitor_cluster_members", "etcd_monitor_cluster_learners", "etcd_monitor_cluster_members_up", "etcd_monitor_cluster_voting_members_up",
		"etcd_monitor_cluster_quorum", "etcd_monitor_cluster_has_quorum", "etcd_monitor_cluster_leaders",
		"etcd_monitor_member_up", "etcd_monitor_member_is_leader", "etcd_monitor_member_has_leader", "etcd_monitor_member_alarm",
		"etcd_monitor_member_probe_success", "etcd_monitor_member_db_quota_bytes", "etcd_monitor_member_info", "etcd_monitor_member_version_info",
		"etcd_monitor_scrape_collector_success", "etcd_monitor_scrape_metric_errors_total", "etcd_monitor_scrape_collector_panics_total",
	}
	if err := testutil.GatherAndCompare(registryFor(e, 5*time.Second), strings.NewReader(expected), names...); err != nil {
		t.Fatal(err)
	}

	// The values that move must agree with what etcd itself reports.
	cli := client(t, c.Endpoints())
	put, err := cli.Put(context.Background(), "/user/key", "v")
	if err != nil {
		t.Fatal(err)
	}
	v := values(t, registryFor(e, 5*time.Second))
	if got := v[`etcd_monitor_member_revision{member="m0"}`]; got != float64(put.Header.Revision) {
		t.Errorf("revision = %v, want %d", got, put.Header.Revision)
	}
	st, err := cli.Status(context.Background(), m.ClientURL)
	if err != nil {
		t.Fatal(err)
	}
	if got := v[`etcd_monitor_member_raft_term{member="m0"}`]; got != float64(st.RaftTerm) {
		t.Errorf("raft_term = %v, want %d", got, st.RaftTerm)
	}
	if got := v[`etcd_monitor_member_db_size_bytes{member="m0"}`]; got <= 0 || got != float64(st.DbSize) {
		t.Errorf("db_size_bytes = %v, want %d", got, st.DbSize)
	}
	for _, k := range []string{"read_linearizable", "read_serializable"} {
		if got, ok := v[`etcd_monitor_member_probe_duration_seconds{member="m0",probe="`+k+`"}`]; !ok || got <= 0 {
			t.Errorf("probe %s duration = %v (present %v), want > 0", k, got, ok)
		}
	}
}

func client(t *testing.T, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func TestScrapesAddNothingToRaftLog(t *testing.T) {
	c := etcdtest.Start(t, 3)
	c.Settle()
	e, _ := newExporter(t, etcdconn.Config{Endpoints: c.Endpoints()})
	g := registryFor(e, 5*time.Second)
	before := values(t, g)
	for range 5 {
		values(t, g)
	}
	after := values(t, g)
	for _, m := range c.Members {
		k := `etcd_monitor_member_raft_index{member="` + m.Name + `"}`
		if before[k] == 0 || before[k] != after[k] {
			t.Errorf("%s moved from %v to %v over 6 scrapes", k, before[k], after[k])
		}
	}
}

func TestThreeMembersStoppedMemberAndLeaderChange(t *testing.T) {
	c := etcdtest.Start(t, 3)
	e, _ := newExporter(t, etcdconn.Config{Endpoints: c.Endpoints()})
	g := registryFor(e, 3*time.Second)

	v := values(t, g)
	if v["etcd_monitor_cluster_members_up{}"] != 3 || v["etcd_monitor_cluster_leaders{}"] != 1 || v["etcd_monitor_cluster_has_quorum{}"] != 1 {
		t.Fatalf("healthy cluster: members_up=%v leaders=%v has_quorum=%v", v["etcd_monitor_cluster_members_up{}"], v["etcd_monitor_cluster_leaders{}"], v["etcd_monitor_cluster_has_quorum{}"])
	}
	leaders := 0
	var leader *etcdtest.Member
	for _, m := range c.Members {
		if v[`etcd_monitor_member_is_leader{member="`+m.Name+`"}`] == 1 {
			leaders++
			leader = m
		}
	}
	if leaders != 1 {
		t.Fatalf("%d members claim leadership, want 1", leaders)
	}
	term := v[`etcd_monitor_member_raft_term{member="`+leader.Name+`"}`]

	leader.Stop()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v = values(t, g)
		newLeaders := 0
		for _, m := range c.Members {
			if m != leader && v[`etcd_monitor_member_is_leader{member="`+m.Name+`"}`] == 1 {
				newLeaders++
			}
		}
		if newLeaders == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new leader after 20s: %v", v)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := v[`etcd_monitor_member_up{member="`+leader.Name+`"}`]; got != 0 {
		t.Errorf("stopped member up = %v", got)
	}
	if v["etcd_monitor_cluster_members{}"] != 3 || v["etcd_monitor_cluster_members_up{}"] != 2 || v["etcd_monitor_cluster_has_quorum{}"] != 1 || v["etcd_monitor_up{}"] != 1 {
		t.Errorf("after stop: members=%v up=%v has_quorum=%v", v["etcd_monitor_cluster_members{}"], v["etcd_monitor_cluster_members_up{}"], v["etcd_monitor_cluster_has_quorum{}"])
	}
	for _, m := range c.Members {
		if m == leader {
			continue
		}
		if got := v[`etcd_monitor_member_raft_term{member="`+m.Name+`"}`]; got <= term {
			t.Errorf("%s raft term %v did not rise above %v", m.Name, got, term)
		}
	}
	if _, ok := v[`etcd_monitor_member_info{is_learner="false",member="`+leader.Name+`"}`]; !ok {
		t.Errorf("stopped member missing from member_info: %v", v)
	}

	// Two of three down: membership still known, no quorum, linearizable probe fails.
	var survivor *etcdtest.Member
	for _, m := range c.Members {
		if m != leader && survivor == nil {
			survivor = m
		} else if m != leader {
			m.Stop()
		}
	}
	deadline = time.Now().Add(20 * time.Second)
	for {
		v = values(t, g)
		if v["etcd_monitor_cluster_has_quorum{}"] == 0 && v[`etcd_monitor_member_probe_success{member="`+survivor.Name+`",probe="read_linearizable"}`] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("quorum still reported after 20s: %v", v)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if v["etcd_monitor_cluster_members{}"] != 3 || v["etcd_monitor_up{}"] != 1 || v["etcd_monitor_cluster_members_up{}"] != 1 {
		t.Errorf("without quorum: members=%v up=%v members_up=%v", v["etcd_monitor_cluster_members{}"], v["etcd_monitor_up{}"], v["etcd_monitor_cluster_members_up{}"])
	}
	if got := v[`etcd_monitor_member_probe_success{member="`+survivor.Name+`",probe="read_serializable"}`]; got != 1 {
		t.Errorf("serializable probe on survivor = %v, want 1", got)
	}
}

// hungListener accepts TCP connections and never answers: a stopped process or a frozen disk.
func hungListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(done)
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + l.Addr().String()
}

func TestHungMemberDoesNotDelayScrape(t *testing.T) {
	hung := hungListener(t)
	// Member m2 advertises a client URL that accepts connections and never answers.
	c := etcdtest.Start(t, 3, func(i int, cfg *embed.Config) {
		if i == 2 {
			u, _ := mustParse(hung)
			cfg.AdvertiseClientUrls = []url.URL{u}
		}
	})
	// The hung endpoint is configured first, so MemberList has to fail over too.
	e, taker := newExporter(t, etcdconn.Config{Endpoints: []string{hung, c.Members[0].ClientURL}})
	srv := httptest.NewServer(e.Handler(HandlerOpts{Timeout: 10 * time.Second, Offset: 500 * time.Millisecond}))
	defer srv.Close()

	for range 2 {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", "2")
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp)
		elapsed := time.Since(start)
		if elapsed >= 2*time.Second {
			t.Errorf("scrape took %v, beyond Prometheus' 2s timeout", elapsed)
		}
		for _, want := range []string{
			`etcd_monitor_member_up{member="m2",`, // present, checked below
			"etcd_monitor_cluster_members_up 2",
			"etcd_monitor_cluster_has_quorum 1",
			"etcd_monitor_up 1",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("scrape lacks %q:\n%s", want, body)
			}
		}
		for _, m := range []string{"m0", "m1"} {
			if !strings.Contains(body, `etcd_monitor_member_up{member="`+m+`",member_id=`) || !lineHasValue(body, `etcd_monitor_member_up{member="`+m+`"`, "1") {
				t.Errorf("%s not up:\n%s", m, body)
			}
		}
		if !lineHasValue(body, `etcd_monitor_member_up{member="m2"`, "0") {
			t.Errorf("hung member not reported down:\n%s", body)
		}
	}
	srv.Close()
	http.DefaultClient.CloseIdleConnections()
	taker.Close()
}

// TestHungEndpointLeavesNothingBehind runs without an in-process etcd, whose own goroutines
// would hide ours: after scrapes against a peer that never answers and Close, nothing remains.
func TestHungEndpointLeavesNothingBehind(t *testing.T) {
	hung := hungListener(t)
	ignore := goleak.IgnoreCurrent()
	taker, err := snapshot.NewTaker(etcdconn.Config{Endpoints: []string{hung}})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(taker, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		start := time.Now()
		v := values(t, registryFor(e, 300*time.Millisecond))
		if v["etcd_monitor_up{}"] != 0 {
			t.Errorf("hung endpoint reported up: %v", v)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("scrape with a 300ms deadline took %v", d)
		}
	}
	e.Close()
	taker.Close()
	goleak.VerifyNone(t, ignore)
}

func mustParse(s string) (url.URL, error) {
	u, err := url.Parse(s)
	return *u, err
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var sb strings.Builder
	if _, err := io.Copy(&sb, resp.Body); err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

// lineHasValue reports whether a line starting with prefix ends with value.
func lineHasValue(body, prefix, value string) bool {
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, prefix) && strings.HasSuffix(l, " "+value) {
			return true
		}
	}
	return false
}

func TestUnreachableEtcdIsUpZero(t *testing.T) {
	port := etcdtest.FreePort(t)
	e, _ := newExporter(t, etcdconn.Config{Endpoints: []string{fmt.Sprintf("127.0.0.1:%d", port)}})
	v := values(t, registryFor(e, 500*time.Millisecond))
	if v["etcd_monitor_up{}"] != 0 || v[`etcd_monitor_scrape_collector_success{collector="members"}`] != 0 {
		t.Fatalf("unreachable etcd: %v", v)
	}
	for k := range v {
		if strings.HasPrefix(k, "etcd_monitor_member_") || strings.HasPrefix(k, "etcd_monitor_cluster_") {
			t.Errorf("unexpected series without etcd: %s", k)
		}
	}
}

// BenchmarkScrape measures one full scrape (snapshot of every member plus exposition) of a
// 3-member embedded cluster.
func BenchmarkScrape(b *testing.B) {
	c := etcdtest.Start(b, 3)
	taker, err := snapshot.NewTaker(etcdconn.Config{Endpoints: c.Endpoints()})
	if err != nil {
		b.Fatal(err)
	}
	defer taker.Close()
	e, err := New(taker, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	g := registryFor(e, 5*time.Second)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
