// Package pushgw sends a command's results to a Prometheus Pushgateway. The benchmark and the
// snapshot and defrag commands share it so that both push with the same semantics, timeout and errors.
package pushgw

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"
)

// Timeout bounds one push, so that an unreachable Pushgateway cannot hold a finished run.
const Timeout = 30 * time.Second

// Label is one grouping label; grouping labels are kept in the order given, which is the order
// of the Pushgateway's URL path.
type Label struct{ Name, Value string }

// Push sends what c collects to the Pushgateway at url under job, grouped by grouping. It uses
// POST (add semantics): only the series pushed now replace their namesakes in the group, so a
// failed run that does not push a last-success timestamp leaves the previous one in place for
// alerting.
func Push(ctx context.Context, url, job string, grouping []Label, c prometheus.Collector) error {
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		return fmt.Errorf("building the Pushgateway metrics: %w", err)
	}
	// A transport of its own, closed after the push: a one-shot command keeps no idle connection
	// (and no goroutine) behind.
	hc := &http.Client{Timeout: Timeout, Transport: http.DefaultTransport.(*http.Transport).Clone()}
	defer hc.CloseIdleConnections()
	p := push.New(url, job).Gatherer(reg).Client(hc)
	for _, l := range grouping {
		p = p.Grouping(l.Name, l.Value)
	}
	if err := p.AddContext(ctx); err != nil {
		return fmt.Errorf("pushing results to the Pushgateway at %s: %w", url, err)
	}
	return nil
}
