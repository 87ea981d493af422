package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fso-project/fso/internal/agent"
	"github.com/fso-project/fso/internal/broker"
	"github.com/fso-project/fso/internal/broker/brokertest"
	"github.com/fso-project/fso/internal/event"
	"github.com/fso-project/fso/internal/spool"
	"github.com/fso-project/fso/internal/testdisk"
)

// TestSpoolSyncDeferred: events go out without a spool fsync. Those the
// recorder confirms in time (its watermark, put here by the test) never
// cost one; those it does not are fsynced once SpoolSyncAfter has passed.
func TestSpoolSyncDeferred(t *testing.T) {
	for _, recorded := range []bool{true, false} {
		t.Run(fmt.Sprintf("recorded=%v", recorded), func(t *testing.T) {
			t.Parallel()
			root, state := t.TempDir(), t.TempDir()
			const after = 2 * time.Second
			ag := startAgent(t, agent.Config{Roots: []agent.Root{{Path: root, Recursive: true}},
				StateDir: state, SpoolSyncAfter: after, DrainTimeout: 100 * time.Millisecond})
			ag.watching(t)
			st0 := ag.status(t)
			start := time.Now()
			const n = 5
			for i := range n {
				if err := os.WriteFile(filepath.Join(root, fmt.Sprint("f", i)), []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			st := ag.waitFor(t, "did not publish", func(st agent.Status) bool { return st.Published >= st0.Published+n })
			if time.Since(start) < after && st.SpoolSyncs != st0.SpoolSyncs {
				t.Fatalf("%d spool fsyncs before SpoolSyncAfter, want none", st.SpoolSyncs-st0.SpoolSyncs)
			}
			if b, err := os.ReadFile(filepath.Join(state, "spool-unsynced")); err != nil || len(strings.TrimSpace(string(b))) == 0 {
				t.Fatalf("unsynced marker: %q, %v; want this boot's id", b, err)
			}
			if recorded {
				if _, err := ag.kv.Put(t.Context(), "recorded.a1", []byte(strconv.FormatUint(st.Published, 10))); err != nil {
					t.Fatal(err)
				}
				ag.waitFor(t, "did not take the watermark", func(s agent.Status) bool { return s.Recorded >= st.Published })
			}
			// Past SpoolSyncAfter and the agent's once-a-second check.
			time.Sleep(time.Until(start.Add(after + 1500*time.Millisecond)))
			syncs := ag.status(t).SpoolSyncs - st0.SpoolSyncs
			switch {
			case recorded && syncs != 0:
				t.Errorf("records the recorder had in time: %d spool fsyncs, want 0", syncs)
			case !recorded && syncs == 0:
				t.Errorf("records the recorder did not have: no spool fsync after %v", after)
			}
		})
	}
}

// TestSpoolUnsyncedAfterReboot: a marker from another boot means the
// machine went down while deferred records may have been only in the page
// cache; one that records a failed fsync, or cannot be read, is taken the
// same way. The agent declares the seqs from its spool's end to past what
// the marker reserved a gap, numbers on after them, and removes the marker
// at its clean stop. A marker from this boot (the process was killed, the
// kernel kept the writes) declares nothing.
func TestSpoolUnsyncedAfterReboot(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Skip("no boot id here:", err)
	}
	boot := strings.TrimSpace(string(b))
	const reserved = 200_000
	for _, tc := range []struct {
		name   string
		marker string
		gap    bool
	}{
		{"other boot", `{"boot":"00000000-0000-0000-0000-000000000000","reserved":200000}`, true},
		{"fsync failed", `{"boot":"` + boot + `","reserved":200000,"sync_failed":"fdatasync: input/output error"}`, true},
		{"unreadable", `{"boot":`, true},
		{"this boot", `{"boot":"` + boot + `","reserved":200000}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root, state := t.TempDir(), t.TempDir()
			marker := filepath.Join(state, "spool-unsynced")
			if err := os.WriteFile(marker, []byte(tc.marker), 0o600); err != nil {
				t.Fatal(err)
			}
			// Runs after the agent has stopped (cleanups run last first).
			t.Cleanup(func() {
				if _, err := os.Stat(marker); !os.IsNotExist(err) {
					t.Errorf("marker after a clean stop: %v, want it removed", err)
				}
			})
			ag := startAgent(t, agent.Config{Roots: []agent.Root{{Path: root, Recursive: true}},
				StateDir: state, DrainTimeout: 100 * time.Millisecond})
			ag.watching(t)
			if err := os.WriteFile(filepath.Join(root, "f"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			st := ag.waitFor(t, "did not publish", func(st agent.Status) bool { return st.Published >= 1 })
			s, err := ag.b.JetStream(t).Stream(t.Context(), broker.Stream)
			if err != nil {
				t.Fatal(err)
			}
			m, err := s.GetLastMsgForSubject(t.Context(), event.GapSubject("a1"))
			if !tc.gap {
				if err == nil {
					t.Fatalf("marker of this boot: gap record %s, want none", m.Data)
				}
				if st.NextSeq > reserved {
					t.Fatalf("marker of this boot: next seq %d, want no jump", st.NextSeq)
				}
				return
			}
			if err != nil {
				t.Fatalf("no gap record: %v", err)
			}
			var g event.Gap
			if err := json.Unmarshal(m.Data, &g); err != nil {
				t.Fatal(err)
			}
			want := uint64(1 << 16)
			if tc.name != "unreadable" {
				want = reserved
			}
			if g.FromSeq != 1 || g.ToSeq < want || !strings.Contains(g.Reason, "machine went down") {
				t.Fatalf("gap %+v: want seqs 1 to at least %d, for the machine going down", g, want)
			}
			if st.NextSeq <= g.ToSeq {
				t.Fatalf("next seq %d inside the declared gap up to %d", st.NextSeq, g.ToSeq)
			}
			// The gap record went out fsynced, with the first event; the
			// next event is deferred, under a marker for this boot that
			// reserves the seqs past it.
			if err := os.WriteFile(filepath.Join(root, "g"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			st2 := ag.waitFor(t, "did not publish", func(s agent.Status) bool { return s.Published > st.Published })
			var mk struct {
				Boot     string `json:"boot"`
				Reserved uint64 `json:"reserved"`
			}
			if b, err := os.ReadFile(marker); err != nil || json.Unmarshal(b, &mk) != nil || mk.Boot != boot || mk.Reserved <= st2.Published {
				t.Fatalf("marker after a deferred event: %q, %v; want this boot %q reserving past seq %d", b, err, boot, st2.Published)
			}
		})
	}
}

// TestSpoolMarkerKeptUntilDeclared: a start that finds a marker from
// another boot but is stopped before the broker answers (so before it
// could declare the gap) leaves the marker for the next start.
func TestSpoolMarkerKeptUntilDeclared(t *testing.T) {
	state := t.TempDir()
	marker := filepath.Join(state, "spool-unsynced")
	if err := os.WriteFile(marker, []byte(`{"boot":"another","reserved":70000}`), 0o600); err != nil {
		t.Fatal(err)
	}
	b := brokertest.Start(t)
	js, err := jetstream.New(b.Conn(t), agent.JetStreamOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	b.Shutdown() // the broker is away
	a, err := agent.New(agent.Config{ID: "a1", StateDir: state, Roots: []agent.Root{{Path: t.TempDir(), Recursive: true}}},
		js, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
	defer cancel()
	// It must have read the marker and be waiting for the broker to
	// declare the gap, not have failed before.
	if err := a.Run(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run: %v, want it stopped while waiting for the broker", err)
	}
	if got, err := os.ReadFile(marker); err != nil || !strings.Contains(string(got), "another") {
		t.Fatalf("marker after a start stopped before the broker answered: %q, %v; want it kept", got, err)
	}
}

// TestSpoolFailurePoisonsMarker: once the spool fails to take a batch (here
// its disk is full: the next segment cannot be created) the deferred writes
// before it are suspect too, so the marker records the failure. It outlives
// the clean stop, and the next start declares a gap whatever the boot
// (TestSpoolUnsyncedAfterReboot, "fsync failed"). Whether the marker was
// rewritten whole or in place (overwriteMarker) depends on what room the
// failed append left; this test does not tell them apart.
func TestSpoolFailurePoisonsMarker(t *testing.T) {
	state := testdisk.Small(t, "1m")
	root := t.TempDir()
	marker := filepath.Join(state, "spool-unsynced")
	t.Cleanup(func() { // after the agent's stop
		if b, err := os.ReadFile(marker); err != nil || !strings.Contains(string(b), `"sync_failed"`) {
			t.Errorf("marker after the stop: %q, %v; want it kept, with the failure", b, err)
		}
	})
	ag := startAgent(t, agent.Config{Roots: []agent.Root{{Path: root, Recursive: true}}, StateDir: state,
		DrainTimeout: 100 * time.Millisecond, Spool: spool.Options{SegmentBytes: 16 << 10}})
	ag.watching(t)
	if err := os.WriteFile(filepath.Join(root, "first"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ag.waitFor(t, "did not publish", func(s agent.Status) bool { return s.Published >= 1 })
	if b, err := os.ReadFile(marker); err != nil || strings.Contains(string(b), "sync_failed") {
		t.Fatalf("marker after a deferred event: %q, %v; want one without a failure", b, err)
	}
	testdisk.Fill(t, filepath.Join(state, "filler"))
	// More than a 16 KiB segment holds: the spool must start another.
	for i := range 200 {
		if err := os.WriteFile(filepath.Join(root, fmt.Sprintf("file-with-a-longish-name-%03d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, _ := os.ReadFile(marker); strings.Contains(string(b), `"sync_failed"`) {
			return
		}
		if time.Now().After(deadline) {
			b, err := os.ReadFile(marker)
			t.Fatalf("marker with the spool's disk full: %q, %v; want the failure recorded (status %+v)", b, err, ag.status(t))
		}
	}
}
