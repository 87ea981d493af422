package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fso-project/fso/internal/auditlog"
	"github.com/fso-project/fso/internal/history"
)

// printDiff prints the unified diff of diff record r, indented, after its
// line, or what stands in for it (binary, truncated).
func printDiff(w io.Writer, dir string, r auditlog.Record) error {
	text, err := history.DiffText(dir, r.Raw)
	if err != nil {
		_, err = fmt.Fprintf(w, "    (diff unavailable: %v)\n", err)
		return err
	}
	if text == "" {
		return nil
	}
	for _, l := range strings.SplitAfter(strings.TrimSuffix(text, "\n"), "\n") {
		if _, err := fmt.Fprintf(w, "    %s", strings.TrimSuffix(l, "\n")+"\n"); err != nil {
			return err
		}
	}
	return nil
}

func newAuditHistoryCmd() *cobra.Command {
	var dir, agentID string
	cmd := &cobra.Command{
		Use:   "history PATH",
		Short: "List a file's recorded changes over time, with the content hash after each",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n := 0
			err := history.Replay(cmd.Context(), dir, args[0], agentID, func(s history.Step) error {
				n++
				_, err := fmt.Fprintln(cmd.OutOrStdout(), s.Summary())
				return err
			})
			if err == nil && n == 0 {
				err = fmt.Errorf("no record of %s in %s", args[0], dir)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "audit-dir", "", "audit log directory (required)")
	cmd.MarkFlagRequired("audit-dir")
	cmd.Flags().StringVar(&agentID, "agent", "", "only this agent's records (when several report the path)")
	return cmd
}

func newAuditReconstructCmd() *cobra.Command {
	var dir, agentID, at string
	cmd := &cobra.Command{
		Use:   "reconstruct PATH",
		Short: "Print a file's content at a time, rebuilt from the recorded diffs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t := time.Now()
			if at != "" {
				var err error
				if t, err = parseTime("--at", at); err != nil {
					return usageError{err}
				}
			}
			b, _, err := history.Reconstruct(cmd.Context(), dir, args[0], agentID, t)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "audit-dir", "", "audit log directory (required)")
	cmd.MarkFlagRequired("audit-dir")
	cmd.Flags().StringVar(&agentID, "agent", "", "only this agent's records (when several report the path)")
	cmd.Flags().StringVar(&at, "at", "", "time (RFC 3339, or a duration ago like 1h); default now")
	return cmd
}
