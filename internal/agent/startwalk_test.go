package agent

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fso-project/fso/internal/baseline"
	"github.com/fso-project/fso/internal/watch"
)

// TestStartWalkIsTheWalk: what arming a root lists is the baseline a walk
// of the tree returns, for recursive and flat roots, skipped directories,
// symbolic links and empty directories, so the start rescan can use it.
func TestStartWalkIsTheWalk(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"a/b/c", "a/empty", "skip/inner", "x"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"top", "a/one", "a/b/two", "a/b/c/three", "skip/hidden", "skip/inner/deeper", "x/four"} {
		if err := os.WriteFile(filepath.Join(root, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc", filepath.Join(root, "a/link")); err != nil {
		t.Fatal(err)
	}
	skip := func(p string) bool { return strings.HasSuffix(p, "/skip") }
	for _, recursive := range []bool{true, false} {
		w, err := watch.New(watch.Options{})
		if err != nil {
			t.Fatal(err)
		}
		s := newStartWalk()
		if err := w.Add(root, watch.Filter{Recursive: recursive, SkipDir: skip, Listed: s.listed}); err != nil {
			t.Fatal(err)
		}
		w.Close()
		want, failed, err := baseline.Walk([]baseline.Tree{{Path: root, Recursive: recursive, SkipDir: skip}})
		if err != nil || len(failed) > 0 {
			t.Fatalf("walk: %v, failed %v", err, failed)
		}
		if len(want) < 4 {
			t.Fatalf("walk found only %d entries", len(want))
		}
		if !maps.Equal(s.base, want) {
			for p := range want {
				if _, ok := s.base[p]; !ok {
					t.Errorf("recursive=%v: listing lacks %s", recursive, p)
				}
			}
			for p := range s.base {
				if _, ok := want[p]; !ok {
					t.Errorf("recursive=%v: listing has %s, the walk does not", recursive, p)
				}
			}
			t.Fatalf("recursive=%v: listing and walk differ", recursive)
		}
	}
}
