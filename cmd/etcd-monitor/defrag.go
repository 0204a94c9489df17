package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/alecthomas/units"

	"github.com/etcd-monitor/etcd-monitor/defrag"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

func init() {
	extraCommands = append(extraCommands, addDefragCommand)
}

// addDefragCommand registers `etcd-monitor defrag`; see docs/defrag.md.
func addDefragCommand(app *kingpin.Application) (*kingpin.CmdClause, func(context.Context, *slog.Logger) error) {
	cmd := app.Command("defrag", "Defragment the members whose backend a rule selects, one at a time, followers first and the leader last, checking the cluster before and after each (see docs/defrag.md).")
	ef := addEtcdFlags(cmd)
	cfg := defrag.DefaultConfig()
	def := defrag.DefaultRule

	cmd.Flag("rule.min-free-ratio", "Defragment a member when at least this share of its file is free and at least --rule.min-free-bytes are.").
		Default(fmt.Sprint(def.MinFreeRatio)).Float64Var(&cfg.Rule.MinFreeRatio)
	minFree := byteSizeFlag(cmd.Flag("rule.min-free-bytes", "Free bytes the fragmentation condition needs (e.g. 100MiB or 104857600).").Default("100MiB"))
	cmd.Flag("rule.quota-ratio", "Or when the file uses more than this share of the member's quota (and --rule.quota-min-free-bytes are reclaimable).").
		Default(fmt.Sprint(def.QuotaRatio)).Float64Var(&cfg.Rule.QuotaRatio)
	quotaMinFree := byteSizeFlag(cmd.Flag("rule.quota-min-free-bytes", "Reclaimable bytes the quota condition needs (e.g. 100MiB).").Default("100MiB"))
	quota := byteSizeFlag(cmd.Flag("quota-bytes", "Backend quota of members that do not report theirs (etcd < 3.6): the value of their --quota-backend-bytes, e.g. 2GiB. etcd >= 3.6 reports its own, which wins.").
		Default("0"))
	cmd.Flag("dry-run", "Print the plan (members, sizes, rule result, order) and change nothing.").BoolVar(&cfg.DryRun)
	cmd.Flag("move-leader", "Hand leadership to a caught-up follower before defragmenting the leader.").BoolVar(&cfg.MoveLeader)
	cmd.Flag("disarm-nospace", "At the end, disarm the NOSPACE alarm (and no other) when every member's file is below --rule.quota-ratio of its quota.").BoolVar(&cfg.DisarmNoSpace)
	cmd.Flag("member-timeout", "How long to wait for the cluster and a member to be ready, before and after each defragmentation, and for a leadership transfer.").
		Default(cfg.MemberTimeout.String()).DurationVar(&cfg.MemberTimeout)
	cmd.Flag("defrag-timeout", "Deadline of one member's Defragment call.").Default(cfg.DefragTimeout.String()).DurationVar(&cfg.DefragTimeout)
	cmd.Flag("max-apply-lag", "How many entries a member's applied index may trail the leader's and still count as caught up.").
		Default(fmt.Sprint(cfg.MaxApplyLag)).Uint64Var(&cfg.MaxApplyLag)
	output := cmd.Flag("output", "Report format: text or json.").Default("text").Enum("text", "json")
	pushURL := cmd.Flag("pushgateway.url", "Push the results to this Pushgateway (job etcd_defrag, grouped by cluster); never for a dry run.").String()
	cluster := cmd.Flag("cluster", "Name of the cluster in the pushed series' cluster grouping label (required with --pushgateway.url).").String()

	return cmd, func(ctx context.Context, logger *slog.Logger) error {
		cfg.Rule.MinFreeBytes = *minFree
		cfg.Rule.QuotaMinFreeBytes = *quotaMinFree
		cfg.QuotaBytes = *quota
		if err := cfg.Validate(); err != nil {
			return err
		}
		if *pushURL != "" {
			if u, err := url.Parse(*pushURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("--pushgateway.url must be an http(s) URL, got %q", *pushURL)
			}
			if *cluster == "" {
				return errors.New("--cluster is required with --pushgateway.url: it names the cluster in the pushed series")
			}
		}
		conn, err := ef.config()
		if err != nil {
			return err
		}
		taker, err := snapshot.NewTaker(conn, snapshot.WithLogger(logger))
		if err != nil {
			return err
		}
		defer taker.Close()
		r := &defrag.Runner{Config: cfg, Conn: conn, Taker: taker, Progress: os.Stderr, Logger: logger}
		rep, runErr := r.Run(ctx)
		if rep.Members != nil || runErr == nil {
			if *output == "json" {
				err = rep.WriteJSON(os.Stdout)
			} else {
				err = rep.WriteText(os.Stdout)
			}
			if err != nil {
				return errors.Join(runErr, err)
			}
		}
		if *pushURL != "" && !cfg.DryRun {
			// A run stopped by Ctrl-C still reports how far it got.
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := defrag.Push(pctx, *pushURL, *cluster, rep, time.Now()); err != nil {
				return errors.Join(runErr, err)
			}
		}
		return runErr
	}
}

// byteSize is a size flag that takes a plain byte count, as etcd's --quota-backend-bytes does, or
// a value with a unit (100MiB; MB and GB mean MiB and GiB here, as in kingpin's Bytes).
type byteSize struct {
	flag string
	n    int64
}

func byteSizeFlag(f *kingpin.FlagClause) *int64 {
	v := &byteSize{flag: f.Model().Name}
	f.SetValue(v)
	return &v.n
}

func (b *byteSize) Set(s string) error {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		b.n = n
		return nil
	}
	n, err := units.ParseBase2Bytes(s)
	if err != nil {
		return fmt.Errorf("--%s wants a byte count such as 104857600 or 100MiB, got %q", b.flag, s)
	}
	b.n = int64(n)
	return nil
}

func (b *byteSize) String() string { return strconv.FormatInt(b.n, 10) }
