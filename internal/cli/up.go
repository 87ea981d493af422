package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/oklog/run"
	"github.com/spf13/cobra"

	"github.com/fso-project/fso/internal/agent"
	"github.com/fso-project/fso/internal/broker"
	"github.com/fso-project/fso/internal/controller"
	"github.com/fso-project/fso/internal/recorder"
)

func newUpCmd(g *globals) *cobra.Command {
	var bc broker.Config
	var w watchFlags
	var auditDir, configFile string
	var key keyFlags
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run broker, recorder and one agent in one process",
		Long: `Runs the embedded broker, the recorder and one agent in one process, over
the same broker interfaces as the separate commands. Other agents can join on
--listen. Ctrl-C stops it cleanly: the agent stops watching, everything it
observed is recorded, then the recorder and the broker stop.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if bc.DataDir == "" {
				return usageError{errors.New("--data is required")}
			}
			if len(w.watch) == 0 && configFile == "" {
				return usageError{errors.New("--watch or --config is required: name at least one directory")}
			}
			if auditDir == "" {
				auditDir = filepath.Join(bc.DataDir, "audit")
			}
			if w.state == "" {
				w.state = filepath.Join(bc.DataDir, "agent")
			}
			auditDir, _ = filepath.Abs(auditDir)
			cfg, err := w.config()
			if err != nil {
				return usageError{err}
			}
			if _, err := agent.New(cfg, nil, nil); err != nil {
				return usageError{err}
			}
			var configSrc []byte
			if configFile != "" {
				if configSrc, err = readUpConfig(configFile, cfg); err != nil {
					return usageError{err}
				}
			}
			logger := g.logger()
			bcfg := bc
			bcfg.DataDir = filepath.Join(bc.DataDir, "broker")
			b, err := broker.Start(bcfg, logger.With("component", "broker"))
			if err != nil {
				return err
			}
			defer b.Shutdown()
			ctx := cmd.Context()

			rnc, err := b.Connect("fso-recorder")
			if err != nil {
				return err
			}
			defer rnc.Close()
			_, rjs, err := setup(ctx, rnc, logger)
			if err != nil {
				return err
			}
			if configSrc != nil {
				rev, err := applyUpConfig(ctx, rjs, configFile, configSrc, controller.AgentRef{ID: cfg.ID, Labels: cfg.Labels})
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "fso up: configuration %s is revision %d\n", configFile, rev)
			}
			cp, err := key.load(auditDir, logger.With("component", "recorder"))
			if err != nil {
				return err
			}
			rcfg := recorder.Config{AuditDir: auditDir}
			rcfg.Checkpoints.Key = cp.Key
			rec, err := recorder.New(rcfg, rjs, logger.With("component", "recorder"))
			if err != nil {
				return err
			}
			anc, err := b.Connect("fso-agent-" + cfg.ID)
			if err != nil {
				return err
			}
			defer anc.Close()
			_, ajs, err := setup(ctx, anc, logger, agent.JetStreamOptions()...)
			if err != nil {
				return err
			}
			ag, err := agent.New(cfg, ajs, logger.With("component", "agent", "agent", cfg.ID))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "fso up: broker %s, audit log %s, agent %s watching %v\n", b.ClientURL(), auditDir, cfg.ID, w.watch)

			// Stop in order: the agent first (it drains into the recorder),
			// then the recorder. run.Group calls the interrupts in order.
			agentCtx, agentCancel := context.WithCancel(ctx)
			recCtx, recCancel := context.WithCancel(context.WithoutCancel(ctx))
			agentDone := make(chan struct{})
			var g run.Group
			g.Add(run.ContextHandler(ctx))
			g.Add(func() error {
				defer close(agentDone)
				return ag.Run(agentCtx)
			}, func(error) { agentCancel() })
			g.Add(func() error { return rec.Run(recCtx) }, func(error) {
				<-agentDone
				recCancel()
			})
			err = g.Run()
			var sig run.SignalError
			if errors.Is(err, context.Canceled) || errors.As(err, &sig) {
				err = nil
			}
			return err
		},
	}
	cmd.Flags().StringVar(&bc.DataDir, "data", "", "data directory: broker store, and by default the audit log and agent state (required)")
	cmd.Flags().StringVar(&auditDir, "audit-dir", "", "audit log directory (default DATA/audit)")
	cmd.Flags().StringVar(&w.state, "state", "", "agent state directory (default DATA/agent)")
	cmd.Flags().StringVar(&configFile, "config", "", "fso.yaml to apply to the agents, as `fso controller apply` does")
	addKeyFlags(cmd, &key)
	addBrokerFlags(cmd, &bc)
	addWatchFlags(cmd, &w)
	addProfileFlags(cmd)
	return cmd
}
