package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/etcd-monitor/etcd-monitor/clusterapi"
	"github.com/etcd-monitor/etcd-monitor/consistency"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
	"github.com/etcd-monitor/etcd-monitor/targets"
)

// checkFleetFlags are check's flags for the clusters of a config file.
type checkFleetFlags struct {
	configFile string
	clusters   []string
	given      singleClusterFlagsGiven
}

// addCheckFleetFlags is called after check's --etcd.* flags are defined.
func addCheckFleetFlags(cmd *kingpin.CmdClause) *checkFleetFlags {
	f := &checkFleetFlags{given: watchSingleClusterFlags(cmd)}
	cmd.Flag("config.file", "The exporter's --config.file: check its clusters instead of the one the --etcd.* flags describe.").StringVar(&f.configFile)
	cmd.Flag("cluster", "With --config.file, the cluster to check (repeatable; default: every cluster of the file).").StringsVar(&f.clusters)
	return f
}

// fleetCheckCluster is one cluster of the fleet report.
type fleetCheckCluster struct {
	Name string `json:"name"`
	checkReport
	// statusLine is the cluster's own status line, as a single-cluster check prints it.
	statusLine string
}

// fleetCheckReport is the whole output of a fleet check: the worst verdict decides.
type fleetCheckReport struct {
	Verdict  snapshot.Verdict    `json:"verdict"`
	ExitCode int                 `json:"exit_code"`
	Clusters []fleetCheckCluster `json:"clusters"`
}

// validate refuses what makes no sense; nil when the fleet check does not apply.
func (f *checkFleetFlags) validate() error {
	if f.configFile == "" {
		if len(f.clusters) > 0 {
			return fmt.Errorf("--cluster needs --config.file")
		}
		return nil
	}
	return f.given.refuse()
}

// run checks the chosen clusters, fleetSnapshots at once, all under ctx's deadline.
// Each cluster is judged as a single-cluster check judges it: its certificates read when it uses
// TLS, and with compare its members' HashKV compared.
func (f *checkFleetFlags) run(ctx context.Context, logger *slog.Logger, output string, compare bool) (checkResult, error) {
	reg, err := targets.New(f.configFile, targets.Options{StatusNeeds: clusterapi.Needs, Logger: logger})
	if err != nil {
		return checkResult{}, err
	}
	defer reg.Close()
	names := reg.Names()
	if len(f.clusters) > 0 {
		for _, n := range f.clusters {
			if !slices.Contains(names, n) {
				return checkResult{}, fmt.Errorf("--cluster %s: not in %s (its clusters: %s)", quoteName(n), f.configFile, strings.Join(names, ", "))
			}
		}
		names = slices.Compact(slices.Sorted(slices.Values(f.clusters)))
	}
	rep := fleetCheckReport{Verdict: snapshot.Healthy, Clusters: make([]fleetCheckCluster, len(names))}
	sem := make(chan struct{}, fleetSnapshots)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			t, release, ok := reg.Acquire(name)
			if !ok {
				return // Names came from this registry, which nothing reloads
			}
			defer release()
			s := t.Taker.Take(ctx, clusterapi.Needs)
			if compare && s.Up() {
				r := consistency.Check(ctx, t.Taker, s)
				s.DataCheck = r.DataCheck()
				if !r.Compared {
					logger.Warn("the members' data could not be compared", "cluster", name, "attempts", r.Attempts, "members", unknownMembers(r))
				}
			}
			cr := addCertificates(buildCheckReport(s), readCertificates(ctx, t.Conn(), s), time.Now())
			rep.Clusters[i] = fleetCheckCluster{Name: name, checkReport: cr, statusLine: checkStatusLine(s, snapshot.Health{Verdict: cr.Verdict, Reasons: cr.Reasons})}
		})
	}
	wg.Wait()
	for _, c := range rep.Clusters {
		if c.ExitCode > rep.ExitCode {
			rep.ExitCode, rep.Verdict = c.ExitCode, c.Verdict
		}
	}
	if output == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return checkResult{code: exitUnknown}, nil
		}
	} else {
		writeFleetCheck(os.Stdout, rep)
	}
	return checkResult{code: rep.ExitCode}, nil
}

// writeFleetCheck writes the fleet's status line (the worst verdict, each cluster that is not
// healthy with its reasons, and counts as performance data), a table of the clusters, then each
// cluster's own status line and member table.
func writeFleetCheck(w io.Writer, rep fleetCheckReport) {
	count := map[snapshot.Verdict]int{}
	var bad []string
	for _, c := range rep.Clusters {
		count[c.Verdict]++
		if c.Verdict != snapshot.Healthy {
			bad = append(bad, fmt.Sprintf("%s %s: %s", c.Name, c.Verdict, strings.Join(c.Reasons, "; ")))
		}
	}
	text := fmt.Sprintf("%d of %d clusters healthy", count[snapshot.Healthy], len(rep.Clusters))
	if len(bad) > 0 {
		text = strings.Join(bad, "; ") + "; " + text
	}
	fmt.Fprintf(w, "ETCD %s - %s | clusters=%d;;;0 healthy=%d;;;0;%d degraded=%d;0;;0 critical=%d;;0;0\n",
		strings.ToUpper(string(rep.Verdict)), plainText(text), len(rep.Clusters), count[snapshot.Healthy], len(rep.Clusters),
		count[snapshot.Degraded], count[snapshot.Critical])
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tVERDICT\tMEMBERS UP\tREASONS")
	for _, c := range rep.Clusters {
		up := 0
		for _, m := range c.Members {
			if m.Up {
				up++
			}
		}
		reasons := "-"
		if len(c.Reasons) > 0 {
			reasons = plainText(strings.Join(c.Reasons, "; "))
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\n", c.Name, c.Verdict, up, len(c.Members), reasons)
	}
	tw.Flush()
	for _, c := range rep.Clusters {
		fmt.Fprintf(w, "\n[%s] %s\n", c.Name, c.statusLine)
		writeCheckTable(w, c.checkReport)
	}
}
