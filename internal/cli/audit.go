package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/fso-project/fso/internal/auditlog"
	"github.com/fso-project/fso/internal/event"
)

func newAuditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Read and verify the audit log",
	}
	cmd.AddCommand(newAuditVerifyCmd(), newAuditQueryCmd(false), newAuditQueryCmd(true), newAuditShowCmd(), newAuditHistoryCmd(), newAuditReconstructCmd())
	return cmd
}

func newAuditVerifyCmd() *cobra.Command {
	var dir string
	var quiet bool
	var vf verifyFlags
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the hash chain of every record and each agent's completeness",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			var last time.Time
			progress := func(done, total int64) {
				if quiet || total < 64<<20 || time.Since(last) < time.Second {
					return
				}
				last = time.Now()
				fmt.Fprintf(cmd.ErrOrStderr(), "verify: %d/%d MB\n", done>>20, total>>20)
			}
			o, err := vf.options(cmd.Context())
			if err != nil {
				return err
			}
			o.Progress = progress
			rep, err := auditlog.VerifyWith(cmd.Context(), dir, o)
			if err != nil {
				return err
			}
			printCheckpoints(out, rep, o)
			fmt.Fprintf(out, "%d records in %d segments, %d bytes, head %s\n", rep.Records, rep.Segments, rep.Bytes, rep.Head)
			bad := rep.Problem != nil
			for a, ar := range rep.Agents {
				fmt.Fprintf(out, "agent %s: %d records, seq %d..%d, %d gap records", a, ar.Records, ar.FirstSeq, ar.LastSeq, ar.Gaps)
				if ar.MissingCount > 0 {
					bad = true
					fmt.Fprintf(out, ", MISSING %d seqs without a gap record: %v", ar.MissingCount, ar.Missing)
				}
				fmt.Fprintln(out)
			}
			if rep.Problem != nil {
				p := rep.Problem
				return fmt.Errorf("audit log is not intact: %s", p)
			}
			if bad {
				return errors.New("audit log is not complete: seqs missing without a gap record")
			}
			fmt.Fprintln(out, "OK")
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "audit-dir", "", "audit log directory (required)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress")
	addVerifyFlags(cmd, &vf)
	cmd.MarkFlagRequired("audit-dir")
	return cmd
}

func newAuditQueryCmd(follow bool) *cobra.Command {
	var dir, since, until string
	var f auditlog.Filter
	var asJSON bool
	use, short := "query", "Print the records that match the filters"
	if follow {
		use, short = "tail", "Print matching records as they are recorded"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if f.Since, err = parseTime("--since", since); err != nil {
				return usageError{err}
			}
			if f.Until, err = parseTime("--until", until); err != nil {
				return usageError{err}
			}
			print := printer(cmd.OutOrStdout(), asJSON)
			if follow {
				err = auditlog.Tail(cmd.Context(), dir, f, print)
				if errors.Is(err, context.Canceled) {
					err = nil
				}
				return err
			}
			return auditlog.Query(cmd.Context(), dir, f, print)
		},
	}
	cmd.Flags().StringVar(&dir, "audit-dir", "", "audit log directory (required)")
	cmd.MarkFlagRequired("audit-dir")
	cmd.Flags().StringArrayVar(&f.Paths, "path", nil, "** glob on the path (or a rename's old path) (repeatable)")
	cmd.Flags().StringSliceVar(&f.Agents, "agent", nil, "agent ids")
	cmd.Flags().StringSliceVar(&f.Types, "type", nil, "event types: create,modify,delete,rename,attrib")
	cmd.Flags().StringSliceVar(&f.Kinds, "kind", nil, "record kinds: event,diff,gap,overflow,rejected")
	cmd.Flags().StringVar(&since, "since", "", "only records observed at or after this time (RFC 3339, or a duration ago like 1h)")
	cmd.Flags().StringVar(&until, "until", "", "only records observed before this time (RFC 3339, or a duration ago)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the records as they are stored, one JSON object a line")
	return cmd
}

func newAuditShowCmd() *cobra.Command {
	var dir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show EVENT_ID",
		Short: "Print one event and the records linked to it (its diff)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			n := 0
			print := printer(cmd.OutOrStdout(), asJSON)
			err := auditlog.Query(cmd.Context(), dir, auditlog.Filter{}, func(r auditlog.Record) error {
				if r.ID == id || r.EventID == id {
					n++
					if err := print(r); err != nil || asJSON || r.Kind != event.KindDiff {
						return err
					}
					return printDiff(cmd.OutOrStdout(), dir, r) // audit_history.go
				}
				return nil
			})
			if err == nil && n == 0 {
				err = fmt.Errorf("no record with id %s in %s", id, dir)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "audit-dir", "", "audit log directory (required)")
	cmd.MarkFlagRequired("audit-dir")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the stored JSON lines")
	return cmd
}

func printer(w io.Writer, asJSON bool) func(auditlog.Record) error {
	return func(r auditlog.Record) error {
		var err error
		if asJSON {
			_, err = fmt.Fprintf(w, "%s\n", r.Raw)
		} else {
			_, err = fmt.Fprintln(w, auditlog.FormatText(r))
		}
		return err
	}
}

func parseTime(flag, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q: want RFC 3339 (2026-11-26T10:00:00Z) or a duration (90m)", flag, s)
	}
	return t, nil
}
