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
	"unicode"

	"github.com/alecthomas/kingpin/v2"
	"github.com/dustin/go-humanize"

	"github.com/etcd-monitor/etcd-monitor/certcheck"
	"github.com/etcd-monitor/etcd-monitor/clusterapi"
	"github.com/etcd-monitor/etcd-monitor/consistency"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

func init() {
	extraCommands = append(extraCommands, addCheckCommand)
}

// checkResult is the exit status of `check`; its message is empty because the report says it all.
type checkResult struct{ code int }

func (c checkResult) Error() string { return "" }
func (c checkResult) ExitCode() int { return c.code }

// checkReport is the whole output of `check`.
type checkReport struct {
	Verdict  snapshot.Verdict `json:"verdict"`
	ExitCode int              `json:"exit_code"`
	Reasons  []string         `json:"reasons"`
	// Members are rendered as the status API renders them (clusterapi.MemberOf).
	Members []clusterapi.Member `json:"members"`
	// Certificates are read only when etcd is reached over TLS (see checkcerts.go).
	Certificates []certcheck.Summary `json:"certificates,omitempty"`
}

func addCheckCommand(app *kingpin.Application) (*kingpin.CmdClause, func(context.Context, *slog.Logger) error) {
	cmd := app.Command("check", "Take one look at an etcd cluster and exit 0 (healthy), 1 (degraded), 2 (no quorum or unreachable) or 3 (bad usage or configuration); see docs/check.md.")
	ef := addEtcdFlags(cmd)
	timeout := cmd.Flag("timeout", "Deadline for the whole check.").Default("5s").Duration()
	output := cmd.Flag("output", "Report format: text or json.").Default("text").Enum("text", "json")
	compare := cmd.Flag("consistency", "Also compare the members' HashKV at one revision (within --timeout): a member whose data differs is degraded. HashKV reads each member's whole keyspace and holds its writes while it runs (docs/consistency.md).").Bool()
	fleet := addCheckFleetFlags(cmd) // checkfleet.go: --config.file, --cluster
	usageErrorHandlers[cmd.FullCommand()] = func(err error) int { return checkUnknown(os.Stdout, "text", err) }

	return cmd, func(ctx context.Context, logger *slog.Logger) error {
		// Everything that stops the check from judging the cluster is UNKNOWN, never a verdict.
		unknown := func(err error) error { return checkResult{code: checkUnknown(os.Stdout, *output, err)} }
		if *timeout <= 0 {
			return unknown(fmt.Errorf("--timeout must be positive, got %s", *timeout))
		}
		if err := fleet.validate(); err != nil {
			return unknown(err)
		}
		if fleet.configFile != "" {
			ctx, cancel := context.WithTimeout(ctx, *timeout)
			defer cancel()
			res, err := fleet.run(ctx, logger, *output, *compare)
			if err != nil {
				return unknown(err)
			}
			if res.code == 0 {
				return nil
			}
			return res
		}
		conn, err := ef.config()
		if err != nil {
			return unknown(err)
		}
		taker, err := snapshot.NewTaker(conn, snapshot.WithLogger(logger))
		if err != nil {
			return unknown(err)
		}
		defer taker.Close()
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		s := taker.Take(ctx, snapshot.Needs{Status: true, Probes: true})
		if *compare && s.Up() {
			r := consistency.Check(ctx, taker, s)
			s.DataCheck = r.DataCheck()
			if !r.Compared {
				logger.Warn("the members' data could not be compared", "attempts", r.Attempts, "members", unknownMembers(r))
			}
		}
		rep := addCertificates(buildCheckReport(s), readCertificates(ctx, conn, s), time.Now())
		if *output == "json" {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(rep); err != nil {
				return checkResult{code: exitUnknown}
			}
		} else {
			fmt.Fprintln(os.Stdout, checkStatusLine(s, snapshot.Health{Verdict: rep.Verdict, Reasons: rep.Reasons}))
			writeCheckTable(os.Stdout, rep)
		}
		if rep.ExitCode != 0 {
			return checkResult{code: rep.ExitCode}
		}
		return nil
	}
}

// unknownMembers says why each member of r got no verdict, for the log.
func unknownMembers(r *consistency.Result) string {
	var parts []string
	for _, m := range r.Members {
		if !m.Compared {
			parts = append(parts, fmt.Sprintf("%s: %s", m.Name, m.Reason))
		}
	}
	return strings.Join(parts, ", ")
}

// exitUnknown is the monitoring-plugins' UNKNOWN: the check could not judge the cluster.
const exitUnknown = 3

// checkUnknown reports err as the UNKNOWN result on w (where a monitoring system reads the
// status) and returns its exit code.
func checkUnknown(w io.Writer, output string, err error) int {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(checkReport{Verdict: "unknown", ExitCode: exitUnknown, Reasons: []string{err.Error()}, Members: []clusterapi.Member{}})
	} else {
		fmt.Fprintf(w, "ETCD UNKNOWN - %s\n", plainText(err.Error()))
	}
	return exitUnknown
}

// checkStatusLine is the first line of the text report: the status a Nagios or Icinga service
// shows, then performance data as the monitoring-plugins guidelines define it
// ('label'=value[UOM];warn;crit;min;max, ranges as "10:" = alert below 10, "~:1" = above 1).
// h is the report's verdict: the snapshot's, worsened by the certificates.
func checkStatusLine(s *snapshot.Snapshot, h snapshot.Health) string {
	c := s.Cluster()
	text := strings.Join(h.Reasons, "; ")
	if h.Verdict == snapshot.Healthy {
		text = fmt.Sprintf("%d of %d members up", c.MembersUp, c.Members)
		for _, m := range s.Members {
			if m.ID == c.Leader {
				text += ", leader " + memberText(m)
			}
		}
	}
	var perf []string
	if !s.Up() {
		// How many members there are is not known ('U'); that none answered is.
		perf = append(perf, "members=U", "members_up=0;;;0", "voting_members_up=0;;;0")
	} else {
		alarms := len(s.UnknownAlarms)
		for _, m := range s.Members {
			for _, on := range m.Alarms {
				if on {
					alarms++
				}
			}
		}
		voting := c.Members - c.Learners
		perf = append(perf,
			fmt.Sprintf("members=%d;;;0", c.Members),
			// A member down is DEGRADED, voting members below quorum CRITICAL.
			fmt.Sprintf("members_up=%d;%d:;;0;%d", c.MembersUp, c.Members, c.Members),
			fmt.Sprintf("voting_members_up=%d;%d:;%d:;0;%d", c.VotingMembersUp, voting, c.Quorum, voting),
			fmt.Sprintf("learners=%d;;;0", c.Learners),
			fmt.Sprintf("quorum=%d;;;0;%d", c.Quorum, voting),
			// No leader is CRITICAL, more than one DEGRADED.
			fmt.Sprintf("leaders=%d;~:1;1:;0", len(c.Leaders)),
			fmt.Sprintf("alarms=%d;0;;0", alarms),
		)
		for _, m := range s.Members {
			label := perfLabel(m)
			db, read := "U", "U" // undetermined, as the guidelines spell it
			if st := m.Status; st != nil {
				db = fmt.Sprintf("%dB;;;0", st.DbSize)
				if st.DbSizeQuota > 0 {
					db += fmt.Sprintf(";%d", st.DbSizeQuota)
				}
			}
			if p, ok := m.Probe(snapshot.ProbeReadLinearizable); ok && p.Err == nil {
				read = fmt.Sprintf("%.6fs;;;0", p.Duration.Seconds())
			}
			perf = append(perf, fmt.Sprintf("'%s db_size'=%s", label, db), fmt.Sprintf("'%s read_linearizable'=%s", label, read))
		}
	}
	return fmt.Sprintf("ETCD %s - %s | %s", strings.ToUpper(string(h.Verdict)), plainText(text), strings.Join(perf, " "))
}

// memberText names a member as the verdict's reasons do.
func memberText(m *snapshot.Member) string {
	if m.Name == "" {
		return snapshot.IDString(m.ID)
	}
	return fmt.Sprintf("%s (%s)", m.Name, snapshot.IDString(m.ID))
}

// perfLabel is a member's name (its ID when it has none) without the characters a quoted
// performance data label cannot hold.
func perfLabel(m *snapshot.Member) string {
	name := m.Name
	if name == "" {
		name = snapshot.IDString(m.ID)
	}
	return strings.Map(func(r rune) rune {
		if r == '\'' || r == '=' || r == '|' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return '_'
		}
		return r
	}, name)
}

// plainText keeps text from etcd (member names, errors) on one line and out of the performance
// data: Nagios reads everything after a '|' as performance data and only the first line as status.
func plainText(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '|' {
			return '/'
		}
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

func buildCheckReport(s *snapshot.Snapshot) checkReport {
	h := s.Health()
	rep := checkReport{Verdict: h.Verdict, ExitCode: h.Verdict.ExitCode(), Reasons: h.Reasons, Members: []clusterapi.Member{}}
	for _, m := range s.Members {
		rep.Members = append(rep.Members, clusterapi.MemberOf(m))
	}
	return rep
}

// writeCheckTable writes the members table that follows the status line.
func writeCheckTable(w io.Writer, rep checkReport) {
	if len(rep.Members) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tID\tENDPOINT\tUP\tLEADER\tRAFT TERM\tRAFT INDEX\tDB SIZE\tALARMS\tLINEARIZABLE READ")
		for _, m := range rep.Members {
			name := plainText(m.Name)
			if name == "" {
				name = "-"
			}
			if m.IsLearner {
				name += " (learner)"
			}
			leader, term, index, db, probe := "-", "-", "-", "-", "-"
			up := "no"
			if st := m.Status; st != nil {
				up = "yes"
				if st.LeaderID != "" {
					leader = st.LeaderID
				}
				if st.IsLeader {
					leader += " (self)"
				}
				term = fmt.Sprint(st.RaftTerm)
				index = fmt.Sprint(st.RaftIndex)
				db = humanize.IBytes(uint64(max(st.DBSizeBytes, 0)))
			}
			for _, p := range m.Probes {
				if p.Kind != snapshot.ProbeReadLinearizable {
					continue
				}
				probe = "failed"
				if p.DurationSeconds != nil {
					probe = fmt.Sprintf("%.1fms", *p.DurationSeconds*1000)
				}
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
				name, m.ID, plainText(endpoint), up, leader, term, index, db, alarms, probe)
		}
		tw.Flush()
	}
}
