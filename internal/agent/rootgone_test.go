package agent_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	"github.com/fso-project/fso/internal/event"
)

// TestRecreatedRootDescribed: a root deleted and made again is watched and
// described anew: the create of a file in the new directory carries its
// size and hash. (A descriptor of the root kept open, to spare enrich two
// system calls a change, failed this: it held back IN_DELETE_SELF.)
func TestRecreatedRootDescribed(t *testing.T) {
	b := brokertest.Start(t)
	js, err := jetstream.New(b.Conn(t), agent.JetStreamOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{ID: "a1", StateDir: t.TempDir(), Roots: []agent.Root{{Path: root, Recursive: true}},
		StatusInterval: 20 * time.Millisecond}, js, slog.New(slog.DiscardHandler))
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
	// watching waits until the agent watches the root and has taken its
	// baseline: a file made before is part of that, not a create.
	watching := func() {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			var st agent.Status
			if e, err := kv.Get(t.Context(), "status.a1"); err == nil {
				json.Unmarshal(e.Value(), &st)
			}
			if len(st.Roots) == 1 && st.Roots[0].Watching && !st.LastScan.IsZero() {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("agent not watching: %+v", st)
			}
		}
	}
	watching()
	sub, err := b.Conn(t).SubscribeSync(event.EventsPrefix + ">")
	if err != nil {
		t.Fatal(err)
	}
	// waitCreate returns the create event of p, writing content to p
	// until it comes: the root may not be watched again yet.
	waitCreate := func(p, content string) *event.Event {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second) // a hang guard
		made := time.Now()
		for time.Now().Before(deadline) {
			if _, err := os.Stat(p); err != nil {
				os.WriteFile(p, []byte(content), 0o644)
			} else if time.Since(made) > time.Second {
				// Made before the new root was watched: its create was
				// not seen, so make it again.
				os.Remove(p)
				made = time.Now()
			}
			for {
				m, err := sub.NextMsg(200 * time.Millisecond)
				if err != nil {
					break
				}
				var recs []event.Record
				if event.IsBundle(m.Subject) {
					for _, l := range event.DecodeBundle(m.Subject, m.Data) {
						recs = append(recs, l.Record)
					}
				} else if r, err := event.Decode(m.Subject, m.Data); err == nil {
					recs = append(recs, r)
				}
				for _, r := range recs {
					if e := r.Event; e != nil && e.Path == p && e.Type == event.Create {
						return e
					}
				}
			}
		}
		t.Fatalf("no create event for %s", p)
		return nil
	}
	check := func(e *event.Event, content string) {
		t.Helper()
		sum := sha256.Sum256([]byte(content))
		if e.Size == nil || *e.Size != int64(len(content)) || e.SHA256 != hex.EncodeToString(sum[:]) {
			t.Fatalf("%s: size %v sha256 %q; want %d bytes hashing to %x", e.Path, e.Size, e.SHA256, len(content), sum)
		}
	}
	check(waitCreate(filepath.Join(root, "first"), "one\n"), "one\n")
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	check(waitCreate(filepath.Join(root, "second"), "two, longer\n"), "two, longer\n")
}
