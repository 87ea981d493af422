package cli

import (
	"context"
	"fmt"
	"os"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fso-project/fso/internal/agent"
	"github.com/fso-project/fso/internal/agentconfig"
	"github.com/fso-project/fso/internal/controller"
)

// readUpConfig reads and validates `fso up --config FILE` before anything
// starts, for the agent cfg describes.
func readUpConfig(file string, cfg agent.Config) ([]byte, error) {
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	doc, err := agentconfig.Parse(file, src)
	if err != nil {
		return nil, err
	}
	ac := doc.Render(cfg.ID, cfg.Labels)
	if err := ac.Check(); err != nil {
		return nil, fmt.Errorf("%s: agent %s: %w", file, cfg.ID, err)
	}
	if err := ac.CheckAllowed(cfg.AllowRoots); err != nil {
		return nil, fmt.Errorf("%s: agent %s: %w", file, cfg.ID, err)
	}
	return src, nil
}

// applyUpConfig applies src through the controller, the same way `fso
// controller apply` does, unless it is the revision already in force.
func applyUpConfig(ctx context.Context, js jetstream.JetStream, file string, src []byte, self controller.AgentRef) (uint64, error) {
	c, err := controller.New(ctx, js)
	if err != nil {
		return 0, err
	}
	cur, rev, err := c.Current(ctx)
	if err != nil {
		return 0, err
	}
	if rev != 0 && agentconfig.DocHash(cur) == agentconfig.DocHash(src) {
		return rev, nil
	}
	plan, err := c.Apply(ctx, file, src, controller.ApplyOptions{By: "fso up " + whoAmI(), Agents: []controller.AgentRef{self}})
	if err != nil {
		return 0, err
	}
	return plan.Revision, nil
}
