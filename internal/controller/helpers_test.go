package controller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fso-project/fso/internal/agent"
	"github.com/fso-project/fso/internal/broker"
	"github.com/fso-project/fso/internal/controller"
	"github.com/fso-project/fso/internal/event"
)

// wait bounds how long a test waits for the system to converge; it is a
// hang guard, not a latency assertion.
const wait = 30 * time.Second

// testBroker is a broker on a fixed loopback port, so it can be restarted
// and clients reconnect to it.
type testBroker struct {
	t    testing.TB
	dir  string
	addr string
	b    *broker.Broker
}

func startBroker(t testing.TB) *testBroker {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	tb := &testBroker{t: t, dir: t.TempDir(), addr: addr}
	tb.start()
	t.Cleanup(func() {
		if tb.b != nil {
			tb.b.Shutdown()
		}
	})
	return tb
}

func (tb *testBroker) start() {
	tb.t.Helper()
	b, err := broker.Start(broker.Config{DataDir: tb.dir, Listen: tb.addr}, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.t.Fatalf("start broker: %v", err)
	}
	tb.b = b
}

func (tb *testBroker) stop() {
	tb.b.Shutdown()
	tb.b = nil
}

// connect returns a TCP client that reconnects forever, with FSO's stream
// and buckets set up.
func (tb *testBroker) connect(t testing.TB, opts ...jetstream.JetStreamOpt) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect("nats://"+tb.addr, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := broker.Setup(ctx, js, broker.SetupOptions{}); err != nil {
		t.Fatal(err)
	}
	return js
}

func newController(t testing.TB, tb *testBroker) *controller.Controller {
	t.Helper()
	c, err := controller.New(t.Context(), tb.connect(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type runningAgent struct {
	a    *agent.Agent
	stop func()
}

// startAgent runs an agent with id, labels, --allow-root allow and local
// roots; it stops at cleanup or on stop().
func startAgent(t testing.TB, tb *testBroker, id string, labels map[string]string, allow []string, roots ...string) *runningAgent {
	t.Helper()
	cfg := agent.Config{ID: id, Labels: labels, StateDir: t.TempDir(), AllowRoots: allow, DrainTimeout: 100 * time.Millisecond}
	for _, r := range roots {
		cfg.Roots = append(cfg.Roots, agent.Root{Path: r, Recursive: true})
	}
	a, err := agent.New(cfg, tb.connect(t, agent.JetStreamOptions()...), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Run(ctx)
	}()
	// The controller renders configuration for agents that have reported:
	// wait for this one's first status.
	js := tb.connect(t)
	until(t, id+" to report its status", func() bool {
		kv, err := js.KeyValue(t.Context(), broker.AgentsBucket)
		if err != nil {
			return false
		}
		_, err = kv.Get(t.Context(), "status."+id)
		return err == nil
	})
	ra := &runningAgent{a: a}
	stopped := false
	ra.stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(ra.stop)
	return ra
}

// status reads agent id's status.
func status(t testing.TB, c *controller.Controller, id string) (controller.AgentStatus, bool) {
	t.Helper()
	sts, err := c.Statuses(t.Context())
	if err != nil {
		return controller.AgentStatus{}, false
	}
	for _, st := range sts {
		if st.ID == id {
			return st, true
		}
	}
	return controller.AgentStatus{}, false
}

// until polls cond until it holds, failing the test after wait.
func until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitApplied waits until agent id's status shows revision rev applied
// (or rejected, when rejected is set) and returns the status.
func waitApplied(t testing.TB, c *controller.Controller, id string, rev uint64) controller.AgentStatus {
	t.Helper()
	var st controller.AgentStatus
	until(t, fmt.Sprintf("%s to apply revision %d", id, rev), func() bool {
		var ok bool
		st, ok = status(t, c, id)
		return ok && st.ConfigApplied >= rev
	})
	return st
}

func waitRejected(t testing.TB, c *controller.Controller, id string, rev uint64) controller.AgentStatus {
	t.Helper()
	var st controller.AgentStatus
	until(t, fmt.Sprintf("%s to reject revision %d", id, rev), func() bool {
		var ok bool
		st, ok = status(t, c, id)
		return ok && st.ConfigRejected != nil && st.ConfigRejected.Revision >= rev
	})
	return st
}

// events subscribes to agent id's events (core NATS sees what is
// published to the stream).
func events(t testing.TB, tb *testBroker, id string) <-chan event.Event {
	t.Helper()
	nc, err := nats.Connect("nats://" + tb.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ch := make(chan event.Event, 1024)
	_, err = nc.Subscribe(event.EventsPrefix+id+".>", func(m *nats.Msg) {
		var e event.Event
		if json.Unmarshal(m.Data, &e) == nil && e.Kind == event.KindEvent {
			ch <- e
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	return ch
}

// nextEvent returns the next event whose path has prefix.
func nextEvent(t testing.TB, ch <-chan event.Event, prefix string) event.Event {
	t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case e := <-ch:
			if strings.HasPrefix(e.Path, prefix) {
				return e
			}
		case <-timeout:
			t.Fatalf("no event under %s", prefix)
		}
	}
}

func write(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func dirs(t testing.TB, n int) []string {
	t.Helper()
	base := t.TempDir()
	var out []string
	for i := range n {
		d := filepath.Join(base, fmt.Sprintf("d%d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

func apply(t testing.TB, c *controller.Controller, doc string) uint64 {
	t.Helper()
	plan, err := c.Apply(t.Context(), "fso.yaml", []byte(doc), controller.ApplyOptions{By: "test"})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return plan.Revision
}
