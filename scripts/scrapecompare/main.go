// Command scrapecompare measures one etcd-monitor scrape against two references, interleaved and on
// warm connections, and prints medians and ratios (make scrape-compare runs it):
//
//   - limit: the etcd calls a scrape makes, made directly: one serializable MemberList, then on
//     every member at once Status, a linearizable and a serializable read, each on a kept
//     connection to that member. A scrape cannot be faster than this; the ratio is our overhead.
//   - native: one member's own /metrics, over a kept HTTP connection: what Prometheus already
//     scrapes from every member.
//   - snapshot: the exporter's own snapshot.Taker run in this process, the scrape without its HTTP
//     exposition (encoding, gzip, the exporter's Go and process metrics): what the scrape costs
//     beyond the limit on the etcd side alone.
//
// Rounds interleave the three so that a machine busy with something else slows all of them alike.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

func main() {
	scrapeURL := flag.String("scrape", "", "etcd-monitor /metrics URL")
	endpoints := flag.String("endpoints", "", "comma-separated client URLs of every member")
	rounds := flag.Int("rounds", 200, "interleaved rounds")
	warm := flag.Int("warm", 20, "rounds run first and not counted")
	flag.Parse()
	if *scrapeURL == "" || *endpoints == "" || *rounds < 1 || *warm < 0 {
		fmt.Fprintln(os.Stderr, "scrapecompare: need -scrape URL, -endpoints URLs and positive -rounds")
		os.Exit(2)
	}
	if err := run(*scrapeURL, strings.Split(*endpoints, ","), *rounds, *warm); err != nil {
		fmt.Fprintf(os.Stderr, "scrapecompare: %v\n", err)
		os.Exit(1)
	}
}

func run(scrapeURL string, endpoints []string, rounds, warm int) error {
	clients := make([]*clientv3.Client, len(endpoints))
	for i, ep := range endpoints {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return fmt.Errorf("connecting to %s: %w", ep, err)
		}
		defer c.Close()
		clients[i] = c
	}
	taker, err := snapshot.NewTaker(etcdconn.Config{Endpoints: endpoints})
	if err != nil {
		return err
	}
	defer taker.Close()
	httpc := &http.Client{Timeout: 10 * time.Second}
	native := strings.TrimSuffix(endpoints[0], "/") + "/metrics"

	type sample struct{ scrape, limit, native, snap time.Duration }
	var samples []sample
	for i := range warm + rounds {
		var s sample
		var err error
		// Rotate the order inside a round so that none is always first after the idle gap.
		steps := []func() error{
			func() (e error) { s.scrape, e = get(httpc, scrapeURL); return },
			func() (e error) { s.limit, e = limit(clients); return },
			func() (e error) { s.native, e = get(httpc, native); return },
			func() (e error) { s.snap, e = take(taker); return },
		}
		for j := range steps {
			if err = steps[(i+j)%len(steps)](); err != nil {
				return err
			}
		}
		if i >= warm {
			samples = append(samples, s)
		}
	}
	med := func(f func(sample) time.Duration) time.Duration {
		d := make([]time.Duration, len(samples))
		for i, s := range samples {
			d[i] = f(s)
		}
		slices.Sort(d)
		return d[len(d)/2]
	}
	sc, li, na := med(func(s sample) time.Duration { return s.scrape }), med(func(s sample) time.Duration { return s.limit }), med(func(s sample) time.Duration { return s.native })
	sn := med(func(s sample) time.Duration { return s.snap })
	fmt.Printf("median of %d interleaved rounds (after %d warm-up rounds), %d members, kept connections:\n", rounds, warm, len(endpoints))
	fmt.Printf("  etcd-monitor scrape (GET /metrics):                   %8.3f ms\n", ms(sc))
	fmt.Printf("  limit: MemberList, then Status + 2 reads per member:  %8.3f ms\n", ms(li))
	fmt.Printf("  one member's native /metrics:                         %8.3f ms\n", ms(na))
	fmt.Printf("  the exporter's snapshot alone (no HTTP exposition):   %8.3f ms\n", ms(sn))
	fmt.Printf("  ratio scrape/limit:    %.2f\n", float64(sc)/float64(li))
	fmt.Printf("  ratio scrape/native:   %.2f\n", float64(sc)/float64(na))
	fmt.Printf("  ratio snapshot/limit:  %.2f\n", float64(sn)/float64(li))
	return nil
}

// take runs one snapshot as a scrape does (Status and both probes on every member).
func take(t *snapshot.Taker) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	s := t.Take(ctx, snapshot.Needs{Status: true, Probes: true})
	d := time.Since(start)
	if up := s.Cluster().MembersUp; up != len(s.Members) || up == 0 {
		return 0, fmt.Errorf("snapshot: %d of %d members up", up, len(s.Members))
	}
	return d, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func get(c *http.Client, url string) (time.Duration, error) {
	start := time.Now()
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return time.Since(start), nil
}

// limit makes the calls of one scrape directly, as fast as a client can.
func limit(clients []*clientv3.Client) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := clients[0].MemberList(ctx, clientv3.WithSerializable()); err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3*len(clients))
	for _, c := range clients {
		wg.Go(func() {
			_, err := pb.NewMaintenanceClient(c.ActiveConnection()).Status(ctx, &pb.StatusRequest{})
			errs <- err
		})
		wg.Go(func() { _, err := c.Get(ctx, "health", clientv3.WithCountOnly()); errs <- err })
		wg.Go(func() {
			_, err := c.Get(ctx, "health", clientv3.WithCountOnly(), clientv3.WithSerializable())
			errs <- err
		})
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	for err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return d, nil
}
