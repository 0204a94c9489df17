package main

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"github.com/alecthomas/kingpin/v2"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/term"

	"github.com/etcd-monitor/etcd-monitor/benchmark"
	"github.com/etcd-monitor/etcd-monitor/etcdconn"
)

// benchmarkDialTimeout bounds each connection attempt of the benchmark's clients.
const benchmarkDialTimeout = 5 * time.Second

// benchmarkGCPercent is the benchmark's garbage collection target (GOGC) unless GOGC is set.
const benchmarkGCPercent = 400

func init() {
	extraCommands = append(extraCommands, addBenchmarkCommand)
}

// addBenchmarkCommand registers `etcd-monitor benchmark`. Flags mean what they mean in etcd's own
// tool (tools/benchmark) where both have them; validation lives in benchmark.Config.Validate so
// that every bad value gives the same one-line error.
func addBenchmarkCommand(app *kingpin.Application) (*kingpin.CmdClause, func(context.Context, *slog.Logger) error) {
	cmd := app.Command("benchmark", "Load an etcd cluster with a workload and report latency and throughput; safe on a live cluster (see docs/benchmark.md).")
	ef := addEtcdFlags(cmd)
	cfg := benchmark.DefaultConfig()

	cmd.Flag("workload", "Workload: put, range, mixed, txn-put, watch, lease, lock or election.").
		Default(cfg.Workload).StringVar(&cfg.Workload)
	cmd.Flag("conns", "Number of gRPC connections to etcd.").Default("1").IntVar(&cfg.Conns)
	cmd.Flag("clients", "Number of concurrent clients, spread over the connections.").Default("1").IntVar(&cfg.Clients)
	cmd.Flag("key-size", "Bytes of each key after the run's directory <prefix><run id>/ (key-000000123 when room allows, digits only otherwise).").
		Default("13").IntVar(&cfg.KeySize)
	cmd.Flag("val-size", "Bytes of each value.").Default("8").IntVar(&cfg.ValSize)
	cmd.Flag("total", "Number of operations to run (give this or --duration).").IntVar(&cfg.Total)
	cmd.Flag("duration", "How long to run (give this or --total).").DurationVar(&cfg.Duration)
	cmd.Flag("rate", "Operations per second, open loop: latency counts from each operation's scheduled time. 0 runs closed loop as fast as possible.").
		Default("0").Float64Var(&cfg.Rate)
	cmd.Flag("sequential-keys", "Use keys in order instead of at random from the key space.").BoolVar(&cfg.SequentialKeys)
	cmd.Flag("key-space-size", "Number of distinct keys (and lock or election names).").Default("100000").IntVar(&cfg.KeySpaceSize)
	cmd.Flag("prefix", "Each run writes only in a directory of its own under this prefix, <prefix><run id>/, and deletes only that afterwards.").
		Default(benchmark.DefaultPrefix).StringVar(&cfg.Prefix)
	cmd.Flag("read-ratio", "Share of reads in the mixed workload, from 0 to 1.").Default("0.7").Float64Var(&cfg.ReadRatio)
	cmd.Flag("consistency", "Read consistency of range and mixed: l (linearizable) or s (serializable).").
		Default("l").StringVar(&cfg.Consistency)
	cmd.Flag("output", "Report format: text or json.").Default("text").StringVar(&cfg.Output)
	// --force once ran on a non-empty prefix and deleted all of it, whoever's keys were there.
	// Runs now never touch keys outside their own directory, so there is nothing left to force;
	// the flag stays so that existing scripts keep working.
	force := cmd.Flag("force", "Deprecated, no effect: keys already under --prefix are never refused nor deleted (see docs/benchmark.md).").Bool()
	cmd.Flag("keep", "Leave the run's keys in place instead of deleting its directory.").BoolVar(&cfg.Keep)
	cmd.Flag("pushgateway.url", "Push the results to this Pushgateway (job etcd_benchmark, grouped by workload and run).").
		StringVar(&cfg.PushgatewayURL)
	cmd.Flag("run.name", "Stable name of this run for the Pushgateway grouping, e.g. nightly (never a unique id).").
		Default(benchmark.DefaultRunName).StringVar(&cfg.RunName)

	return cmd, func(ctx context.Context, logger *slog.Logger) error {
		if err := cfg.Validate(); err != nil {
			return err
		}
		if *force {
			logger.Warn("--force is deprecated and has no effect: each run writes and deletes only its own directory <prefix><run id>/, and keys already under --prefix are left alone")
		}
		// The client's CPU competes with the members it measures when both share a host, and
		// its live heap is a few MiB of histograms and keys: collecting at 5x that instead of
		// 2x halves the garbage collector's share. GOGC, when set, still wins.
		if os.Getenv("GOGC") == "" {
			debug.SetGCPercent(benchmarkGCPercent)
		}
		conn, err := ef.config()
		if err != nil {
			return err
		}
		r := &benchmark.Runner{
			Config: cfg,
			// Connection i talks to endpoint i mod n, as in etcd's tool: the load spreads evenly
			// over the members given, each connection is one HTTP/2 stream, and a member that
			// fails shows up as errors instead of being hidden by fail-over.
			Dial: func(i int) (*clientv3.Client, error) {
				one := conn
				one.Endpoints = []string{conn.Endpoints[i%len(conn.Endpoints)]}
				return etcdconn.New(one, benchmarkDialTimeout)
			},
			Out:    os.Stdout,
			Logger: logger,
		}
		// A progress bar only where someone watches: never in pipes or CI logs.
		if term.IsTerminal(int(os.Stderr.Fd())) {
			r.Progress = os.Stderr
		}
		_, err = r.Run(ctx)
		return err
	}
}
