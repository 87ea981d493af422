package cli

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/fso-project/fso/internal/recorder"
)

func newRecorderCmd(g *globals) *cobra.Command {
	var c recorder.Config
	var server string
	var k keyFlags
	var sec clientSecurity
	cmd := &cobra.Command{
		Use:   "recorder",
		Short: "Append every event and diff to the audit log, exactly once, in order",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := g.logger().With("component", "recorder")
			r, err := recorder.New(c, nil, logger)
			if err != nil {
				return usageError{err}
			}
			cp, err := k.load(c.AuditDir, logger)
			if err != nil {
				return err
			}
			c.Checkpoints.Key = cp.Key
			nc, js, err := connectAs(cmd.Context(), server, "fso-recorder", logger, sec)
			if err != nil {
				return err
			}
			defer nc.Close()
			r, _ = recorder.New(c, js, logger)
			return r.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&server, "server", defaultServer, "broker URLs, comma-separated")
	cmd.Flags().StringVar(&c.AuditDir, "audit-dir", "", "audit log directory (required)")
	addKeyFlags(cmd, &k)
	sec.add(cmd)
	cmd.Flags().StringVar(&c.Checkpoints.Name, "name", "recorder", "this recorder's name in its checkpoints (broker key checkpoint.NAME)")
	cmd.Flags().Int64Var(&c.Checkpoints.Every, "checkpoint-every", 10000, "write a signed checkpoint after this many records")
	cmd.Flags().DurationVar(&c.Checkpoints.Interval, "checkpoint-interval", time.Minute, "write a signed checkpoint at least this often while records arrive")
	cmd.AddCommand(newRecorderPubkeyCmd())
	addProfileFlags(cmd)
	return cmd
}
