package cli

import (
	"github.com/spf13/cobra"

	"github.com/fso-project/fso/internal/recorder"
)

func newRecorderCmd(g *globals) *cobra.Command {
	var c recorder.Config
	var server string
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
			nc, js, err := connect(cmd.Context(), server, "fso-recorder", logger)
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
	return cmd
}
