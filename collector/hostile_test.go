package collector

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// badName is a member name etcd stores as given: not valid UTF-8, which Prometheus refuses as a
// label value.
const badName = "m\xff0"

// TestMemberNameNotUTF8 runs a real member named with an invalid byte. Before label values were
// sanitized, every scrape panicked in a collector goroutine and took the process down; now the
// name is served with U+FFFD for the bad byte, and every collector succeeds. (URLs cannot be made
// to carry one through etcd 3.6: it stores a peer URL re-encoded, "http://m\xff.x:2380" as
// "http://m%FF.x:2380"; they are sanitized all the same.)
func TestMemberNameNotUTF8(t *testing.T) {
	c := etcdtest.Start(t, 1, func(_ int, cfg *embed.Config) {
		cfg.Name = badName
		cfg.InitialCluster = strings.Replace(cfg.InitialCluster, "m0=", badName+"=", 1)
	})
	cli := client(t, c.Endpoints())
	ml, err := cli.MemberList(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(ml.Members) != 1 || ml.Members[0].Name != badName {
		t.Fatalf("etcd did not keep the name as given: %+v", ml.Members)
	}
	e, _ := newExporter(t, etcdconn.Config{Endpoints: c.Endpoints()})
	for range 2 {
		v := values(t, registryFor(e, 5*time.Second))
		for _, k := range []string{
			"etcd_monitor_up{}",
			"etcd_monitor_member_up{member=\"m\uFFFD0\"}",
			"etcd_monitor_member_probe_success{member=\"m\uFFFD0\",probe=\"read_linearizable\"}",
			"etcd_monitor_member_info{is_learner=\"false\",member=\"m\uFFFD0\"}",
			"etcd_monitor_member_version_info{member=\"m\uFFFD0\",version=\"3.6.16\"}",
		} {
			if v[k] != 1 {
				t.Errorf("%s = %v, want 1; got %v", k, v[k], v)
			}
		}
		for _, name := range e.Collectors() {
			if got := v[`etcd_monitor_scrape_collector_success{collector="`+name+`"}`]; got != 1 {
				t.Errorf("collector %s success = %v, want 1", name, got)
			}
			if got := v[`etcd_monitor_scrape_metric_errors_total{collector="`+name+`"}`]; got != 0 {
				t.Errorf("collector %s metric errors = %v, want 0", name, got)
			}
		}
	}
}

func TestLabelValue(t *testing.T) {
	long := strings.Repeat("é", maxLabelValue) // two bytes each: the cut falls inside a rune
	for _, tc := range []struct{ in, want string }{
		{"m0", "m0"},
		{"", ""},
		{"m\xff0", "m\uFFFD0"},
		{"\xc3", "\uFFFD"},             // a truncated sequence
		{"a\xed\xa0\x80b", "a\uFFFDb"}, // an encoded surrogate
		{strings.Repeat("x", maxLabelValue), strings.Repeat("x", maxLabelValue)},
		{strings.Repeat("x", maxLabelValue+1), strings.Repeat("x", maxLabelValue-len(ellipsis)) + ellipsis},
	} {
		if got := labelValue(tc.in); got != tc.want {
			t.Errorf("labelValue(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	got := labelValue(long)
	if !utf8.ValidString(got) || len(got) > maxLabelValue || !strings.HasSuffix(got, ellipsis) {
		t.Errorf("labelValue of %d bytes = %d bytes, valid %v", len(long), len(got), utf8.ValidString(got))
	}
	got = labelValue(strings.Repeat("\xff", maxLabelValue))
	if !utf8.ValidString(got) || len(got) > maxLabelValue {
		t.Errorf("labelValue of invalid bytes = %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
}

// faultyCollector is only registered in this package's tests (never enabled by default): it sends
// one good series, one that cannot be built, then panics, standing in for a bug that meets input
// nobody foresaw.
type faultyCollector struct{ good, bad *prometheus.Desc }

func init() {
	registerCollector("test_faulty", false, snapshot.Needs{}, phaseMemberList, func() Collector {
		return &faultyCollector{
			good: prometheus.NewDesc("test_faulty_good", "A series built before the fault.", nil, nil),
			bad:  prometheus.NewDesc("test_faulty_bad", "A series given too few label values.", []string{"a", "b"}, nil),
		}
	})
}

func (c *faultyCollector) Update(_ *snapshot.Snapshot, out Sink) error {
	out.Gauge(c.good, 1)
	out.Gauge(c.bad, 1, "only-one")
	var m map[string]int
	//lint:ignore SA5000 the nil map write is the point: a real runtime panic inside a collector
	m["boom"]++
	return errors.New("unreachable")
}

// TestFaultyCollectorCostsOnlyItself: a series that cannot be built and a panic in one collector
// are counted, and the scrape still serves every other collector's series.
func TestFaultyCollectorCostsOnlyItself(t *testing.T) {
	c := etcdtest.Start(t, 1)
	taker, err := snapshot.NewTaker(etcdconn.Config{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(taker.Close)
	e, err := New(taker, []string{"status", "test_faulty", "cluster"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		v := values(t, registryFor(e, 5*time.Second))
		for k, want := range map[string]float64{
			"etcd_monitor_up{}":                                                   1,
			`etcd_monitor_member_up{member="m0"}`:                                 1,
			"etcd_monitor_cluster_has_quorum{}":                                   1,
			"test_faulty_good{}":                                                  1,
			`etcd_monitor_scrape_collector_success{collector="status"}`:           1,
			`etcd_monitor_scrape_collector_success{collector="test_faulty"}`:      0,
			`etcd_monitor_scrape_metric_errors_total{collector="test_faulty"}`:    float64(i + 1),
			`etcd_monitor_scrape_collector_panics_total{collector="test_faulty"}`: float64(i + 1),
			`etcd_monitor_scrape_metric_errors_total{collector="status"}`:         0,
			`etcd_monitor_scrape_collector_panics_total{collector="status"}`:      0,
		} {
			got, ok := v[k]
			if !ok || got != want {
				t.Errorf("scrape %d: %s = %v (present %v), want %v", i, k, got, ok, want)
			}
		}
		if _, ok := v["test_faulty_bad{}"]; ok {
			t.Errorf("the series that could not be built was served")
		}
	}
}
