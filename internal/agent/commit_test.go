package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fso-project/fso/internal/agent"
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
			root := t.TempDir()
			const n = 10
			for i := range n {
				if err := os.WriteFile(filepath.Join(root, "f"+string(rune('a'+i))), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			ag := startAgent(t, agent.Config{Roots: []agent.Root{{Path: root, Recursive: true}},
				CommitDelay: tc.delay, DrainTimeout: 100 * time.Millisecond,
				SpoolSyncAfter: -1}) // an fsync per batch: what this test counts
			published := func(want uint64) agent.Status {
				t.Helper()
				return ag.waitFor(t, fmt.Sprintf("did not publish %d records", want),
					func(st agent.Status) bool { return st.Published >= want })
			}
			ag.watching(t)
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
