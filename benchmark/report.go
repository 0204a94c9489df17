package benchmark

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Result is what a run measured. The JSON report is this struct; the text report shows the same
// fields. Latencies are in seconds.
type Result struct {
	Config Config `json:"-"`

	Workload string `json:"workload"`
	// RunID names the run; RunPrefix is its own directory under the prefix, where all its keys
	// were, and all that its cleanup deleted.
	RunID      string            `json:"run_id"`
	RunPrefix  string            `json:"run_prefix"`
	Parameters map[string]string `json:"parameters"`
	OpenLoop   bool              `json:"open_loop"`

	Operations   int64            `json:"operations"`
	Successes    int64            `json:"successes"`
	Failures     int64            `json:"failures"`
	ErrorsByCode map[string]int64 `json:"errors_by_code"`
	// ErrorExamples holds the first error message seen for each code.
	ErrorExamples map[string]string `json:"error_examples,omitempty"`

	DurationSeconds float64 `json:"duration_seconds"`
	// Throughput counts successful operations per second, like etcd's tool.
	Throughput float64 `json:"throughput_ops_per_second"`

	Latency         Latency  `json:"latency_seconds"`
	Histogram       []Bucket `json:"histogram"`
	FailedLatency   Latency  `json:"failed_latency_seconds"`
	FailedHistogram []Bucket `json:"failed_histogram"`
	StoppedEarly    string   `json:"stopped_early,omitempty"`
	KeysRemoved     int64    `json:"keys_removed"`
	KeysKept        int64    `json:"keys_kept"`
	Success         bool     `json:"success"`
}

// Latency summarises one histogram. All values are seconds; zero when there was no operation.
type Latency struct {
	Count int64   `json:"count"`
	Min   float64 `json:"min"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	Max   float64 `json:"max"`
}

// Bucket is one bar of the log-scale histogram: operations with latency in (previous le, le].
type Bucket struct {
	LE    float64 `json:"le"`
	Count int64   `json:"count"`
}

// quantiles are the reported quantiles, also pushed to the Pushgateway.
var quantiles = []struct {
	q     float64
	label string
	get   func(Latency) float64
}{
	{0.5, "0.5", func(l Latency) float64 { return l.P50 }},
	{0.9, "0.9", func(l Latency) float64 { return l.P90 }},
	{0.95, "0.95", func(l Latency) float64 { return l.P95 }},
	{0.99, "0.99", func(l Latency) float64 { return l.P99 }},
	{0.999, "0.999", func(l Latency) float64 { return l.P999 }},
	{1, "1", func(l Latency) float64 { return l.Max }},
}

func (res *Result) fill(r *recorder, start time.Time, openLoop bool) {
	rec := r.merged()
	cfg := res.Config
	res.Workload = cfg.Workload
	res.RunID, res.RunPrefix = cfg.RunID, cfg.runPrefix()
	res.Parameters = map[string]string{}
	for _, p := range cfg.params() {
		res.Parameters[p[0]] = p[1]
	}
	res.OpenLoop = openLoop
	res.Successes = rec.ok.TotalCount()
	res.Failures = rec.failed.TotalCount()
	res.Operations = res.Successes + res.Failures
	res.ErrorsByCode = map[string]int64{}
	for k, v := range rec.errs {
		res.ErrorsByCode[k] = v
	}
	if len(rec.examples) > 0 {
		res.ErrorExamples = map[string]string{}
		for k, v := range rec.examples {
			res.ErrorExamples[k] = v
		}
	}
	if !rec.lastEnd.IsZero() {
		res.DurationSeconds = rec.lastEnd.Sub(start).Seconds()
	}
	if res.DurationSeconds > 0 {
		res.Throughput = float64(res.Successes) / res.DurationSeconds
	}
	res.Latency, res.Histogram = summarise(rec.ok)
	res.FailedLatency, res.FailedHistogram = summarise(rec.failed)
}

func summarise(h *hdrhistogram.Histogram) (Latency, []Bucket) {
	n := h.TotalCount()
	if n == 0 {
		return Latency{}, []Bucket{}
	}
	s := func(ns int64) float64 { return float64(ns) / 1e9 }
	l := Latency{
		Count: n,
		Min:   s(h.Min()),
		Mean:  h.Mean() / 1e9,
		P50:   s(h.ValueAtQuantile(50)),
		P90:   s(h.ValueAtQuantile(90)),
		P95:   s(h.ValueAtQuantile(95)),
		P99:   s(h.ValueAtQuantile(99)),
		P999:  s(h.ValueAtQuantile(99.9)),
		Max:   s(h.Max()),
	}
	return l, logBuckets(h)
}

// logBuckets spreads the histogram over 1-2-5 bounds (10 µs, 20 µs, 50 µs, 100 µs, ...) from the
// bucket holding the fastest operation to the one holding the slowest: unlike a linear
// histogram, a long tail stays visible next to a fast median.
func logBuckets(h *hdrhistogram.Histogram) []Bucket {
	var bounds []int64
	for decade := int64(10_000); decade <= histMax*10; decade *= 10 {
		for _, m := range []int64{1, 2, 5} {
			bounds = append(bounds, decade*m)
		}
	}
	first := sort.Search(len(bounds), func(i int) bool { return bounds[i] >= h.Min() })
	last := sort.Search(len(bounds), func(i int) bool { return bounds[i] >= h.Max() })
	last = min(last, len(bounds)-1)
	first = min(first, last)
	out := make([]Bucket, 0, last-first+1)
	for _, b := range bounds[first : last+1] {
		out = append(out, Bucket{LE: float64(b) / 1e9})
	}
	for _, bar := range h.Distribution() {
		if bar.Count == 0 {
			continue
		}
		// a bar holds values equivalent to bar.From..bar.To; place it by its upper end
		i := sort.Search(len(out), func(i int) bool { return float64(bar.To)/1e9 <= out[i].LE })
		if i == len(out) {
			i = len(out) - 1
		}
		out[i].Count += bar.Count
	}
	return out
}

func (res *Result) write(w io.Writer, format string) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	_, err := io.WriteString(w, res.text())
	return err
}

func (res *Result) text() string {
	var b strings.Builder
	cfg := res.Config
	loop := "closed loop, as fast as possible"
	if res.OpenLoop {
		loop = fmt.Sprintf("open loop at %g ops/s, latency from scheduled start", cfg.Rate)
	}
	keys := "random keys"
	if cfg.SequentialKeys {
		keys = "sequential keys"
	}
	fmt.Fprintf(&b, "Workload:    %s (%s)\n", res.Workload, loop)
	fmt.Fprintf(&b, "Run:         %s (keys under %s)\n", cfg.RunID, cfg.runPrefix())
	fmt.Fprintf(&b, "Parameters:  %d conns, %d clients, key %d B, value %d B, key space %d, %s, prefix %s\n",
		cfg.Conns, cfg.Clients, cfg.KeySize, cfg.ValSize, cfg.KeySpaceSize, keys, cfg.Prefix)
	fmt.Fprintf(&b, "Operations:  %d (%d succeeded, %d failed)\n", res.Operations, res.Successes, res.Failures)
	if len(res.ErrorsByCode) > 0 {
		b.WriteString("Errors by code:\n")
		codes := make([]string, 0, len(res.ErrorsByCode))
		for c := range res.ErrorsByCode {
			codes = append(codes, c)
		}
		sort.Strings(codes)
		for _, c := range codes {
			fmt.Fprintf(&b, "  %-18s %8d  e.g. %s\n", c, res.ErrorsByCode[c], oneLine(res.ErrorExamples[c]))
		}
	}
	fmt.Fprintf(&b, "Duration:    %s\n", fmtSeconds(res.DurationSeconds))
	fmt.Fprintf(&b, "Throughput:  %.1f ops/s (successful operations)\n", res.Throughput)
	writeLatency(&b, "Latency of successful operations", res.Latency, res.Histogram)
	if res.Failures > 0 {
		writeLatency(&b, "Latency of failed operations", res.FailedLatency, res.FailedHistogram)
	}
	if res.StoppedEarly != "" {
		fmt.Fprintf(&b, "Stopped:     %s\n", res.StoppedEarly)
	}
	if cfg.Keep {
		fmt.Fprintf(&b, "Cleanup:     --keep: left %d keys under %s\n", res.KeysKept, cfg.runPrefix())
	} else {
		fmt.Fprintf(&b, "Cleanup:     removed %d keys under %s\n", res.KeysRemoved, cfg.runPrefix())
	}
	return b.String()
}

func writeLatency(b *strings.Builder, title string, l Latency, hist []Bucket) {
	if l.Count == 0 {
		fmt.Fprintf(b, "%s: none\n", title)
		return
	}
	fmt.Fprintf(b, "%s:\n", title)
	fmt.Fprintf(b, "  min %s  mean %s  p50 %s  p90 %s  p95 %s  p99 %s  p99.9 %s  max %s\n",
		fmtSeconds(l.Min), fmtSeconds(l.Mean), fmtSeconds(l.P50), fmtSeconds(l.P90), fmtSeconds(l.P95),
		fmtSeconds(l.P99), fmtSeconds(l.P999), fmtSeconds(l.Max))
	var peak int64
	for _, h := range hist {
		peak = max(peak, h.Count)
	}
	for _, h := range hist {
		bar := 0
		if peak > 0 {
			bar = int(math.Ceil(40 * float64(h.Count) / float64(peak)))
		}
		fmt.Fprintf(b, "  <= %-9s %8d |%s\n", fmtSeconds(h.LE), h.Count, strings.Repeat("∎", bar))
	}
}

func fmtSeconds(s float64) string {
	d := time.Duration(s * 1e9)
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.3gs", s)
	case d >= time.Millisecond:
		return fmt.Sprintf("%.3gms", s*1e3)
	default:
		return fmt.Sprintf("%.3gµs", s*1e6)
	}
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}
