package agent_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fso-project/fso/internal/agent"
	"github.com/fso-project/fso/internal/event"
)

// TestRecreatedRootDescribed: a root deleted and made again is watched and
// described anew: the create of a file in the new directory carries its
// size and hash. (A descriptor of the root kept open, to spare enrich two
// system calls a change, failed this: it held back IN_DELETE_SELF.)
func TestRecreatedRootDescribed(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	ag := startAgent(t, agent.Config{Roots: []agent.Root{{Path: root, Recursive: true}}})
	// Once the baseline is taken, a file made is a create.
	ag.watching(t)
	sub, err := ag.b.Conn(t).SubscribeSync(event.EventsPrefix + ">")
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
