package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/etcd-monitor/etcd-monitor/certcheck"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

func init() {
	extraCommands = append(extraCommands, addCheckCommand)
}

// checkResult is the exit status of `check`; its message is empty because the report says it all.
type checkResult struct{ code int }

func (c checkResult) Error() string { return "" }
func (c checkResult) ExitCode() int { return c.code }

// checkMember is one row of the report.
type checkMember struct {
	Name           string   `json:"name"`
	ID             string   `json:"id"`
	Endpoint       string   `json:"endpoint"`
	Learner        bool     `json:"learner"`
	Up             bool     `json:"up"`
	Error          string   `json:"error,omitempty"`
	Leader         string   `json:"leader,omitempty"`
	IsLeader       bool     `json:"is_leader"`
	RaftTerm       uint64   `json:"raft_term"`
	RaftIndex      uint64   `json:"raft_index"`
	DBSizeBytes    int64    `json:"db_size_bytes"`
	Alarms         []string `json:"alarms"`
	LinearizableMs *float64 `json:"read_linearizable_ms"`
	ProbeError     string   `json:"read_linearizable_error,omitempty"`
}

// checkReport is the whole output of `check`.
type checkReport struct {
	Verdict  snapshot.Verdict `json:"verdict"`
	ExitCode int              `json:"exit_code"`
	Reasons  []string         `json:"reasons"`
	Members  []checkMember    `json:"members"`
	// Certificates are read only when etcd is reached over TLS (see checkcerts.go).
	Certificates []certcheck.Summary `json:"certificates,omitempty"`
}

func addCheckCommand(app *kingpin.Application) (*kingpin.CmdClause, func(context.Context, *slog.Logger) error) {
	cmd := app.Command("check", "Take one look at an etcd cluster and exit 0 (healthy), 1 (degraded) or 2 (no quorum or unreachable); see docs/check.md.")
	ef := addEtcdFlags(cmd)
	timeout := cmd.Flag("timeout", "Deadline for the whole check.").Default("5s").Duration()
	output := cmd.Flag("output", "Report format: text or json.").Default("text").Enum("text", "json")

	return cmd, func(ctx context.Context, logger *slog.Logger) error {
		if *timeout <= 0 {
			return fmt.Errorf("--timeout must be positive, got %s", *timeout)
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
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		s := taker.Take(ctx, snapshot.Needs{Status: true, Probes: true})
		rep := addCertificates(buildCheckReport(s), readCertificates(ctx, conn, s), time.Now())
		if *output == "json" {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(rep); err != nil {
				return err
			}
		} else {
			writeCheckText(os.Stdout, rep)
		}
		if rep.ExitCode != 0 {
			return checkResult{code: rep.ExitCode}
		}
		return nil
	}
}

func buildCheckReport(s *snapshot.Snapshot) checkReport {
	h := s.Health()
	rep := checkReport{Verdict: h.Verdict, ExitCode: h.Verdict.ExitCode(), Reasons: h.Reasons, Members: []checkMember{}}
	for _, m := range s.Members {
		cm := checkMember{
			Name:     m.Name,
			ID:       snapshot.IDString(m.ID),
			Endpoint: m.Endpoint,
			Learner:  m.IsLearner,
			Up:       m.Up(),
			IsLeader: m.IsLeader(),
			Alarms:   []string{},
		}
		if m.StatusErr != nil {
			cm.Error = m.StatusErr.Error()
		}
		if st := m.Status; st != nil {
			if st.Leader != 0 {
				cm.Leader = snapshot.IDString(st.Leader)
			}
			cm.RaftTerm = st.RaftTerm
			cm.RaftIndex = st.RaftIndex
			cm.DBSizeBytes = st.DbSize
		}
		for _, a := range snapshot.AlarmTypes {
			if m.Alarms[a] {
				cm.Alarms = append(cm.Alarms, a)
			}
		}
		for _, p := range m.Probes {
			if p.Kind != snapshot.ProbeReadLinearizable {
				continue
			}
			if p.Err != nil {
				cm.ProbeError = p.Err.Error()
			} else {
				ms := float64(p.Duration) / float64(time.Millisecond)
				cm.LinearizableMs = &ms
			}
		}
		rep.Members = append(rep.Members, cm)
	}
	return rep
}

func writeCheckText(w io.Writer, rep checkReport) {
	if len(rep.Members) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tID\tENDPOINT\tUP\tLEADER\tRAFT TERM\tRAFT INDEX\tDB SIZE\tALARMS\tLINEARIZABLE READ")
		for _, m := range rep.Members {
			name := m.Name
			if name == "" {
				name = "-"
			}
			if m.Learner {
				name += " (learner)"
			}
			up, leader, term, index, db, probe := "no", "-", "-", "-", "-", "-"
			if m.Up {
				up = "yes"
				if m.Leader != "" {
					leader = m.Leader
				}
				if m.IsLeader {
					leader += " (self)"
				}
				term = fmt.Sprint(m.RaftTerm)
				index = fmt.Sprint(m.RaftIndex)
				db = humanBytes(m.DBSizeBytes)
			}
			if m.LinearizableMs != nil {
				probe = fmt.Sprintf("%.1fms", *m.LinearizableMs)
			} else if m.ProbeError != "" {
				probe = "failed"
			}
			alarms := "-"
			if len(m.Alarms) > 0 {
				alarms = strings.Join(m.Alarms, ",")
			}
			endpoint := m.Endpoint
			if endpoint == "" {
				endpoint = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
				name, m.ID, endpoint, up, leader, term, index, db, alarms, probe)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	verdict := strings.ToUpper(string(rep.Verdict))
	if len(rep.Reasons) == 0 {
		fmt.Fprintf(w, "%s\n", verdict)
		return
	}
	fmt.Fprintf(w, "%s: %s\n", verdict, strings.Join(rep.Reasons, "; "))
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
