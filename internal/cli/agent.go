package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fso-project/fso/internal/agent"
	"github.com/fso-project/fso/internal/event"
)

// watchFlags are the local watch settings of `fso agent` and `fso up`.
type watchFlags struct {
	id        string
	state     string
	watch     []string
	include   []string
	exclude   []string
	events    []string
	labels    []string
	noRecurse bool
	cfg       agent.Config
}

func addWatchFlags(cmd *cobra.Command, w *watchFlags) {
	host, _ := os.Hostname()
	f := cmd.Flags()
	f.StringVar(&w.id, "id", event.SanitizeID(host), "agent id, [a-z0-9-] (default: host name reduced to that)")
	f.StringArrayVar(&w.watch, "watch", nil, "directory to watch recursively (repeatable)")
	f.StringArrayVar(&w.include, "include", nil, "report only paths matching this ** glob, relative to the watched directory (repeatable; default all)")
	f.StringArrayVar(&w.exclude, "exclude", nil, "never report paths matching this ** glob; matching directories are not watched (repeatable)")
	f.StringSliceVar(&w.events, "events", nil, "event types to report: create,modify,delete,rename,attrib (default all)")
	f.StringArrayVar(&w.labels, "label", nil, "label k=v announced to the controller (repeatable)")
	f.BoolVar(&w.noRecurse, "no-recursive", false, "watch only the directories themselves, not their subdirectories")
	f.StringArrayVar(&w.cfg.AllowRoots, "allow-root", nil, "the controller may only make this agent watch inside these directories (repeatable; default anywhere)")
	f.Int64Var(&w.cfg.HashLimit, "hash-limit", 64<<20, "largest file, in bytes, whose sha256 is recorded")
	f.Float64Var(&w.cfg.RateLimit, "rate-limit", 0, "most records per second to publish; the rest wait in the spool, none is dropped (default: no limit)")
	f.Int64Var(&w.cfg.Spool.MaxBytes, "spool-max-bytes", 0, "bound on the agent's spool of unrecorded records (default 1 GiB); past it the agent trims at the broker's ack, then drops with a gap record")
	f.DurationVar(&w.cfg.ScanInterval, "scan-interval", 0, "how often directories that could not be watched are rescanned (default 30s)")
	f.DurationVar(&w.cfg.Debounce, "debounce", 0, "how long a file being written may stay open before its change is reported anyway (default 50ms)")
	f.IntVar(&w.cfg.Bundle, "bundle", 0, "most events sent in one broker message when several are ready together (default 64; 1: one message per event)")
	f.DurationVar(&w.cfg.CommitDelay, "commit-delay", 0, "while changes arrive steadily, how long one may wait for others to share its fsync and publish (default 6ms, at most 100ms; negative: never wait)")
	f.DurationVar(&w.cfg.SpoolSyncAfter, "spool-sync-after", 0, "how long spooled events may wait unsynced for the recorder to fsync them into the audit log first; past it the spool is fsynced (default 500ms, at most 10s; negative: fsync every batch before publishing)")
	f.StringArrayVar(&w.cfg.Important, "important", nil, "publish unified diffs of files matching this ** glob, relative to the watched directory (repeatable)")
	f.StringArrayVar(&w.cfg.NoDiff, "nodiff", agent.DefaultNoDiff(), "important files matching this ** glob get hash-only diff records: their content never leaves the host (repeatable; replaces the default)")
	f.Int64Var(&w.cfg.DiffMax, "diff-max", agent.DefaultDiffMax, "largest important file, in bytes, whose content is diffed; above it only hashes are sent")
}

// config turns the flags into an agent configuration.
func (w *watchFlags) config() (agent.Config, error) {
	c := w.cfg
	c.ID, c.StateDir = w.id, w.state
	var types []event.Type
	for _, e := range w.events {
		t, err := event.ParseType(strings.TrimSpace(e))
		if err != nil {
			return c, fmt.Errorf("--events: %w", err)
		}
		types = append(types, t)
	}
	for _, p := range w.watch {
		abs, err := filepath.Abs(p)
		if err != nil {
			return c, fmt.Errorf("--watch %s: %w", p, err)
		}
		c.Roots = append(c.Roots, agent.Root{Path: abs, Recursive: !w.noRecurse, Include: w.include, Exclude: w.exclude, Events: types})
	}
	for _, l := range w.labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return c, fmt.Errorf("--label %q: want key=value", l)
		}
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		c.Labels[k] = v
	}
	return c, nil
}

func newAgentCmd(g *globals) *cobra.Command {
	var w watchFlags
	var server string
	var sec clientSecurity
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Watch directories and publish every change to the broker",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := g.logger().With("component", "agent")
			cfg, err := w.config()
			if err != nil {
				return usageError{err}
			}
			if _, err := agent.New(cfg, nil, logger); err != nil {
				return usageError{err}
			}
			nc, js, err := connectLaterAs(server, "fso-agent-"+cfg.ID, logger, sec, agent.JetStreamOptions()...)
			if err != nil {
				return err
			}
			defer nc.Close()
			a, err := agent.New(cfg, js, logger.With("agent", cfg.ID))
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&server, "server", defaultServer, "broker URLs, comma-separated")
	cmd.Flags().StringVar(&w.state, "state", "", "state directory: spool and sequence (required)")
	sec.add(cmd)
	addWatchFlags(cmd, &w)
	addProfileFlags(cmd)
	return cmd
}
