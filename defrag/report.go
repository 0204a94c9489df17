package defrag

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteText prints the plan or the results as a table, then one summary line.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ORDER\tNAME\tID\tROLE\tDB SIZE\tIN USE\tFREE\tQUOTA USED\tSTATE\tAFTER\tRECLAIMED\tREASON")
	for _, m := range r.Members {
		order := "-"
		if m.Order > 0 {
			order = fmt.Sprint(m.Order)
		}
		role := "follower"
		switch {
		case m.Learner:
			role = "learner"
		case m.Leader:
			role = "leader"
		}
		size, inUse, free, quota := "-", "-", "-", "-"
		if m.Before.DBSize > 0 {
			size, inUse = HumanBytes(m.Before.DBSize), HumanBytes(m.Before.DBSizeInUse)
			free = fmt.Sprintf("%s (%.0f%%)", HumanBytes(m.Before.Free()), 100*m.Before.FreeRatio())
			if m.Before.Quota > 0 {
				quota = fmt.Sprintf("%.0f%%", 100*m.Before.QuotaUsage())
				if m.QuotaSource == "flag" {
					quota += " (flag)"
				}
			}
		}
		after, reclaimed := "-", "-"
		if m.After != nil {
			after, reclaimed = HumanBytes(m.After.DBSize), HumanBytes(m.Reclaimed())
		}
		reason := m.Reason
		if m.Error != "" {
			reason = m.Error
		}
		name := m.Name
		if name == "" {
			name = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			order, name, m.ID, role, size, inUse, free, quota, m.State, after, reclaimed, reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	planned := len(ordered(r.Members))
	switch {
	case r.DryRun:
		fmt.Fprintf(w, "DRY RUN: %d member(s) would be defragmented, in the order shown; nothing was changed\n", planned)
		if r.Blocked != "" {
			fmt.Fprintf(w, "A run would not start now: %s\n", r.Blocked)
		}
		return nil
	case !r.Success:
		fmt.Fprintf(w, "FAILED after %d of %d member(s), %s reclaimed: %s\n", r.Defragmented(), planned, HumanBytes(r.Reclaimed()), r.Error)
	default:
		fmt.Fprintf(w, "OK: %d member(s) defragmented in %.1fs, %s reclaimed\n", r.Defragmented(), r.DurationSeconds, HumanBytes(r.Reclaimed()))
	}
	if r.NoSpace != "" {
		fmt.Fprintf(w, "NOSPACE alarm: %s\n", r.NoSpace)
	}
	return nil
}

// WriteJSON prints the report as one indented object.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
