package cli

import (
	"github.com/spf13/cobra"

	"github.com/fso-project/fso/internal/broker"
)

func addBrokerFlags(cmd *cobra.Command, c *broker.Config) {
	cmd.Flags().StringVar(&c.Listen, "listen", "127.0.0.1:4222", "client listen address host:port")
	cmd.Flags().StringVar(&c.Cluster, "cluster", "", "cluster listen address host:port (enables clustering)")
	cmd.Flags().StringSliceVar(&c.Routes, "routes", nil, "other cluster members' cluster URLs, nats://host:port (comma-separated)")
	cmd.Flags().StringVar(&c.Name, "name", "", "this server's unique name (required with --cluster)")
	cmd.Flags().StringVar(&c.MQTT, "mqtt", "", "MQTT listen address host:port, so MQTT clients can watch fso/events/# live")
	addBrokerSecurityFlags(cmd, c)
}

func newBrokerCmd(g *globals) *cobra.Command {
	var c broker.Config
	var so broker.SetupOptions
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run the embedded NATS JetStream broker",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := g.logger().With("component", "broker")
			b, err := broker.Start(c, logger)
			if err != nil {
				return err
			}
			nc, err := b.Connect("fso-broker-setup")
			if err != nil {
				b.Shutdown()
				return err
			}
			if so.Replicas == 0 && c.Cluster != "" {
				// Every member of a cluster creates the stream alike.
				so.Replicas = min(3, 1+len(c.Routes))
			}
			_, _, err = setupWith(cmd.Context(), nc, logger, so)
			if err != nil {
				b.Shutdown()
				return err
			}
			nc.Close()
			return b.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&c.DataDir, "data", "", "JetStream storage directory (required)")
	addBrokerFlags(cmd, &c)
	cmd.Flags().IntVar(&so.Replicas, "replicas", 0, "replicas of the FSO stream and buckets when this broker creates them (default 1, or 3 with --cluster and two or more --routes)")
	cmd.Flags().DurationVar(&so.DuplicateWindow, "dedupe-window", 0, "how long the stream remembers message ids to drop duplicate publishes (default 2m)")
	addProfileFlags(cmd)
	return cmd
}
