package agent

import (
	"errors"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fso-project/fso/internal/baseline"
	"github.com/fso-project/fso/internal/event"
	"github.com/fso-project/fso/internal/watch"
)

// The agent keeps a baseline of its trees in memory, updated with every
// change it reports and saved to the state dir. A rescan walks the trees
// and reports, with source "scan", every difference: changes made while
// the agent was stopped (at start), changes the kernel dropped (after an
// overflow), and changes in directories it could not watch (periodically,
// while any are unwatched).

func (a *Agent) baselinePath() string { return filepath.Join(a.cfg.StateDir, "baseline") }

// startWalk is the picture of the trees that arming the roots at start
// listed (watch.Filter.Listed): the start rescan uses it instead of walking
// the trees a second time, which took half of the time to be ready on a
// large tree. Each directory was listed after its watch was armed, so what
// changed after the listing is an event, as with a walk after arming.
type startWalk struct {
	base       baseline.Baseline
	failed     []string
	roots      map[string]bool // the roots armed with it
	incomplete bool            // a directory could not be armed, so was not listed
}

func newStartWalk() *startWalk {
	return &startWalk{base: baseline.Baseline{}, roots: map[string]bool{}}
}

// listed records a directory's listing as baseline.Walk would: each entry
// lstat'ed, vanished ones left out, an unreadable directory as failed.
func (s *startWalk) listed(dir string, ents []os.DirEntry, err error) {
	if err != nil {
		s.failed = append(s.failed, dir)
		return
	}
	prefix := strings.TrimSuffix(dir, "/") + "/"
	for _, e := range ents {
		p := prefix + e.Name()
		var st unix.Stat_t
		if unix.Lstat(p, &st) == nil {
			s.base[p] = baseline.FromStat(&st)
		}
	}
}

// walk returns the trees' current state: from the start walk the first
// time, if it covers every tree and no directory went unwatched (those
// were not listed), else from baseline.Walk.
func (a *Agent) walk(w *watch.Watcher, trees []baseline.Tree) (baseline.Baseline, []string, error) {
	a.mu.Lock()
	s := a.startWalk
	a.startWalk = nil
	a.mu.Unlock()
	if s != nil && !s.incomplete && w.Status().UnwatchedCount == 0 && len(trees) > 0 {
		covered := true
		for _, t := range trees {
			covered = covered && s.roots[t.Path]
		}
		if covered {
			return s.base, s.failed, nil
		}
	}
	return baseline.Walk(trees)
}

// trees are the watched roots, as the baseline walks them.
func (a *Agent) trees() []baseline.Tree {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ts []baseline.Tree
	for _, r := range a.roots {
		if !r.watching {
			continue
		}
		ts = append(ts, baseline.Tree{Path: r.Path, Recursive: r.Recursive, SkipDir: r.f.skipDir})
	}
	return ts
}

// loadBaseline reads the saved baseline; since is when it was saved.
func (a *Agent) loadBaseline() (b baseline.Baseline, since time.Time, ok bool) {
	p := a.baselinePath()
	b, err := baseline.Load(p)
	switch {
	case err == nil:
		fi, _ := os.Stat(p)
		return b, fi.ModTime(), true
	case errors.Is(err, os.ErrNotExist):
		return baseline.Baseline{}, time.Time{}, false
	default:
		// Not fatal: the walk below becomes the new baseline, but what
		// changed while the agent was down cannot be told. Say so.
		a.fail("baseline unreadable, changes made while the agent was stopped cannot be reported", err)
		q := p + ".corrupt-" + time.Now().UTC().Format("20060102T150405")
		os.Rename(p, q)
		return baseline.Baseline{}, time.Time{}, false
	}
}

// rescan walks the trees, reports every difference from the baseline as
// changes with source "scan" and since, and makes the walk the baseline.
// With report false it only takes the baseline (first start).
func (a *Agent) rescan(w *watch.Watcher, since time.Time, report bool, why string) error {
	trees := a.trees()
	start := time.Now()
	cur, failed, err := a.walk(w, trees)
	old := a.base.Unpack()
	if err != nil {
		a.fail("rescan", err)
	}
	// What could not be read is not gone: keep what the baseline knew.
	for _, f := range failed {
		for p, e := range old {
			if p == f || strings.HasPrefix(p, f+"/") {
				if _, ok := cur[p]; !ok {
					cur[p] = e
				}
			}
		}
	}
	var changes []change
	// Forget old reports; recent ones stay, as the kernel's own event for
	// a file may still be queued across several rescans.
	if a.scanned == nil {
		a.scanned = map[string]time.Time{}
	}
	for p, t := range a.scanned {
		if time.Since(t) > scannedMemory {
			delete(a.scanned, p)
		}
	}
	if report {
		for _, c := range baseline.Diff(old, cur, trees) {
			changes = append(changes, change{typ: c.Type, path: c.Path, oldPath: c.OldPath, isDir: c.IsDir,
				at: time.Now(), scan: true, since: since})
			if c.Type == event.Create || c.Type == event.Modify || c.Type == event.Rename {
				a.scanned[c.Path] = time.Now()
			}
		}
	}
	// Entries outside the walked trees (a root not armed right now) stay.
	for p, e := range old {
		if !inTrees(p, trees) {
			cur[p] = e
		}
	}
	a.base = baseline.Pack(cur)
	a.baseDirty = true
	a.logger.Info("rescan done", "why", why, "entries", len(cur), "changes", len(changes), "took", time.Since(start).Round(time.Millisecond))
	a.mu.Lock()
	a.lastScan = time.Now()
	a.mu.Unlock()
	if err := a.record(w, changes); err != nil {
		return err
	}
	// The walk and the maps it was compared in are garbage now, several
	// times what the agent keeps: hand the pages back to the kernel rather
	// than keep them until the heap grows into them (on a 100,000-directory
	// tree, 78 MB resident after the start instead of 50). In the
	// background: the collection takes tens of milliseconds that changes
	// need not wait for.
	err = a.saveBaseline() // first: saving makes garbage of its own
	go debug.FreeOSMemory()
	return err
}

// scannedMemory is how long a path a rescan reported keeps the kernel's
// late event for the same file from being reported again.
const scannedMemory = 30 * time.Second

func inTrees(p string, trees []baseline.Tree) bool {
	for _, t := range trees {
		if strings.HasPrefix(p, strings.TrimSuffix(t.Path, "/")+"/") {
			return true
		}
	}
	return false
}

func (a *Agent) saveBaseline() error {
	if !a.baseDirty {
		return nil
	}
	// The baseline takes in the changes just spooled: were they lost from
	// the spool in a machine crash, the rescan after it could not see them.
	if err := a.sp.Sync(); err != nil {
		a.fail("sync spool before saving the baseline", err)
		a.gapMu.Lock()
		a.poisonMarker(err)
		a.gapMu.Unlock()
		return nil
	}
	if err := a.base.Save(a.baselinePath()); err != nil {
		a.fail("save baseline", err)
		return nil // the next save tries again; events still flow
	}
	a.baseDirty = false
	return nil
}

// noteChange keeps the baseline in step with a reported change.
func (a *Agent) noteChange(c change, st *unix.Stat_t) {
	switch {
	case c.typ == event.Delete:
		a.base.Delete(c.path, c.isDir)
	case c.typ == event.Rename && c.isDir:
		// The subtree moves; the directory's own entry is the stat below,
		// or what was known at its new path if it is already gone.
		prev, had := a.base.Get(c.path)
		a.base.Rename(c.oldPath, c.path)
		switch {
		case st != nil:
		case had:
			a.base.Set(c.path, prev)
		default:
			a.base.Delete(c.path, false)
		}
	case c.typ == event.Rename:
		a.base.Delete(c.oldPath, false)
	}
	if st != nil {
		a.base.Set(c.path, baseline.FromStat(st))
	}
	a.baseDirty = true
}
