package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Changes made while the agent is down, stopped cleanly or killed, are
// reported at its next start by the catch-up scan, with source "scan" and
// the window they happened in.
func TestCatchUpScan(t *testing.T) {
	for _, kill := range []bool{false, true} {
		t.Run(fmt.Sprintf("kill9=%v", kill), func(t *testing.T) {
			root, data := t.TempDir(), t.TempDir()
			audit := filepath.Join(data, "audit")
			args := []string{"up", "--data", data, "--watch", root, "--listen", "127.0.0.1:0", "--id", "scan"}
			p := func(s string) string { return filepath.Join(root, s) }
			must(t, os.MkdirAll(p("dir/sub"), 0o755))
			for _, f := range []string{"keep", "mod", "chmod", "gone", "moved", "dir/sub/inner"} {
				write(t, p(f), "1")
			}
			up := startProc(t, args...)
			waitProbe(t, root, audit, "p1")
			write(t, p("seen"), "while watching")
			waitLog(t, audit, 10*time.Second, has(nil, "create "+p("seen")))
			if kill {
				up.kill9(t)
			} else {
				up.stop(t)
			}
			stopped := time.Now()
			write(t, p("mod"), "22")
			must(t, os.Chmod(p("chmod"), 0o600))
			must(t, os.Remove(p("gone")))
			must(t, os.Rename(p("moved"), p("moved2")))
			must(t, os.Rename(p("dir"), p("dir2")))
			write(t, p("new"), "n")
			up = startProc(t, args...)
			want := []string{"modify " + p("mod"), "attrib " + p("chmod"), "delete " + p("gone"),
				"rename " + p("moved") + " -> " + p("moved2"), "rename " + p("dir") + " -> " + p("dir2"), "create " + p("new")}
			recs := waitLog(t, audit, 20*time.Second, has(nil, want...))
			up.stop(t)
			checkIntegrity(t, audit, readLog(t, audit))
			for _, r := range recs {
				key := r.Type + " " + r.path
				if r.Type == "rename" {
					key = "rename " + r.oldPath + " -> " + r.path
				}
				for _, w := range want {
					if key == w && (r.Source != "scan" || r.ObservedAt.Before(stopped)) {
						t.Errorf("%s: source %q observed %v, want scan after %v", w, r.Source, r.ObservedAt, stopped)
					}
				}
				// After kill -9 the agent cannot know it reported "seen"
				// since its last saved baseline: a redundant scan record is
				// allowed then, never a missing one.
				if r.Source == "scan" && (r.path == p("keep") || (!kill && r.path == p("seen"))) {
					t.Errorf("unchanged file reported by the scan: %+v", r)
				}
			}
		})
	}
}

// setSysctl sets an inotify limit and returns the function that restores
// it (also run by t.Cleanup). These limits are system-wide: the README's
// test command runs packages one at a time (-p 1) so no other test sees them.
func setSysctl(t *testing.T, name string, v int) (restore func()) {
	t.Helper()
	p := "/proc/sys/fs/inotify/" + name
	old, err := os.ReadFile(p)
	if err != nil {
		t.Skipf("cannot read %s: %v", p, err)
	}
	if err := os.WriteFile(p, []byte(strconv.Itoa(v)), 0o644); err != nil {
		t.Skipf("cannot lower %s (needs root): %v", name, err)
	}
	restore = func() { os.WriteFile(p, old, 0o644) }
	t.Cleanup(restore)
	return restore
}

// A kernel queue overflow is recorded explicitly and followed by a rescan
// that reports every change the kernel dropped.
func TestOverflowRescan(t *testing.T) {
	restore := setSysctl(t, "max_queued_events", 16) // read by inotify_init: only this agent's instance keeps it
	s := startUp(t)
	restore()
	dir := filepath.Join(s.root, "burst")
	must(t, os.Mkdir(dir, 0o755))
	const n = 3000
	for i := range n {
		write(t, filepath.Join(dir, fmt.Sprintf("f%04d", i)), "x")
	}
	recs := waitLog(t, s.audit, 60*time.Second, func(recs []rec) bool {
		k := eventKeys(recs)
		for i := range n {
			if k["create "+filepath.Join(dir, fmt.Sprintf("f%04d", i))] == 0 {
				return false
			}
		}
		return true
	})
	s.p.stop(t)
	checkIntegrity(t, s.audit, readLog(t, s.audit))
	k := eventKeys(recs)
	for i := range n {
		if c := k["create "+filepath.Join(dir, fmt.Sprintf("f%04d", i))]; c != 1 {
			t.Errorf("f%04d: %d creates recorded, want 1", i, c)
		}
	}
	overflows, scanned := 0, 0
	for _, r := range recs {
		if r.Kind == "overflow" {
			overflows++
		}
		if r.Source == "scan" && strings.HasPrefix(r.path, dir+"/") {
			scanned++
		}
	}
	if overflows == 0 || scanned == 0 {
		t.Fatalf("%d overflow records and %d scanned creates: the test did not overflow the kernel queue", overflows, scanned)
	}
	t.Logf("%d overflows, %d creates found by rescans, all %d files recorded", overflows, scanned, n)
}

// Directories the watch limit leaves unwatched are reported in the
// status and covered by periodic rescans.
func TestWatchLimitCoveredByScan(t *testing.T) {
	s := &upSystem{root: t.TempDir(), data: t.TempDir()}
	s.audit = filepath.Join(s.data, "audit")
	for i := range 20 {
		must(t, os.MkdirAll(filepath.Join(s.root, fmt.Sprintf("d%02d", i)), 0o755))
	}
	// Few watches left: count this user's current ones and allow 5 more.
	used := countWatches(t)
	setSysctl(t, "max_user_watches", used+5)
	s.start(t, "--scan-interval", "1s")
	f := filepath.Join(s.root, "d19", "late")
	write(t, f, "x")
	recs := waitLog(t, s.audit, 20*time.Second, has(nil, "create "+f))
	s.p.stop(t)
	for _, r := range recs {
		// Directories are armed in name order: d19 is past the limit.
		if r.path == f && r.Type == "create" && r.Source != "scan" {
			t.Errorf("d19/late reported by source %q: d19 was watched although the limit allowed %d watches", r.Source, used+5)
		}
	}
}

// countWatches counts the inotify watches held by processes of this user:
// the limit is per user.
func countWatches(t *testing.T) int {
	t.Helper()
	n := 0
	fds, _ := filepath.Glob("/proc/[0-9]*/fdinfo/*")
	for _, f := range fds {
		var st syscall.Stat_t
		if syscall.Stat(filepath.Dir(filepath.Dir(f)), &st) != nil || int(st.Uid) != os.Getuid() {
			continue
		}
		b, err := os.ReadFile(f)
		if err == nil {
			n += strings.Count(string(b), "inotify wd:")
		}
	}
	return n
}
