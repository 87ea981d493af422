package watch_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fso-project/fso/internal/watch"
)

// newWatcher returns a Watcher logging to the test, closed by t.Cleanup if
// the test does not run it.
func newWatcher(t testing.TB, opts watch.Options) *watch.Watcher {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	w, err := watch.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// start runs w until the test ends, and checks that Run returns nil.
func start(t testing.TB, w *watch.Watcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// until reads events until one satisfies done, failing the test after limit.
// It returns every event read.
func until(t testing.TB, w *watch.Watcher, limit time.Duration, done func(watch.Event) bool) []watch.Event {
	t.Helper()
	var all []watch.Event
	end := time.After(limit)
	for {
		select {
		case batch, ok := <-w.Events():
			if !ok {
				t.Fatalf("Events closed; read %v", all)
			}
			all = append(all, batch...)
			if slices.ContainsFunc(batch, done) {
				return all
			}
		case <-end:
			t.Fatalf("no expected event within %v; read %v", limit, all)
		}
	}
}

// quiet reads events until none came for d.
func quiet(t testing.TB, w *watch.Watcher, d time.Duration) []watch.Event {
	t.Helper()
	var all []watch.Event
	for {
		select {
		case batch, ok := <-w.Events():
			if !ok {
				t.Fatalf("Events closed; read %v", all)
			}
			all = append(all, batch...)
		case <-time.After(d):
			return all
		}
	}
}

// touch creates an empty file.
func touch(t testing.TB, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func isCreate(path string) func(watch.Event) bool {
	return func(e watch.Event) bool { return e.Op == watch.Create && e.Path == path }
}

// setSysctl writes an inotify limit under /proc/sys/fs/inotify and returns
// a function that restores the old value (also run by t.Cleanup).
func setSysctl(t *testing.T, name string, v int) (restore func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("changing fs.inotify.%s needs root", name)
	}
	p := "/proc/sys/fs/inotify/" + name
	old, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(strconv.Itoa(v)), 0o644); err != nil {
		t.Skipf("cannot change fs.inotify.%s: %v", name, err)
	}
	done := false
	restore = func() {
		if done {
			return
		}
		done = true
		if err := os.WriteFile(p, old, 0o644); err != nil {
			t.Errorf("restore fs.inotify.%s: %v", name, err)
		}
	}
	t.Cleanup(restore)
	return restore
}

// TestNewDirRace checks arm-then-list: 200 directories each created and
// immediately filled with 10 files while watching; every path must be
// reported exactly once as a Create, by the kernel or by the listing.
func TestNewDirRace(t *testing.T) {
	root := t.TempDir()
	w := newWatcher(t, watch.Options{})
	if err := w.Add(root, watch.Filter{Recursive: true}); err != nil {
		t.Fatal(err)
	}
	start(t, w)

	const dirs, files = 200, 10
	want := map[string]bool{}
	for i := range dirs {
		d := filepath.Join(root, fmt.Sprintf("d%03d", i))
		want[d] = true
		for j := range files {
			want[filepath.Join(d, fmt.Sprintf("f%d", j))] = true
		}
	}
	made := make(chan error, 1)
	go func() {
		for i := range dirs {
			d := filepath.Join(root, fmt.Sprintf("d%03d", i))
			if err := os.Mkdir(d, 0o755); err != nil {
				made <- err
				return
			}
			for j := range files {
				f, err := os.Create(filepath.Join(d, fmt.Sprintf("f%d", j)))
				if err != nil {
					made <- err
					return
				}
				f.Close()
			}
		}
		made <- nil
	}()

	creates := map[string]int{}
	scans := 0
	end := time.After(15 * time.Second)
	var quiet <-chan time.Time
	for done := false; !done; {
		select {
		case batch := <-w.Events():
			for _, e := range batch {
				switch e.Op {
				case watch.Overflow:
					t.Fatal("queue overflow: the test is void")
				case watch.Create:
					creates[e.Path]++
					if e.Scan {
						scans++
					}
				}
			}
			if len(creates) >= len(want) && quiet == nil {
				quiet = time.After(300 * time.Millisecond) // let duplicates show up
			}
		case err := <-made:
			if err != nil {
				t.Fatal(err)
			}
			made = nil
		case <-quiet:
			done = true
		case <-end:
			t.Fatalf("timeout: %d of %d paths reported", len(creates), len(want))
		}
	}
	for p := range want {
		if n := creates[p]; n != 1 {
			t.Errorf("%s: %d creates, want 1", p, n)
		}
	}
	for p := range creates {
		if !want[p] {
			t.Errorf("%s: unexpected create", p)
		}
	}
	t.Logf("%d creates, %d of them from listings", len(creates), scans)
}

// TestOverflow lowers fs.inotify.max_queued_events (read at inotify_init1)
// and stalls the consumer: the kernel drops events, and the watcher reports
// one Overflow, re-arms a directory whose creation was lost, and goes on.
func TestOverflow(t *testing.T) {
	restore := setSysctl(t, "max_queued_events", 64)
	w := newWatcher(t, watch.Options{})
	restore()
	root := t.TempDir()
	if err := w.Add(root, watch.Filter{Recursive: true}); err != nil {
		t.Fatal(err)
	}
	start(t, w)
	for i := range 300 { // nobody reads Events meanwhile
		touch(t, filepath.Join(root, fmt.Sprintf("f%d", i)))
	}
	lost := filepath.Join(root, "lost")
	if err := os.Mkdir(lost, 0o755); err != nil {
		t.Fatal(err)
	}
	// The queue may overflow more than once while the first batches wait;
	// read until 300ms without events, so every overflow has been handled.
	overflows := 0
	for _, e := range quiet(t, w, 300*time.Millisecond) {
		if e.Op == watch.Overflow {
			overflows++
		}
	}
	if st := w.Status(); overflows == 0 || st.Overflows != overflows {
		t.Errorf("%d Overflow events, Status().Overflows = %d; want as many, at least 1", overflows, st.Overflows)
	}
	after := filepath.Join(lost, "after")
	touch(t, after)
	until(t, w, 5*time.Second, isCreate(after))
}

// TestWatchLimit lowers fs.inotify.max_user_watches to the watches in use
// plus two and creates ten directories: the watcher reports ErrWatchLimit
// for those it cannot arm, lists them in Status, and the others still work.
func TestWatchLimit(t *testing.T) {
	root := t.TempDir()
	w := newWatcher(t, watch.Options{})
	if err := w.Add(root, watch.Filter{Recursive: true}); err != nil {
		t.Fatal(err)
	}
	start(t, w)

	restore := setSysctl(t, "max_user_watches", inotifyWatches(t)+2)
	var dirs []string
	for i := range 10 {
		d := filepath.Join(root, fmt.Sprintf("d%d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	until(t, w, 5*time.Second, isCreate(dirs[len(dirs)-1])) // armed (or not) before reported
	restore()

	limited := 0
	for len(w.Errors()) > 0 {
		err := <-w.Errors()
		var pe *watch.PathError
		if !errors.As(err, &pe) || !errors.Is(err, watch.ErrWatchLimit) {
			t.Errorf("unexpected error %v", err)
			continue
		}
		limited++
	}
	st := w.Status()
	if limited == 0 || len(st.Unwatched) != limited || st.UnwatchedCount != limited {
		t.Fatalf("%d ErrWatchLimit errors; Status().Unwatched = %q, UnwatchedCount = %d", limited, st.Unwatched, st.UnwatchedCount)
	}
	if st.Watches != 1+len(dirs)-limited {
		t.Errorf("Status().Watches = %d, want %d", st.Watches, 1+len(dirs)-limited)
	}
	// The root and the directories that were armed still report.
	for _, d := range append(dirs, root) {
		if d != root && slices.Contains(st.Unwatched, d) {
			continue
		}
		f := filepath.Join(d, "f")
		touch(t, f)
		until(t, w, 5*time.Second, isCreate(f))
	}
}

// inotifyWatches counts the inotify watches of every process.
func inotifyWatches(t *testing.T) int {
	t.Helper()
	files, _ := filepath.Glob("/proc/[0-9]*/fdinfo/*")
	n := 0
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			continue // the process or descriptor went away
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "inotify wd:") {
				n++
			}
		}
		f.Close()
	}
	if n == 0 {
		t.Fatal("no inotify watch found in /proc/*/fdinfo")
	}
	return n
}

// TestRunStops checks that Run returns promptly when ctx ends with no event
// pending, closes Events and Errors, and leaves no goroutine behind.
func TestRunStops(t *testing.T) {
	before := runtime.NumGoroutine()
	w := newWatcher(t, watch.Options{})
	if err := w.Add(t.TempDir(), watch.Filter{Recursive: true}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() { ran <- w.Run(ctx) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Run did not return within 1s of cancel")
	}
	if _, ok := <-w.Events(); ok {
		t.Error("Events not closed")
	}
	if _, ok := <-w.Errors(); ok {
		t.Error("Errors not closed")
	}
	if err := w.Add(t.TempDir(), watch.Filter{}); !errors.Is(err, watch.ErrClosed) {
		t.Errorf("Add after Run = %v, want ErrClosed", err)
	}
	if err := w.Run(t.Context()); !errors.Is(err, watch.ErrClosed) {
		t.Errorf("second Run = %v, want ErrClosed", err)
	}
	for deadline := time.Now().Add(time.Second); runtime.NumGoroutine() > before; {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, %d before", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRunStopsWhileBlocked checks that Run returns when ctx ends while it
// waits for the consumer to take a batch.
func TestRunStopsWhileBlocked(t *testing.T) {
	root := t.TempDir()
	w := newWatcher(t, watch.Options{})
	if err := w.Add(root, watch.Filter{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() { ran <- w.Run(ctx) }()
	touch(t, filepath.Join(root, "f"))
	time.Sleep(50 * time.Millisecond) // the batch waits for a reader
	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Run did not return within 1s of cancel")
	}
}

func TestClose(t *testing.T) {
	w := newWatcher(t, watch.Options{})
	if err := w.Add(t.TempDir(), watch.Filter{}); err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- w.Run(t.Context()) }()
	time.Sleep(20 * time.Millisecond)
	w.Close()
	if err := <-ran; err != nil {
		t.Fatalf("Run = %v after Close, want nil", err)
	}
	w.Close() // idempotent

	w = newWatcher(t, watch.Options{})
	w.Close()
	if err := w.Run(t.Context()); !errors.Is(err, watch.ErrClosed) {
		t.Errorf("Run after Close = %v, want ErrClosed", err)
	}
	if _, ok := <-w.Events(); ok {
		t.Error("Events not closed")
	}
}

// TestRemoveDropsPending checks that events read before Remove but not yet
// taken by the consumer are not delivered.
func TestRemoveDropsPending(t *testing.T) {
	tmp := t.TempDir()
	a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	for _, d := range []string{a, b} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w := newWatcher(t, watch.Options{})
	for _, d := range []string{a, b} {
		if err := w.Add(d, watch.Filter{Recursive: true}); err != nil {
			t.Fatal(err)
		}
	}
	start(t, w)
	touch(t, filepath.Join(a, "f"))
	time.Sleep(50 * time.Millisecond) // read, and waiting for the consumer
	if err := w.Remove(a); err != nil {
		t.Fatal(err)
	}
	touch(t, filepath.Join(a, "g"))
	marker := filepath.Join(b, "marker")
	touch(t, marker)
	for _, e := range until(t, w, 5*time.Second, isCreate(marker)) {
		if strings.HasPrefix(e.Path, a+"/") {
			t.Errorf("event %v after Remove(%s)", e, a)
		}
	}
	if st := w.Status(); !slices.Equal(st.Roots, []string{b}) || st.Watches != 1 {
		t.Errorf("Status() = %+v, want Roots [%s] and 1 watch", st, b)
	}
}

func TestAddErrors(t *testing.T) {
	tmp := t.TempDir()
	root := filepath.Join(tmp, "root")
	for _, d := range []string{root + "/sub", tmp + "/other"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	touch(t, tmp+"/file")
	if err := os.Symlink(tmp+"/other", tmp+"/link"); err != nil {
		t.Fatal(err)
	}
	w := newWatcher(t, watch.Options{})
	if err := w.Add(root, watch.Filter{Recursive: true}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string // passed to Add
		want error  // matched with errors.Is
	}{
		{name: "missing", path: tmp + "/missing", want: os.ErrNotExist},
		{name: "file", path: tmp + "/file", want: unix.ENOTDIR},
		{name: "symlink to a directory", path: tmp + "/link", want: unix.ENOTDIR},
		{name: "same root", path: root, want: watch.ErrOverlap},
		{name: "inside a root", path: root + "/sub", want: watch.ErrOverlap},
		{name: "contains a root", path: tmp, want: watch.ErrOverlap},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := w.Add(tc.path, watch.Filter{Recursive: true})
			var pe *watch.PathError
			if !errors.Is(err, tc.want) || !errors.As(err, &pe) || pe.Op != "add" {
				t.Errorf("Add(%s) = %v, want a *PathError wrapping %v", tc.path, err, tc.want)
			}
		})
	}
	if err := w.Remove(tmp + "/other"); !errors.Is(err, watch.ErrNoRoot) {
		t.Errorf("Remove(not a root) = %v, want ErrNoRoot", err)
	}
	if st := w.Status(); !slices.Equal(st.Roots, []string{root}) || st.Watches != 2 {
		t.Errorf("Status() = %+v, want Roots [%s] and 2 watches", st, root)
	}
}

func TestNewOptions(t *testing.T) {
	for _, opts := range []watch.Options{{BufferSize: 100}, {MovePairTimeout: -time.Second}} {
		if w, err := watch.New(opts); err == nil {
			w.Close()
			t.Errorf("New(%+v) = nil error", opts)
		}
	}
}

func TestOpString(t *testing.T) {
	want := []string{"create", "write", "close_write", "attrib", "remove", "rename", "overflow", "root_gone"}
	for i, w := range want {
		if have := watch.Op(i + 1).String(); have != w {
			t.Errorf("Op(%d).String() = %q, want %q", i+1, have, w)
		}
	}
	if have := watch.Op(0).String(); have != "op(0)" {
		t.Errorf("Op(0).String() = %q, want op(0)", have)
	}
}

func TestPathError(t *testing.T) {
	err := error(&watch.PathError{Op: "watch", Path: "/a b", Err: watch.ErrWatchLimit})
	if have, want := err.Error(), "watch: watch /a b: "+watch.ErrWatchLimit.Error(); have != want {
		t.Errorf("Error() = %q, want %q", have, want)
	}
	if !errors.Is(err, watch.ErrWatchLimit) {
		t.Error("errors.Is(err, ErrWatchLimit) = false")
	}
}

// BenchmarkWatch creates b.N files in a watched directory and measures the
// Create events delivered per second.
func BenchmarkWatch(b *testing.B) {
	root := b.TempDir()
	w := newWatcher(b, watch.Options{})
	if err := w.Add(root, watch.Filter{Recursive: true}); err != nil {
		b.Fatal(err)
	}
	start(b, w)
	b.ResetTimer()
	begin := time.Now()
	made := make(chan error, 1)
	go func() {
		for i := range b.N {
			f, err := os.Create(filepath.Join(root, strconv.Itoa(i)))
			if err != nil {
				made <- err
				return
			}
			f.Close()
		}
	}()
	creates, events := 0, 0
	for creates < b.N {
		select {
		case batch := <-w.Events():
			for _, e := range batch {
				events++
				switch e.Op {
				case watch.Create:
					creates++
				case watch.Overflow:
					b.Fatalf("overflow after %d creates", creates)
				}
			}
		case err := <-made:
			b.Fatal(err)
		}
	}
	elapsed := time.Since(begin)
	b.StopTimer()
	b.ReportMetric(float64(events)/elapsed.Seconds(), "events/s")
}
