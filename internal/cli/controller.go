package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fso-project/fso/internal/agentconfig"
	"github.com/fso-project/fso/internal/controller"
)

// controllerFlags are the flags every controller subcommand has.
type controllerFlags struct {
	server  string
	timeout time.Duration
	json    bool
	sec     clientSecurity
}

func (f *controllerFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.server, "server", defaultServer, "broker URLs, comma-separated")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 15*time.Second, "give up when the broker does not answer within this time")
	cmd.Flags().BoolVar(&f.json, "json", false, "print JSON")
	f.sec.add(cmd)
}

// open connects and returns a controller; close releases the connection.
func (f *controllerFlags) open(ctx context.Context, g *globals) (*controller.Controller, context.Context, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	logger := g.logger().With("component", "controller")
	nc, js, err := connectAs(ctx, f.server, "fso-controller", logger, f.sec)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	c, err := controller.New(ctx, js)
	if err != nil {
		nc.Close()
		cancel()
		return nil, nil, nil, err
	}
	return c, ctx, func() { nc.Close(); cancel() }, nil
}

func whoAmI() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

func newControllerCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Configure agents live through the broker",
		Long: `Writes fso.yaml into the broker's fso-config bucket (versioned, with
compare-and-set), and reads what each agent applied from fso-agents.`,
	}
	cmd.AddCommand(newApplyCmd(g), newGetCmd(g), newAgentsCmd(g), newRollbackCmd(g), newHistoryCmd(g))
	return cmd
}

func newApplyCmd(g *globals) *cobra.Command {
	var f controllerFlags
	var file string
	var dry bool
	var ifRev uint64
	cmd := &cobra.Command{
		Use:   "apply -f fso.yaml",
		Short: "Validate fso.yaml and make it the agents' configuration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageError{errors.New("-f is required: name the fso.yaml to apply")}
			}
			src, err := os.ReadFile(file)
			if err != nil {
				return usageError{fmt.Errorf("-f: %w", err)}
			}
			// Refuse an invalid file before touching the broker.
			if _, err := agentconfig.Parse(file, src); err != nil {
				return err
			}
			c, ctx, done, err := f.open(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer done()
			plan, err := c.Apply(ctx, file, src, controller.ApplyOptions{By: whoAmI(), DryRun: dry, IfRevision: ifRev})
			if err != nil {
				return err
			}
			return printPlan(cmd.OutOrStdout(), plan, dry, f.json)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "the fso.yaml to apply (required)")
	cmd.Flags().BoolVar(&dry, "dry-run", false, "validate and print, per agent, what would change; write nothing")
	cmd.Flags().Uint64Var(&ifRev, "if-revision", 0, "apply only if the current revision is this one")
	f.add(cmd)
	return cmd
}

func printPlan(w io.Writer, plan controller.Plan, dry, asJSON bool) error {
	if asJSON {
		return writeJSON(w, plan)
	}
	if dry {
		fmt.Fprintf(w, "dry run over revision %d: nothing written\n", plan.Previous)
	} else {
		fmt.Fprintf(w, "revision %d applied (previous %d), sha256 %s\n", plan.Revision, plan.Previous, plan.SHA256[:12])
	}
	if len(plan.Agents) == 0 {
		fmt.Fprintln(w, "no agent has reported yet; each applies it when it starts")
	}
	for _, a := range plan.Agents {
		state := ""
		if !a.Online {
			state = " (offline: applies it when it starts)"
		}
		if len(a.Changes) == 0 {
			fmt.Fprintf(w, "%s: unchanged%s\n", a.ID, state)
			continue
		}
		fmt.Fprintf(w, "%s:%s\n", a.ID, state)
		for _, c := range a.Changes {
			fmt.Fprintf(w, "  %s\n", c)
		}
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newGetCmd(g *globals) *cobra.Command {
	var f controllerFlags
	var id string
	cmd := &cobra.Command{
		Use:   "get [--agent ID]",
		Short: "Print the applied fso.yaml, or one agent's effective configuration, with its revision",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := f.open(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer done()
			out := cmd.OutOrStdout()
			if id == "" {
				src, rev, err := c.Current(ctx)
				if err != nil {
					return err
				}
				if f.json {
					return writeJSON(out, map[string]any{"revision": rev, "document": string(src)})
				}
				fmt.Fprintf(out, "# revision %d\n%s", rev, src)
				return nil
			}
			eff, err := c.Get(ctx, id)
			if err != nil {
				return err
			}
			if f.json {
				return writeJSON(out, eff)
			}
			fmt.Fprintf(out, "# agent %s, revision %d", id, eff.Config.Revision)
			if !eff.Known {
				fmt.Fprint(out, " (agent has not reported; rendered without labels)")
			}
			fmt.Fprintln(out)
			return writeJSON(out, eff.Config)
		},
	}
	cmd.Flags().StringVar(&id, "agent", "", "agent id: print its effective configuration")
	f.add(cmd)
	return cmd
}

// AgentRow is one line of `fso controller agents`.
type agentRow struct {
	ID           string                  `json:"id"`
	Labels       map[string]string       `json:"labels,omitempty"`
	Host         string                  `json:"host"`
	Online       bool                    `json:"online"`
	HeartbeatAge string                  `json:"heartbeat_age"`
	Applied      uint64                  `json:"applied_revision"`
	Desired      uint64                  `json:"desired_revision"`
	Rejected     *controller.Rejection   `json:"rejected,omitempty"`
	Watched      []string                `json:"watched"`
	Roots        []controller.RootStatus `json:"roots"`
	Watches      int                     `json:"watches"`
	EventsPerSec float64                 `json:"events_per_sec"`
	SpoolDepth   int                     `json:"spool_depth"`
	Recorded     uint64                  `json:"recorded_watermark"`
	LastError    string                  `json:"last_error,omitempty"`
}

func newAgentsCmd(g *globals) *cobra.Command {
	var f controllerFlags
	cmd := &cobra.Command{
		Use:   "agents",
		Short: "List agents: online, applied vs desired revision, watched directories, rates, spool, watermark, last error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := f.open(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer done()
			_, desired, err := c.Current(ctx)
			if err != nil {
				return err
			}
			sts, err := c.Statuses(ctx)
			if err != nil {
				return err
			}
			var rows []agentRow
			for _, st := range sts {
				age := time.Since(st.Heartbeat).Truncate(time.Second)
				r := agentRow{ID: st.ID, Labels: st.Labels, Host: st.Host,
					Online: st.Online && age < 3*5*time.Second, HeartbeatAge: age.String(),
					Applied: st.ConfigApplied, Desired: max(desired, st.ConfigDesired), Rejected: st.ConfigRejected,
					Roots: st.Roots, Watches: st.Watches, EventsPerSec: st.EventsPerSec, SpoolDepth: st.SpoolEntries,
					Recorded: st.Recorded, LastError: st.LastError}
				for _, rt := range st.Roots {
					if rt.Watching {
						r.Watched = append(r.Watched, rt.Path)
					}
				}
				if r.Rejected != nil && r.Rejected.Revision > r.Applied {
					r.LastError = fmt.Sprintf("revision %d rejected: %s", r.Rejected.Revision, r.Rejected.Reason)
				}
				rows = append(rows, r)
			}
			out := cmd.OutOrStdout()
			if f.json {
				if rows == nil {
					rows = []agentRow{}
				}
				return writeJSON(out, rows)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tLABELS\tHOST\tONLINE\tREVISION\tWATCHED\tEV/S\tSPOOL\tRECORDED\tLAST ERROR")
			for _, r := range rows {
				online := "no (" + r.HeartbeatAge + " ago)"
				if r.Online {
					online = "yes (" + r.HeartbeatAge + ")"
				}
				var labels []string
				for k, v := range r.Labels {
					labels = append(labels, k+"="+v)
				}
				slices.Sort(labels)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%.1f\t%d\t%d\t%s\n", r.ID, orDash(strings.Join(labels, ",")), r.Host,
					online, r.Applied, r.Desired, orDash(strings.Join(r.Watched, ",")), r.EventsPerSec, r.SpoolDepth, r.Recorded,
					orDash(oneLine(r.LastError)))
			}
			return tw.Flush()
		},
	}
	f.add(cmd)
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

func newRollbackCmd(g *globals) *cobra.Command {
	var f controllerFlags
	var to uint64
	cmd := &cobra.Command{
		Use:   "rollback --to REV",
		Short: "Apply an earlier revision again, as a new revision",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == 0 {
				return usageError{errors.New("--to is required: a revision from `fso controller history`")}
			}
			c, ctx, done, err := f.open(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer done()
			plan, err := c.Rollback(ctx, to, controller.ApplyOptions{By: whoAmI()})
			if err != nil {
				return err
			}
			return printPlan(cmd.OutOrStdout(), plan, false, f.json)
		},
	}
	cmd.Flags().Uint64Var(&to, "to", 0, "the revision to restore (required)")
	f.add(cmd)
	return cmd
}

func newHistoryCmd(g *globals) *cobra.Command {
	var f controllerFlags
	cmd := &cobra.Command{
		Use:   "history",
		Short: "List the stored revisions of the configuration (the last 64)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := f.open(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer done()
			revs, err := c.History(ctx)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if f.json {
				if revs == nil {
					revs = []controller.Revision{}
				}
				return writeJSON(out, revs)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REVISION\tWRITTEN\tSHA256")
			for _, r := range revs {
				fmt.Fprintf(tw, "%d\t%s\t%s\n", r.Revision, r.Created.Format(time.RFC3339), r.SHA256[:12])
			}
			return tw.Flush()
		},
	}
	f.add(cmd)
	return cmd
}
