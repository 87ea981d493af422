package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func has(keys map[string]int, want ...string) func([]rec) bool {
	return func(recs []rec) bool {
		k := eventKeys(recs)
		for _, w := range want {
			if k[w] == 0 {
				return false
			}
		}
		return true
	}
}

func TestEachEventType(t *testing.T) {
	s := startUp(t)
	f := filepath.Join(s.root, "a.txt")
	write(t, f, "hello\n")
	waitLog(t, s.audit, 10*time.Second, has(nil, "create "+f))
	af, err := os.OpenFile(f, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	af.WriteString("world\n")
	af.Close()
	waitLog(t, s.audit, 10*time.Second, has(nil, "modify "+f))
	if err := os.Chmod(f, 0o600); err != nil {
		t.Fatal(err)
	}
	waitLog(t, s.audit, 10*time.Second, has(nil, "attrib "+f))
	g := filepath.Join(s.root, "b.txt")
	if err := os.Rename(f, g); err != nil {
		t.Fatal(err)
	}
	d := filepath.Join(s.root, "dir")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(g); err != nil {
		t.Fatal(err)
	}
	recs := waitLog(t, s.audit, 10*time.Second, has(nil, "rename "+f+" -> "+g, "create "+d, "delete "+g))
	s.p.stop(t)
	recs = readLog(t, s.audit)
	checkIntegrity(t, s.audit, recs)

	sum := sha256.Sum256([]byte("hello\nworld\n"))
	for _, r := range recs {
		if r.Kind != "event" {
			continue
		}
		if r.ID != fmt.Sprintf("%s:%d", r.Agent, r.Seq) || r.Agent != "e2e" || r.Source != "watch" {
			t.Errorf("bad identity fields: %+v", r)
		}
		if r.ObservedAt.IsZero() || r.EmittedAt.Before(r.ObservedAt) || r.RecordedAt.Before(r.EmittedAt) {
			t.Errorf("timestamps out of order: observed %v emitted %v recorded %v", r.ObservedAt, r.EmittedAt, r.RecordedAt)
		}
		switch {
		case r.Type == "modify" && r.path == f:
			if r.SHA256 != hex.EncodeToString(sum[:]) || r.Size == nil || *r.Size != 12 {
				t.Errorf("modify: sha256 %s size %v, want %x 12", r.SHA256, r.Size, sum)
			}
		case r.Type == "attrib" && r.path == f:
			if r.Mode == nil || *r.Mode != 0o600 {
				t.Errorf("attrib: mode %v, want 0600", r.Mode)
			}
		case r.Type == "create" && r.path == d:
			if !r.IsDir {
				t.Errorf("mkdir recorded without is_dir: %+v", r)
			}
		case r.Type == "delete" && r.path == g:
			if r.Size != nil {
				t.Errorf("delete carries stat fields: %+v", r)
			}
		}
	}
}

func TestNewDirectoriesRace(t *testing.T) {
	s := startUp(t)
	const dirs, files = 200, 10
	var want []string
	for i := range dirs {
		d := filepath.Join(s.root, fmt.Sprintf("d%03d", i), "sub")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for j := range files {
			p := filepath.Join(d, fmt.Sprintf("f%d", j))
			write(t, p, "x")
			want = append(want, p)
		}
	}
	recs := waitLog(t, s.audit, 60*time.Second, func(recs []rec) bool {
		k := eventKeys(recs)
		for _, w := range want {
			if k["create "+w] == 0 {
				return false
			}
		}
		return true
	})
	s.p.stop(t)
	recs = readLog(t, s.audit)
	checkIntegrity(t, s.audit, recs)
	k := eventKeys(recs)
	for _, w := range want {
		if k["create "+w] != 1 {
			t.Errorf("create %s recorded %d times", w, k["create "+w])
		}
	}
}

func TestRenames(t *testing.T) {
	s := startUp(t)
	outside := t.TempDir()
	a, b := filepath.Join(s.root, "a"), filepath.Join(s.root, "b")
	write(t, a, "1")
	waitLog(t, s.audit, 10*time.Second, has(nil, "create "+a))
	must(t, os.Rename(a, b))
	out := filepath.Join(outside, "gone")
	must(t, os.Rename(b, out))
	in := filepath.Join(outside, "in")
	write(t, in, "2")
	inDst := filepath.Join(s.root, "in")
	must(t, os.Rename(in, inDst))
	// A directory with contents moved in: its contents are reported.
	tree := filepath.Join(outside, "tree")
	must(t, os.MkdirAll(filepath.Join(tree, "x"), 0o755))
	write(t, filepath.Join(tree, "x", "y"), "3")
	treeDst := filepath.Join(s.root, "tree")
	must(t, os.Rename(tree, treeDst))
	// A directory renamed inside the tree: later events carry the new path.
	renamed := filepath.Join(s.root, "tree2")
	waitLog(t, s.audit, 10*time.Second, has(nil, "create "+filepath.Join(treeDst, "x", "y")))
	must(t, os.Rename(treeDst, renamed))
	z := filepath.Join(renamed, "x", "z")
	write(t, z, "4")
	recs := waitLog(t, s.audit, 10*time.Second, has(nil,
		"rename "+a+" -> "+b, "delete "+b, "create "+inDst, "create "+treeDst,
		"create "+filepath.Join(treeDst, "x"), "rename "+treeDst+" -> "+renamed, "create "+z))
	s.p.stop(t)
	checkIntegrity(t, s.audit, readLog(t, s.audit))
	for _, r := range recs {
		if strings.HasPrefix(r.path, outside) {
			t.Errorf("path outside the watched tree recorded: %+v", r)
		}
	}
}

func TestBurstExactlyOnce(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 2000
	}
	s := startUp(t)
	dir := filepath.Join(s.root, "burst")
	must(t, os.Mkdir(dir, 0o755))
	waitLog(t, s.audit, 10*time.Second, has(nil, "create "+dir))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				f, err := os.Create(filepath.Join(dir, fmt.Sprintf("f%05d", i)))
				if err != nil {
					t.Error(err)
					return
				}
				f.Close()
			}
		})
	}
	wg.Wait()
	count := func(recs []rec) int {
		c := 0
		for _, r := range recs {
			if r.Kind == "event" && r.Type == "create" && filepath.Dir(r.path) == dir {
				c++
			}
		}
		return c
	}
	waitLog(t, s.audit, 120*time.Second, func(recs []rec) bool { return count(recs) >= n })
	s.p.stop(t)
	recs := readLog(t, s.audit)
	checkIntegrity(t, s.audit, recs)
	k := eventKeys(recs)
	for i := range n {
		if c := k["create "+filepath.Join(dir, fmt.Sprintf("f%05d", i))]; c != 1 {
			t.Fatalf("f%05d recorded %d times", i, c)
		}
	}
	for _, r := range recs {
		if r.Kind == "overflow" {
			// Legitimate on a loaded machine: the rescan that follows is
			// why the exactly-once check above still holds.
			t.Logf("kernel queue overflowed during the burst (recovered by rescan): %s", r.ID)
		}
	}
}

func TestHostileNames(t *testing.T) {
	s := startUp(t)
	names := []string{
		"with space", "new\nline", "star*", "gt>", "dot.dot", "..dots", "...", "tab\there",
		"quote\"back\\slash", "unicode-é-日本", "bad-utf8-\xff\xfe", "ctl-\x01\x1b[31m",
		strings.Repeat("L", 255), `{"kind":"event"}`,
	}
	var want []string
	for _, n := range names {
		p := filepath.Join(s.root, n)
		write(t, p, n)
		want = append(want, "create "+p)
	}
	waitLog(t, s.audit, 20*time.Second, has(nil, want...))
	s.p.stop(t)
	recs := readLog(t, s.audit)
	checkIntegrity(t, s.audit, recs)
	k := eventKeys(recs)
	for _, w := range want {
		if k[w] != 1 {
			t.Errorf("%q recorded %d times", w, k[w])
		}
	}
}

// A graceful restart of the whole system continues the agent's seq and
// records nothing twice; changes made while it was stopped are not the
// subject here (the fault suite covers the catch-up scan).
func TestRestartKeepsSeq(t *testing.T) {
	s := startUp(t)
	for i := range 50 {
		write(t, filepath.Join(s.root, fmt.Sprintf("a%d", i)), "x")
	}
	waitLog(t, s.audit, 20*time.Second, has(nil, "create "+filepath.Join(s.root, "a49")))
	s.p.stop(t)
	s.start(t)
	for i := range 50 {
		write(t, filepath.Join(s.root, fmt.Sprintf("b%d", i)), "x")
	}
	waitLog(t, s.audit, 20*time.Second, has(nil, "create "+filepath.Join(s.root, "b49")))
	s.p.stop(t)
	recs := readLog(t, s.audit)
	checkIntegrity(t, s.audit, recs)
	k := eventKeys(recs)
	for i := range 50 {
		for _, p := range []string{"a", "b"} {
			if c := k["create "+filepath.Join(s.root, fmt.Sprintf("%s%d", p, i))]; c != 1 {
				t.Errorf("%s%d recorded %d times", p, i, c)
			}
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// --rate-limit caps what the agent publishes; the excess waits in the
// spool and nothing is lost. The check is a lower bound on how long the
// records took to go out, so a slow machine cannot make it fail.
func TestRateLimitLosesNothing(t *testing.T) {
	s := startUp(t, "--rate-limit", "200")
	dir := filepath.Join(s.root, "r")
	must(t, os.Mkdir(dir, 0o755))
	const n = 400
	var want []string
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("f%03d", i))
		write(t, p, "x")
		want = append(want, "create "+p)
	}
	recs := waitLog(t, s.audit, 60*time.Second, has(nil, want...))
	s.p.stop(t)
	checkIntegrity(t, s.audit, readLog(t, s.audit))
	var first, last time.Time
	for _, r := range recs {
		if r.Kind == "event" && filepath.Dir(r.path) == dir {
			if first.IsZero() || r.EmittedAt.Before(first) {
				first = r.EmittedAt
			}
			if r.EmittedAt.After(last) {
				last = r.EmittedAt
			}
		}
	}
	// 400 records at 200/s with a burst of 20 take at least 1.9 s.
	if d := last.Sub(first); d < 1500*time.Millisecond {
		t.Fatalf("%d records emitted within %v: the 200/s limit was not applied", n, d)
	}
}

// A taken --listen port is a one-line error that names the flag, and bad
// usage exits 2.
func TestUsageErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, _, stderr := fsoCmd(t, "up", "--data", t.TempDir(), "--watch", t.TempDir(), "--listen", ln.Addr().String())
	if code != 1 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "--listen "+ln.Addr().String()) ||
		!strings.Contains(stderr, "address already in use") {
		t.Fatalf("taken port: exit %d, stderr %q; want 1 and one line naming --listen", code, stderr)
	}
	for _, args := range [][]string{
		{"up", "--watch", t.TempDir()},                         // no --data
		{"agent", "--state", t.TempDir(), "--events", "chmod"}, // unknown event type
		{"nosuchcommand"},
	} {
		code, _, stderr := fsoCmd(t, args...)
		if code != 2 || stderr == "" {
			t.Errorf("fso %v: exit %d, stderr %q; want 2 and a reason", args, code, stderr)
		}
	}
}
