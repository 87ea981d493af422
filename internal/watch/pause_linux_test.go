package watch_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fso-project/fso/internal/watch"
)

// TestReadPause: with a read pause, changes arriving steadily are read
// together, in one batch, instead of one read each; without it, changes
// 50ms apart are batches of their own. Close ends a pause at once, and
// hands over what the kernel queued during it.
func TestReadPause(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pause   time.Duration
		batches int // batches the three paced creates arrive in
	}{
		{"pause", time.Second, 1},
		{"none", 0, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			w := newWatcher(t, watch.Options{ReadPause: tc.pause})
			if err := w.Add(root, watch.Filter{}); err != nil {
				t.Fatal(err)
			}
			ran := make(chan error, 1)
			go func() { ran <- w.Run(context.Background()) }()
			// The first change is read at once (nothing came before it);
			// the second, right after, makes the stream steady, so that
			// the read after it pauses.
			touch(t, filepath.Join(root, "a"))
			until(t, w, 10*time.Second, isCreate(filepath.Join(root, "a")))
			touch(t, filepath.Join(root, "b"))
			until(t, w, 10*time.Second, isCreate(filepath.Join(root, "b")))
			// Taken as they come, so that the watcher never waits for us.
			got := make(chan []watch.Event, 100)
			stop := make(chan struct{})
			go func() {
				for {
					select {
					case b := <-w.Events():
						got <- b
					case <-stop:
						return
					}
				}
			}()
			names := []string{"c", "d", "e"}
			for i, n := range names {
				if i > 0 {
					time.Sleep(50 * time.Millisecond) // a reader waiting would wake for each
				}
				touch(t, filepath.Join(root, n))
			}
			var batches int
			seen := map[string]bool{}
			for deadline := time.After(10 * time.Second); len(seen) < len(names); {
				select {
				case b := <-got:
					creates := 0
					for _, ev := range b {
						if ev.Op == watch.Create {
							seen[filepath.Base(ev.Path)] = true
							creates++
						}
					}
					if creates > 0 {
						batches++
					}
				case <-deadline:
					t.Fatalf("saw %v of %v", seen, names)
				}
			}
			close(stop)
			if batches != tc.batches {
				t.Errorf("%d changes came in %d batches, want %d", len(names), batches, tc.batches)
			}
			if tc.pause > 0 {
				touch(t, filepath.Join(root, "f")) // the read after it pauses
				until(t, w, 10*time.Second, isCreate(filepath.Join(root, "f")))
				// Made during the pause: Close must still hand it over.
				touch(t, filepath.Join(root, "g"))
				rest := make(chan []watch.Event, 1)
				go func() {
					var all []watch.Event
					for b := range w.Events() {
						all = append(all, b...)
					}
					rest <- all
				}()
				closed := time.Now()
				w.Close()
				if err := <-ran; err != nil {
					t.Fatalf("Run = %v after Close, want nil", err)
				}
				if d := time.Since(closed); d > tc.pause/2 {
					t.Errorf("Close took %v: it waited for the pause (%v) to end", d, tc.pause)
				}
				if all := <-rest; !slices.ContainsFunc(all, isCreate(filepath.Join(root, "g"))) {
					t.Errorf("a change made during the pause cut short by Close was not delivered: %v", all)
				}
			} else {
				w.Close()
				<-ran
			}
		})
	}
}
