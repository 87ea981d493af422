package agent_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fso-project/fso/internal/agent"
	"github.com/fso-project/fso/internal/broker"
	"github.com/fso-project/fso/internal/broker/brokertest"
)

// TestCommitDelaySharesFsyncs: changes arriving steadily wait for each
// other and share one spool fsync; without the commit delay each change a
// few milliseconds after the last is a batch of its own.
func TestCommitDelaySharesFsyncs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		delay  time.Duration
		shared bool // the paced changes share fsyncs
	}{
		{"delay", agent.MaxCommitDelay, true},
		{"none", -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := brokertest.Start(t)
			js, err := jetstream.New(b.Conn(t), agent.JetStreamOptions()...)
			if err != nil {
				t.Fatal(err)
			}
			root := t.TempDir()
			const n = 10
			for i := range n {
				if err := os.WriteFile(filepath.Join(root, "f"+string(rune('a'+i))), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			a, err := agent.New(agent.Config{ID: "a1", StateDir: t.TempDir(), Roots: []agent.Root{{Path: root, Recursive: true}},
				CommitDelay: tc.delay, StatusInterval: 20 * time.Millisecond, DrainTimeout: 100 * time.Millisecond},
				js, slog.New(slog.DiscardHandler))
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
			status := func() agent.Status {
				var st agent.Status
				if e, err := kv.Get(t.Context(), "status.a1"); err == nil {
					json.Unmarshal(e.Value(), &st)
				}
				return st
			}
			published := func(want uint64) agent.Status {
				t.Helper()
				deadline := time.Now().Add(30 * time.Second) // a hang guard
				for {
					if st := status(); st.Published >= want {
						return st
					}
					if time.Now().After(deadline) {
						t.Fatalf("agent did not publish %d records: %+v", want, status())
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				st := status()
				if len(st.Roots) == 1 && st.Roots[0].Watching && !st.LastScan.IsZero() {
					break // armed, and the baseline taken: changes from now on are events
				}
				if time.Now().After(deadline) {
					t.Fatalf("agent not watching: %+v", st)
				}
			}
			// The first change makes the stream "steady" for the delay.
			chmod := func(i int, mode os.FileMode) {
				if err := os.Chmod(filepath.Join(root, "f"+string(rune('a'+i))), mode); err != nil {
					t.Fatal(err)
				}
			}
			chmod(0, 0o600)
			before := published(1)
			for i := range n {
				time.Sleep(8 * time.Millisecond) // without a pause, each change its own kernel read
				chmod(i, 0o640)
			}
			after := published(1 + n)
			syncs := after.SpoolSyncs - before.SpoolSyncs
			t.Logf("%d changes, %d spool fsyncs", n, syncs)
			// Shared: one batch, or a few if the periodic flush (every
			// second) or a slow machine cut the window. Not shared: nearly
			// one each (two changes may share a read on a slow machine).
			if tc.shared && syncs > 3 {
				t.Errorf("with a commit delay, %d paced changes took %d fsyncs, want at most 3", n, syncs)
			}
			if !tc.shared && syncs < n/2 {
				t.Errorf("without a commit delay, %d paced changes took only %d fsyncs", n, syncs)
			}
		})
	}
}
