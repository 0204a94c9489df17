package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/dustin/go-humanize"

	"github.com/etcd-monitor/etcd-monitor/backup"
	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/pushgw"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

func init() {
	extraCommands = append(extraCommands, addSnapshotSaveCommand, addSnapshotVerifyCommand)
}

// verifyUsageExit is `snapshot verify`'s exit status for bad input: 1 and 2 are verdicts.
const verifyUsageExit = 3

// exitError carries an exit status and a one-line message (empty when the report said it all).
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }
func (e exitError) ExitCode() int { return e.code }

func snapshotParent(app *kingpin.Application) *kingpin.CmdClause {
	if c := app.GetCommand("snapshot"); c != nil {
		return c
	}
	return app.Command("snapshot", "Save verified etcd snapshots and verify snapshot files (see docs/backup.md).")
}

func addSnapshotSaveCommand(app *kingpin.Application) (*kingpin.CmdClause, func(context.Context, *slog.Logger) error) {
	cmd := snapshotParent(app).Command("save", "Stream a snapshot from a healthy member (a follower by default) into --dir, verify it and keep it under a name with the cluster, time and revision.")
	ef := addEtcdFlags(cmd)
	dir := cmd.Flag("dir", "Directory to save the snapshot in (it must exist).").Required().String()
	cluster := cmd.Flag("cluster", "Cluster name: the start of the file name and the Pushgateway's cluster label.").Default("etcd").String()
	member := cmd.Flag("member", "Member to stream from, by name or hex ID (default: the most caught-up follower, the leader only when no follower is healthy).").String()
	keep := cmd.Flag("keep", "Keep this many of the cluster's snapshots in --dir, deleting the oldest; only files named by this command for this cluster are ever deleted (0: keep all).").Default("0").Int()
	timeout := cmd.Flag("timeout", "Deadline for the whole save, streaming and verification included.").Default("1h").Duration()
	verifyTimeout := cmd.Flag("verify-timeout", "Deadline for comparing the file with the members' HashKV (part of --timeout).").Default("5m").Duration()
	pushURL := cmd.Flag("pushgateway.url", "Push the outcome to this Pushgateway (job etcd_backup, grouped by cluster).").String()
	output := cmd.Flag("output", "Report format: text or json.").Default("text").Enum("text", "json")

	return cmd, func(ctx context.Context, logger *slog.Logger) error {
		if *timeout <= 0 {
			return fmt.Errorf("--timeout must be positive, got %s", *timeout)
		}
		if *verifyTimeout <= 0 {
			return fmt.Errorf("--verify-timeout must be positive, got %s", *verifyTimeout)
		}
		if *keep < 0 {
			return fmt.Errorf("--keep must not be negative, got %d", *keep)
		}
		if err := backup.ValidateCluster(*cluster); err != nil {
			return fmt.Errorf("--cluster: %w", err)
		}
		conn, err := ef.config()
		if err != nil {
			return err
		}
		sctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		res, saveErr := backup.Save(sctx, backup.SaveOptions{
			Conn: conn, Dir: *dir, Cluster: *cluster, Member: *member, Keep: *keep, VerifyTimeout: *verifyTimeout, Logger: logger,
		})
		if saveErr != nil && ctx.Err() != nil {
			saveErr = fmt.Errorf("interrupted: %w", saveErr)
		}
		if saveErr == nil {
			if err := writeSaveReport(os.Stdout, *output, res); err != nil {
				return err
			}
		}
		var errs []error
		if saveErr != nil {
			errs = append(errs, saveErr)
		}
		if *pushURL != "" {
			// A failure, an interrupted save included, is pushed too: it is what alerts see.
			pctx, pcancel := context.WithTimeout(context.WithoutCancel(ctx), pushgw.Timeout)
			err := backup.Push(pctx, *pushURL, res, saveErr, time.Now())
			pcancel()
			if err != nil {
				errs = append(errs, err)
			} else {
				logger.Info("pushed the outcome", "url", *pushURL, "job", backup.PushJob, "cluster", *cluster)
			}
		}
		return errors.Join(errs...)
	}
}

func writeSaveReport(w io.Writer, format string, res *backup.SaveResult) error {
	if format == "json" {
		type jsonResult struct {
			*backup.SaveResult
			DurationSeconds float64 `json:"duration_seconds"`
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(jsonResult{res, res.Duration.Seconds()})
	}
	fmt.Fprintf(w, "Saved:        %s\n", res.Path)
	fmt.Fprintf(w, "Member:       %s (%s, %s)\n", res.Member, res.MemberID, res.Endpoint)
	fmt.Fprintf(w, "Size:         %s (%d bytes)\n", humanize.IBytes(uint64(res.File.SizeBytes)), res.File.SizeBytes)
	fmt.Fprintf(w, "Revision:     %d\n", res.File.Revision)
	fmt.Fprintf(w, "Duration:     %s\n", res.Duration.Round(time.Millisecond))
	fmt.Fprintf(w, "Verification: %s\n", verdictLine(*res.Verification))
	for _, name := range res.Removed {
		fmt.Fprintf(w, "Removed:      %s\n", name)
	}
	return nil
}

func verdictLine(v backup.Verification) string {
	if v.Reason == "" {
		return string(v.Result)
	}
	return string(v.Result) + ": " + v.Reason
}

// verifyReport is the output of `snapshot verify`.
type verifyReport struct {
	Result       backup.Result        `json:"result"`
	ExitCode     int                  `json:"exit_code"`
	Reason       string               `json:"reason,omitempty"`
	File         *backup.Info         `json:"file,omitempty"`
	Verification *backup.Verification `json:"verification,omitempty"`
}

func addSnapshotVerifyCommand(app *kingpin.Application) (*kingpin.CmdClause, func(context.Context, *slog.Logger) error) {
	cmd := snapshotParent(app).Command("verify", "Check a snapshot file (from this command or etcdctl): exit 0 good, 1 mismatch or unverifiable, 2 corrupt, 3 usage error.")
	file := cmd.Arg("file", "Snapshot file.").Required().String()
	against := cmd.Flag("against-cluster", "Also compare the file's hash at its revision with the live members' HashKV (the --etcd.* flags say where).").Bool()
	ef := addEtcdFlags(cmd)
	timeout := cmd.Flag("timeout", "Deadline for the cluster comparison.").Default("5m").Duration()
	output := cmd.Flag("output", "Report format: text or json.").Default("text").Enum("text", "json")
	usageErrorHandlers[cmd.FullCommand()] = func(err error) int {
		fmt.Fprintf(os.Stderr, "%s: error: %v\n", appName, err)
		return verifyUsageExit
	}

	return cmd, func(ctx context.Context, logger *slog.Logger) error {
		usage := func(err error) error { return exitError{code: verifyUsageExit, msg: "error: " + err.Error()} }
		if *timeout <= 0 {
			return usage(fmt.Errorf("--timeout must be positive, got %s", *timeout))
		}
		var taker *snapshot.Taker
		var conn etcdconn.Config
		if *against {
			var err error
			if conn, err = ef.config(); err != nil {
				return usage(err)
			}
			if taker, err = snapshot.NewTaker(conn, snapshot.WithLogger(logger)); err != nil {
				return usage(err)
			}
			defer taker.Close()
		}
		rep := verifyReport{}
		f, err := backup.Open(*file)
		switch {
		case backup.IsCorrupt(err):
			rep.Result, rep.Reason = backup.ResultCorrupt, err.Error()
		case err != nil:
			return usage(err)
		default:
			defer f.Close()
			info := f.Info()
			rep.File, rep.Result = &info, backup.ResultIntact
			if *against {
				cctx, cancel := context.WithTimeout(ctx, *timeout)
				defer cancel()
				var v backup.Verification
				if s := taker.Take(cctx, snapshot.Needs{Status: true}); s.MemberListErr != nil {
					v = backup.Verification{Result: backup.ResultUnverifiable, Reason: "listing the cluster's members: " + s.MemberListErr.Error(), Members: []backup.MemberHash{}}
				} else {
					v = backup.VerifyAgainst(cctx, f, conn, s.Members)
				}
				rep.Verification, rep.Result, rep.Reason = &v, v.Result, v.Reason
			}
		}
		rep.ExitCode = rep.Result.ExitCode()
		if err := writeVerifyReport(os.Stdout, *output, rep); err != nil {
			return err
		}
		if rep.ExitCode != 0 {
			return exitError{code: rep.ExitCode}
		}
		return nil
	}
}

func writeVerifyReport(w io.Writer, format string, rep verifyReport) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	if f := rep.File; f != nil {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "File:\t%s\n", f.Path)
		fmt.Fprintf(tw, "Size:\t%s (%d bytes)\n", humanize.IBytes(uint64(f.SizeBytes)), f.SizeBytes)
		fmt.Fprintf(tw, "SHA-256:\t%s\n", f.SHA256)
		fmt.Fprintf(tw, "Revision:\t%d\n", f.Revision)
		fmt.Fprintf(tw, "Compact revision:\t%d\n", f.CompactRevision)
		fmt.Fprintf(tw, "Keys:\t%d (%d revisions)\n", f.Keys, f.Revisions)
		fmt.Fprintf(tw, "Consistent index:\t%d\n", f.ConsistentIndex)
		if f.StorageVersion != "" {
			fmt.Fprintf(tw, "Storage version:\t%s\n", f.StorageVersion)
		}
		tw.Flush()
	}
	if v := rep.Verification; v != nil && len(v.Members) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MEMBER\tID\tENDPOINT\tOUTCOME\tMEMBER HASH\tFILE HASH\tCOMPACT REVISION\tERROR")
		for _, m := range v.Members {
			mh, fh, cr, e := "-", "-", "-", "-"
			if m.Outcome == backup.MemberMatch || m.Outcome == backup.MemberMismatch || m.Outcome == backup.MemberIncomparable {
				mh, cr = fmt.Sprint(m.Hash), fmt.Sprint(m.CompactRevision)
			}
			if m.Outcome == backup.MemberMatch || m.Outcome == backup.MemberMismatch {
				fh = fmt.Sprint(m.FileHash)
			}
			if m.Error != "" {
				e = m.Error
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.ID, m.Endpoint, m.Outcome, mh, fh, cr, e)
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	line := strings.ToUpper(string(rep.Result))
	if rep.Reason != "" {
		line += ": " + rep.Reason
	}
	fmt.Fprintln(w, line)
	return nil
}
