//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// ClusterLabel is the `cluster` label Prometheus puts on every target.
const ClusterLabel = "e2e"

// ---------------------------------------------------------------------------------------------
// etcd-monitor

// Exporter is a running etcd-monitor.
type Exporter struct {
	*Process
	Addr string // host:port, the Prometheus target
	URL  string
}

// StartExporter runs <repo>/bin/etcd-monitor (or $ETCD_MONITOR_BIN) with args plus
// --web.listen-address on a free port, and waits until /metrics answers.
func (e *Env) StartExporter(args ...string) *Exporter {
	e.t.Helper()
	bin := Binary(e.t, BinExporter)
	addr := fmt.Sprintf("127.0.0.1:%d", FreePorts(e.t, 1)[0])
	x := &Exporter{Addr: addr, URL: "http://" + addr}
	x.Process = e.Start("etcd-monitor", bin, append(args, "--web.listen-address="+addr)...)
	x.WaitHTTP(x.URL+"/metrics", startTimeout)
	return x
}

// ---------------------------------------------------------------------------------------------
// Pushgateway

// Pushgateway is a running Pushgateway.
type Pushgateway struct {
	*Process
	Addr, URL string
}

// StartPushgateway starts a Pushgateway (no persistence) and waits until it is ready.
func (e *Env) StartPushgateway() *Pushgateway {
	e.t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", FreePorts(e.t, 1)[0])
	g := &Pushgateway{Addr: addr, URL: "http://" + addr}
	g.Process = e.Start("pushgateway", Binary(e.t, BinPushgateway), "--web.listen-address="+addr)
	g.WaitHTTP(g.URL+"/-/ready", startTimeout)
	return g
}

// ---------------------------------------------------------------------------------------------
// Alertmanager and the webhook receiver

// WebhookAlert is one alert as Alertmanager's webhook payload carries it.
type WebhookAlert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
	Fingerprint string            `json:"fingerprint"`
}

// WebhookMessage is one notification; Receiver is the Alertmanager receiver that sent it
// (the harness points each receiver at its own path).
type WebhookMessage struct {
	Receiver     string            `json:"receiver"`
	Status       string            `json:"status"`
	Alerts       []WebhookAlert    `json:"alerts"`
	GroupLabels  map[string]string `json:"groupLabels"`
	CommonLabels map[string]string `json:"commonLabels"`
	Path         string            `json:"-"`
	Received     time.Time         `json:"-"`
}

// Webhook is an in-test HTTP server recording every notification it receives.
type Webhook struct {
	URL string
	t   testing.TB

	mu   sync.Mutex
	msgs []WebhookMessage
}

// NewWebhook starts the recording server on loopback; it is closed at cleanup.
func NewWebhook(t testing.TB) *Webhook {
	w := &Webhook{t: t}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var m WebhookMessage
		if err := json.NewDecoder(http.MaxBytesReader(rw, r.Body, 4<<20)).Decode(&m); err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		m.Path, m.Received = r.URL.Path, time.Now()
		w.mu.Lock()
		w.msgs = append(w.msgs, m)
		w.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	w.URL = srv.URL
	return w
}

// Messages returns a copy of everything received so far.
func (w *Webhook) Messages() []WebhookMessage {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]WebhookMessage(nil), w.msgs...)
}

// WaitAlert waits until a notification from receiver (any receiver when "") carries an alert
// named alertname with the given status ("firing" or "resolved") and returns that alert.
func (w *Webhook) WaitAlert(timeout time.Duration, receiver, alertname, status string) (WebhookMessage, WebhookAlert) {
	w.t.Helper()
	return w.WaitAlertLabels(timeout, receiver, alertname, status, nil)
}

// WaitAlertLabels is WaitAlert for an alert that also carries every label in labels.
func (w *Webhook) WaitAlertLabels(timeout time.Duration, receiver, alertname, status string, labels map[string]string) (WebhookMessage, WebhookAlert) {
	w.t.Helper()
	var gotMsg WebhookMessage
	var got WebhookAlert
	matches := func(a WebhookAlert) bool {
		for k, v := range labels {
			if a.Labels[k] != v {
				return false
			}
		}
		return a.Labels["alertname"] == alertname && a.Status == status
	}
	Eventually(w.t, timeout, fmt.Sprintf("webhook: %s%v %s via receiver %q", alertname, labels, status, receiver), func() (bool, string) {
		msgs := w.Messages()
		var seen []string
		for _, m := range msgs {
			for _, a := range m.Alerts {
				seen = append(seen, m.Receiver+":"+a.Labels["alertname"]+":"+a.Status)
				if (receiver == "" || m.Receiver == receiver) && matches(a) {
					gotMsg, got = m, a
					return true, ""
				}
			}
		}
		return false, fmt.Sprintf("%d notifications: %v", len(msgs), seen)
	})
	return gotMsg, got
}

// AlertmanagerOptions configures the harness' Alertmanager.
type AlertmanagerOptions struct {
	// ConfigFile is a routing config (e.g. alerts/alertmanager.yml). Every receiver's
	// integrations are replaced by one webhook to Webhook.URL/<receiver name>; routes and
	// inhibitions are kept. Empty: one receiver "default".
	ConfigFile string
	// KeepTimings keeps the config's group_wait/group_interval/repeat_interval; by default they
	// become 1s/1s/1h on every route that sets them so a notification arrives within seconds.
	KeepTimings bool
}

// Alertmanager is a running Alertmanager with its recording webhook.
type Alertmanager struct {
	*Process
	Addr, URL  string
	ConfigPath string
	Webhook    *Webhook
}

// StartAlertmanager writes the rewritten config, starts Alertmanager (clustering off) and waits
// until it is ready.
func (e *Env) StartAlertmanager(opts AlertmanagerOptions) *Alertmanager {
	e.t.Helper()
	wh := NewWebhook(e.t)
	cfg := map[string]any{
		"route":     map[string]any{"receiver": "default"},
		"receivers": []any{map[string]any{"name": "default"}},
	}
	if opts.ConfigFile != "" {
		b, err := os.ReadFile(opts.ConfigFile)
		if err != nil {
			e.t.Fatalf("e2e: %v", err)
		}
		cfg = map[string]any{}
		if err := yaml.Unmarshal(b, &cfg); err != nil {
			e.t.Fatalf("e2e: parsing %s: %v", opts.ConfigFile, err)
		}
	}
	if err := rewriteAlertmanagerConfig(cfg, wh.URL, !opts.KeepTimings); err != nil {
		e.t.Fatalf("e2e: rewriting %s: %v", opts.ConfigFile, err)
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	path := e.WriteFile("alertmanager.yml", out)
	addr := fmt.Sprintf("127.0.0.1:%d", FreePorts(e.t, 1)[0])
	am := &Alertmanager{Addr: addr, URL: "http://" + addr, ConfigPath: path, Webhook: wh}
	am.Process = e.Start("alertmanager", Binary(e.t, BinAlertmanager),
		"--config.file="+path,
		"--storage.path="+e.Subdir("alertmanager"),
		"--web.listen-address="+addr,
		"--cluster.listen-address=", // no gossip port: a single instance on loopback
		"--log.level=debug",         // every alert received and every notification sent
	)
	am.WaitHTTP(am.URL+"/-/ready", startTimeout)
	return am
}

// rewriteAlertmanagerConfig points every receiver at the webhook and drops what would reach
// outside the machine or read secrets that do not exist here (global SMTP/Slack settings,
// templates).
func rewriteAlertmanagerConfig(cfg map[string]any, webhookURL string, shorten bool) error {
	if g, ok := cfg["global"].(map[string]any); ok {
		kept := map[string]any{}
		if v, ok := g["resolve_timeout"]; ok {
			kept["resolve_timeout"] = v
		}
		cfg["global"] = kept
	}
	delete(cfg, "templates")
	recvs, ok := cfg["receivers"].([]any)
	if !ok || len(recvs) == 0 {
		return fmt.Errorf("no receivers")
	}
	for i, r := range recvs {
		rm, ok := r.(map[string]any)
		if !ok {
			return fmt.Errorf("receiver %d is not a map", i)
		}
		name, _ := rm["name"].(string)
		if name == "" {
			return fmt.Errorf("receiver %d has no name", i)
		}
		recvs[i] = map[string]any{
			"name": name,
			"webhook_configs": []any{map[string]any{
				"url":           webhookURL + "/" + url.PathEscape(name),
				"send_resolved": true,
			}},
		}
	}
	route, ok := cfg["route"].(map[string]any)
	if !ok {
		return fmt.Errorf("no route")
	}
	if shorten {
		route["group_wait"], route["group_interval"], route["repeat_interval"] = "1s", "1s", "1h"
		shortenRoutes(route)
	}
	return nil
}

func shortenRoutes(route map[string]any) {
	children, _ := route["routes"].([]any)
	for _, c := range children {
		cm, ok := c.(map[string]any)
		if !ok {
			continue
		}
		for k, v := range map[string]string{"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"} {
			if _, ok := cm[k]; ok {
				cm[k] = v
			}
		}
		shortenRoutes(cm)
	}
}

// ---------------------------------------------------------------------------------------------
// Prometheus

// PrometheusOptions configures the harness' Prometheus. Every target carries cluster="e2e".
type PrometheusOptions struct {
	ScrapeInterval     time.Duration // default 1s
	ScrapeTimeout      time.Duration // default = ScrapeInterval
	EvaluationInterval time.Duration // default 1s
	Etcd               *Cluster      // job "etcd": every member's metrics listener
	Exporters          []string      // job "etcd-monitor": host:port targets
	Pushgateway        *Pushgateway  // job "pushgateway", honor_labels
	Alertmanager       *Alertmanager // alerting target
	RuleFiles          []string
	ExtraArgs          []string
}

// Prometheus is a running Prometheus.
type Prometheus struct {
	*Process
	Addr, URL  string
	ConfigPath string
}

// StartPrometheus writes the generated config and starts Prometheus; it waits until ready.
func (e *Env) StartPrometheus(opts PrometheusOptions) *Prometheus {
	e.t.Helper()
	if opts.ScrapeInterval == 0 {
		opts.ScrapeInterval = time.Second
	}
	if opts.ScrapeTimeout == 0 {
		opts.ScrapeTimeout = opts.ScrapeInterval
	}
	if opts.EvaluationInterval == 0 {
		opts.EvaluationInterval = time.Second
	}
	labels := map[string]string{"cluster": ClusterLabel}
	job := func(name string, targets []string, extra map[string]any) map[string]any {
		j := map[string]any{
			"job_name":       name,
			"static_configs": []any{map[string]any{"targets": targets, "labels": labels}},
		}
		for k, v := range extra {
			j[k] = v
		}
		return j
	}
	var scrapes []any
	if opts.Etcd != nil {
		var ts []string
		for _, m := range opts.Etcd.Members {
			ts = append(ts, m.MetricsAddr())
		}
		scrapes = append(scrapes, job("etcd", ts, nil))
	}
	if len(opts.Exporters) > 0 {
		scrapes = append(scrapes, job("etcd-monitor", opts.Exporters, nil))
	}
	if opts.Pushgateway != nil {
		scrapes = append(scrapes, job("pushgateway", []string{opts.Pushgateway.Addr}, map[string]any{"honor_labels": true}))
	}
	cfg := map[string]any{
		"global": map[string]any{
			"scrape_interval":     opts.ScrapeInterval.String(),
			"scrape_timeout":      opts.ScrapeTimeout.String(),
			"evaluation_interval": opts.EvaluationInterval.String(),
		},
		"scrape_configs": scrapes,
	}
	if len(opts.RuleFiles) > 0 {
		cfg["rule_files"] = opts.RuleFiles
	}
	if opts.Alertmanager != nil {
		cfg["alerting"] = map[string]any{"alertmanagers": []any{map[string]any{
			"static_configs": []any{map[string]any{"targets": []string{opts.Alertmanager.Addr}}},
		}}}
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	path := e.WriteFile("prometheus.yml", out)
	addr := fmt.Sprintf("127.0.0.1:%d", FreePorts(e.t, 1)[0])
	p := &Prometheus{Addr: addr, URL: "http://" + addr, ConfigPath: path}
	args := append([]string{
		"--config.file=" + path,
		"--storage.tsdb.path=" + e.Subdir("prometheus"),
		"--web.listen-address=" + addr,
		"--web.enable-lifecycle",
		// Hidden flag (cmd/prometheus/main.go, default 5s): targets are scraped from the first
		// second instead of five seconds after start.
		"--scrape.discovery-reload-interval=1s",
		// Prometheus learns its Alertmanager a few seconds after start; an alert that fires
		// before that is otherwise re-sent only after the default 1m.
		"--rules.alert.resend-delay=1s",
	}, opts.ExtraArgs...)
	p.Process = e.Start("prometheus", Binary(e.t, BinPrometheus), args...)
	p.WaitHTTP(p.URL+"/-/ready", startTimeout)
	// On failure, show what Prometheus saw (runs before the processes are killed).
	e.t.Cleanup(func() {
		if !e.t.Failed() {
			return
		}
		if ts, err := p.Targets(); err == nil {
			for _, t := range ts {
				e.t.Logf("prometheus target %s job=%s health=%s lastError=%q", t.ScrapeURL, t.Labels["job"], t.Health, t.LastError)
			}
		}
		if as, err := p.Alerts(); err == nil {
			for _, a := range as {
				e.t.Logf("prometheus alert %s state=%s labels=%v", a.Labels["alertname"], a.State, a.Labels)
			}
		}
	})
	return p
}

// Sample is one element of an instant vector (a scalar comes back as one label-less sample).
type Sample struct {
	Labels map[string]string
	Value  float64
}

func (s Sample) String() string {
	keys := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("{")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "%s=%q", k, s.Labels[k])
	}
	fmt.Fprintf(&b, "} %g", s.Value)
	return b.String()
}

// apiGet calls a Prometheus HTTP API endpoint and decodes its "data".
func (p *Prometheus) apiGet(path string, params url.Values, data any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u := p.URL + path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	code, body, err := httpGet(ctx, u)
	if err != nil {
		return err
	}
	var resp struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("HTTP %d: %.300s", code, body)
	}
	if resp.Status != "success" {
		return fmt.Errorf("HTTP %d: %s", code, resp.Error)
	}
	return json.Unmarshal(resp.Data, data)
}

// Query runs an instant query now.
func (p *Prometheus) Query(q string) ([]Sample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.apiGet("/api/v1/query", url.Values{"query": {q}}, &data); err != nil {
		return nil, fmt.Errorf("query %q: %w", q, err)
	}
	switch data.ResultType {
	case "vector":
		var vec []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(data.Result, &vec); err != nil {
			return nil, err
		}
		out := make([]Sample, 0, len(vec))
		for _, v := range vec {
			f, err := parseValue(v.Value[1])
			if err != nil {
				return nil, err
			}
			out = append(out, Sample{Labels: v.Metric, Value: f})
		}
		return out, nil
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(data.Result, &v); err != nil {
			return nil, err
		}
		f, err := parseValue(v[1])
		return []Sample{{Labels: map[string]string{}, Value: f}}, err
	default:
		return nil, fmt.Errorf("query %q: unsupported result type %q", q, data.ResultType)
	}
}

func parseValue(v any) (float64, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("sample value %v is not a string", v)
	}
	return strconv.ParseFloat(s, 64)
}

// WaitQuery polls q until cond accepts the result, and returns that result.
func (p *Prometheus) WaitQuery(timeout time.Duration, q string, cond func([]Sample) bool) []Sample {
	p.env.t.Helper()
	var last []Sample
	Eventually(p.env.t, timeout, "query "+q, func() (bool, string) {
		s, err := p.Query(q)
		if err != nil {
			return false, err.Error()
		}
		last = s
		return cond(s), fmt.Sprint(s)
	})
	return last
}

// AllEqual is a WaitQuery condition: exactly n samples, each with value v.
func AllEqual(n int, v float64) func([]Sample) bool {
	return func(s []Sample) bool {
		if len(s) != n {
			return false
		}
		for _, x := range s {
			if x.Value != v {
				return false
			}
		}
		return true
	}
}

// Target is one active scrape target.
type Target struct {
	Labels    map[string]string `json:"labels"`
	ScrapeURL string            `json:"scrapeUrl"`
	Health    string            `json:"health"`
	LastError string            `json:"lastError"`
}

// Targets lists the active targets (useful in failure messages).
func (p *Prometheus) Targets() ([]Target, error) {
	var data struct {
		Active []Target `json:"activeTargets"`
	}
	err := p.apiGet("/api/v1/targets", url.Values{"state": {"active"}}, &data)
	return data.Active, err
}

// Alert is an alert as Prometheus' /api/v1/alerts reports it.
type Alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"` // pending or firing
	Value       string            `json:"value"`
}

// Alerts lists the pending and firing alerts.
func (p *Prometheus) Alerts() ([]Alert, error) {
	var data struct {
		Alerts []Alert `json:"alerts"`
	}
	err := p.apiGet("/api/v1/alerts", nil, &data)
	return data.Alerts, err
}

// ---------------------------------------------------------------------------------------------
// The whole stack

// StackOptions selects what StartStack runs.
type StackOptions struct {
	Etcd EtcdOptions
	// Exporter starts etcd-monitor with --etcd.endpoints set to the cluster plus ExporterArgs.
	Exporter     bool
	ExporterArgs []string
	// AlertmanagerConfig is the routing config to load (see AlertmanagerOptions.ConfigFile).
	AlertmanagerConfig string
	// Prometheus options; Etcd, Exporters, Pushgateway and Alertmanager are filled in.
	Prometheus PrometheusOptions
}

// Stack is a running etcd cluster with its monitoring.
type Stack struct {
	Env          *Env
	Etcd         *Cluster
	Exporter     *Exporter // nil unless StackOptions.Exporter
	Pushgateway  *Pushgateway
	Alertmanager *Alertmanager
	Prometheus   *Prometheus
}

// StartStack starts etcd, (etcd-monitor,) a Pushgateway, Alertmanager and Prometheus, each ready.
func StartStack(t testing.TB, opts StackOptions) *Stack {
	t.Helper()
	return startStackIn(t, NewEnv(t), opts)
}

func startStackIn(t testing.TB, env *Env, opts StackOptions) *Stack {
	t.Helper()
	s := &Stack{Env: env}
	s.Etcd = env.StartEtcd(opts.Etcd)
	if opts.Exporter {
		args := append([]string{"--etcd.endpoints=" + strings.Join(s.Etcd.Endpoints(), ",")}, opts.ExporterArgs...)
		s.Exporter = env.StartExporter(args...)
		opts.Prometheus.Exporters = append(opts.Prometheus.Exporters, s.Exporter.Addr)
	}
	s.Pushgateway = env.StartPushgateway()
	s.Alertmanager = env.StartAlertmanager(AlertmanagerOptions{ConfigFile: opts.AlertmanagerConfig})
	opts.Prometheus.Etcd = s.Etcd
	opts.Prometheus.Pushgateway = s.Pushgateway
	opts.Prometheus.Alertmanager = s.Alertmanager
	s.Prometheus = env.StartPrometheus(opts.Prometheus)
	return s
}
