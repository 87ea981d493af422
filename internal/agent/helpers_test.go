package agent_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fso-project/fso/internal/agent"
	"github.com/fso-project/fso/internal/broker"
	"github.com/fso-project/fso/internal/broker/brokertest"
)

// runningAgent is an agent with ID "a1" run against a fresh embedded broker
// until the test ends.
type runningAgent struct {
	b  *brokertest.Broker
	kv jetstream.KeyValue
}

// startAgent runs an agent with cfg (ID and StatusInterval set here, and
// StateDir unless given) against a new embedded broker.
func startAgent(t *testing.T, cfg agent.Config) *runningAgent {
	t.Helper()
	b := brokertest.Start(t)
	js, err := jetstream.New(b.Conn(t), agent.JetStreamOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	cfg.ID, cfg.StatusInterval = "a1", 20*time.Millisecond
	a, err := agent.New(cfg, js, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	kv, err := js.KeyValue(t.Context(), broker.AgentsBucket)
	if err != nil {
		t.Fatal(err)
	}
	return &runningAgent{b: b, kv: kv}
}

// status is the agent's last published status (zero before the first).
func (r *runningAgent) status(t *testing.T) agent.Status {
	var st agent.Status
	if e, err := r.kv.Get(t.Context(), "status.a1"); err == nil {
		json.Unmarshal(e.Value(), &st)
	}
	return st
}

// waitFor polls the status until ok, failing the test after 30 s (a hang
// guard) with what, and returns the status that satisfied it.
func (r *runningAgent) waitFor(t *testing.T, what string, ok func(agent.Status) bool) agent.Status {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if st := r.status(t); ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent %s: %+v", what, r.status(t))
		}
	}
}

// watching waits until the agent watches its one root and has taken its
// baseline: changes from then on are events.
func (r *runningAgent) watching(t *testing.T) {
	t.Helper()
	r.waitFor(t, "not watching", func(st agent.Status) bool {
		return len(st.Roots) == 1 && st.Roots[0].Watching && !st.LastScan.IsZero()
	})
}
