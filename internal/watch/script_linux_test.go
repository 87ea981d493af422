package watch_test

// TestScript runs every testdata/*.txt script against a real inotify watcher
// on t.TempDir().
//
// A script is a list of operations, one a line, then a line "Output:" and the
// expected events. Blank lines and lines starting with # are ignored. Paths
// starting with / are inside the directory the script watches, the root
// (/ itself is the root); paths starting with ~ are inside a second directory
// next to it, outside the root unless the script watches it too. A token may
// be a Go-quoted string ("a b", "\xff", "new\nline"), so names hold any byte.
//
//	watch [dir] [nonrecursive] [skip=NAME]  Add dir (default /); skip: SkipDir of directories named NAME
//	unwatch [dir]                           Remove dir (default /)
//	mkdir PATH | rmdir PATH | rm PATH | rm -r PATH
//	touch PATH                              open(O_WRONLY|O_CREAT) and close: create + close_write
//	echo WORDS... > PATH | echo WORDS... >> PATH
//	mv OLD NEW (rename(2)) | chmod MODE PATH | ln -s TARGET PATH
//	sync                                    wait until every event of the operations above arrived
//	watches N                               sync, then check Status().Watches
//	ignore OP...                            leave these ops out of the comparison (e.g. close_write)
//
// sync is exact, not a guess: it creates a marker file in the root and waits
// for its Create (events come in kernel order, and a new directory is armed
// before the next record is read), and marker events are left out. While the
// root is not watched (before watch, after unwatch or once it is removed or
// moved) it waits for 200ms without events instead. The end of a script is an
// implicit sync. A sync is needed between creating a directory and creating
// entries in it, to make deterministic whether those entries are reported by
// the kernel or by the listing (Scan); the race itself is TestNewDirRace.
//
// An output line is "OP PATH [FLAGS...]", "rename OLD NEW [FLAGS...]", or
// "error OP PATH MESSAGE" for a *PathError received on Errors(), listed
// after the events. FLAGS are dir, moved and scan, in this order. Consecutive
// identical event lines are collapsed into one, since the kernel merges
// identical consecutive records only when the reader has not read the first
// one yet (two writes may become one or two IN_MODIFY).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fso-project/fso/internal/watch"
)

func TestScript(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			t.Parallel()
			runScript(t, file)
		})
	}
}

const syncPrefix = ".fso-sync-"

type script struct {
	t        *testing.T
	file     string
	line     int
	root     string // "/" in scripts
	out      string // "~" in scripts
	w        *watch.Watcher
	watching bool // the root is watched, so sync can use a marker
	syncs    int
	events   []watch.Event
	ignore   map[string]bool
}

func runScript(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	ops, want, ok := strings.Cut(string(data), "\nOutput:\n")
	if !ok {
		t.Fatalf("%s: no Output: line", file)
	}
	tmp := t.TempDir()
	s := &script{t: t, file: file, root: filepath.Join(tmp, "root"), out: filepath.Join(tmp, "out"), ignore: map[string]bool{}}
	for _, d := range []string{s.root, s.out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.w = newWatcher(t, watch.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() { ran <- s.w.Run(ctx) }()
	stop := sync.OnceValue(func() error { cancel(); return <-ran })
	defer stop()

	for i, line := range strings.Split(ops, "\n") {
		s.line = i + 1
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s.exec(tokens(t, line))
	}
	s.sync()
	if err := stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	var errs []error
	for err := range s.w.Errors() {
		errs = append(errs, err)
	}
	have := s.render(errs)
	var wantLines []string
	for line := range strings.SplitSeq(want, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			wantLines = append(wantLines, strings.Join(quoteAll(tokens(t, line)), " "))
		}
	}
	if !slices.Equal(have, wantLines) {
		t.Errorf("%s: events differ\nhave:\n\t%s\nwant:\n\t%s\ndiff (-want +have):\n%s", file,
			strings.Join(have, "\n\t"), strings.Join(wantLines, "\n\t"), lineDiff(wantLines, have))
	}
}

func (s *script) fatalf(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("%s:%d: %s", s.file, s.line, fmt.Sprintf(format, args...))
}

// path maps a script path to the file system.
func (s *script) path(p string) string {
	switch {
	case p == "/":
		return s.root
	case strings.HasPrefix(p, "/"):
		return s.root + p
	case p == "~":
		return s.out
	case strings.HasPrefix(p, "~/"):
		return s.out + p[1:]
	}
	s.fatalf("path %q: must start with / or ~", p)
	return ""
}

// rel maps a path from an event back to script notation.
func (s *script) rel(p string) string {
	switch {
	case p == s.root:
		return "/"
	case strings.HasPrefix(p, s.root+"/"):
		return p[len(s.root):]
	case p == s.out:
		return "~"
	case strings.HasPrefix(p, s.out+"/"):
		return "~" + p[len(s.out):]
	}
	return p
}

func (s *script) exec(args []string) {
	s.t.Helper()
	check := func(err error) {
		s.t.Helper()
		if err != nil {
			s.fatalf("%s: %v", strings.Join(args, " "), err)
		}
	}
	need := func(n int) {
		s.t.Helper()
		if len(args) != n {
			s.fatalf("%s: want %d arguments", args[0], n-1)
		}
	}
	switch args[0] {
	case "watch":
		dir, f := "/", watch.Filter{Recursive: true}
		for _, a := range args[1:] {
			switch {
			case a == "nonrecursive":
				f.Recursive = false
			case strings.HasPrefix(a, "skip="):
				name := strings.TrimPrefix(a, "skip=")
				f.SkipDir = func(p string) bool { return filepath.Base(p) == name }
			default:
				dir = a
			}
		}
		check(s.w.Add(s.path(dir), f))
		if dir == "/" {
			s.watching = true
		}
	case "unwatch":
		dir := "/"
		if len(args) > 1 {
			dir = args[1]
		}
		check(s.w.Remove(s.path(dir)))
		if dir == "/" {
			s.watching = false
		}
	case "mkdir":
		need(2)
		check(os.Mkdir(s.path(args[1]), 0o755))
	case "rmdir":
		need(2)
		check(os.Remove(s.path(args[1])))
		s.rootChanged(args[1])
	case "rm":
		if len(args) == 3 && args[1] == "-r" {
			check(os.RemoveAll(s.path(args[2])))
			s.rootChanged(args[2])
			break
		}
		need(2)
		check(os.Remove(s.path(args[1])))
	case "touch":
		need(2)
		f, err := os.OpenFile(s.path(args[1]), os.O_WRONLY|os.O_CREATE, 0o644)
		check(err)
		check(f.Close())
	case "echo":
		if len(args) < 3 || (args[len(args)-2] != ">" && args[len(args)-2] != ">>") {
			s.fatalf("echo: want echo WORDS... > PATH")
		}
		flag := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		if args[len(args)-2] == ">>" {
			flag = os.O_WRONLY | os.O_CREATE | os.O_APPEND
		}
		f, err := os.OpenFile(s.path(args[len(args)-1]), flag, 0o644)
		check(err)
		_, err = f.WriteString(strings.Join(args[1:len(args)-2], " ") + "\n")
		check(err)
		check(f.Close())
	case "mv":
		need(3)
		check(unix.Rename(s.path(args[1]), s.path(args[2]))) // os.Rename refuses to replace a directory
		s.rootChanged(args[1])
	case "chmod":
		need(3)
		mode, err := strconv.ParseUint(args[1], 8, 32)
		check(err)
		check(os.Chmod(s.path(args[2]), os.FileMode(mode)))
	case "ln":
		if len(args) != 4 || args[1] != "-s" {
			s.fatalf("ln: want ln -s TARGET PATH")
		}
		check(os.Symlink(s.path(args[2]), s.path(args[3])))
	case "sync":
		s.sync()
	case "watches":
		need(2)
		s.sync()
		if have := s.w.Status().Watches; strconv.Itoa(have) != args[1] {
			s.t.Errorf("%s:%d: Status().Watches = %d, want %s", s.file, s.line, have, args[1])
		}
	case "ignore":
		for _, op := range args[1:] {
			s.ignore[op] = true
		}
	default:
		s.fatalf("unknown command %q", args[0])
	}
}

func (s *script) rootChanged(p string) {
	if p == "/" {
		s.watching = false
	}
}

// sync waits until the events of every operation so far have arrived.
func (s *script) sync() {
	s.t.Helper()
	if !s.watching {
		s.collect(func(watch.Event) bool { return false }, 200*time.Millisecond, 0)
		return
	}
	s.syncs++
	marker := filepath.Join(s.root, syncPrefix+strconv.Itoa(s.syncs))
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		s.fatalf("sync: %v", err)
	}
	if !s.collect(func(e watch.Event) bool { return e.Op == watch.Create && e.Path == marker }, 0, 10*time.Second) {
		s.fatalf("sync: marker not reported within 10s")
	}
	if err := os.Remove(marker); err != nil {
		s.fatalf("sync: %v", err)
	}
}

// collect reads events until one satisfies done (true), or quiet passes
// without events, or limit passes (false).
func (s *script) collect(done func(watch.Event) bool, quiet, limit time.Duration) bool {
	var end <-chan time.Time
	if limit > 0 {
		end = time.After(limit)
	}
	for {
		var idle <-chan time.Time
		if quiet > 0 {
			idle = time.After(quiet)
		}
		select {
		case batch, ok := <-s.w.Events():
			if !ok {
				return false
			}
			found := false
			for _, e := range batch {
				s.events = append(s.events, e)
				found = found || done(e)
			}
			if found {
				return true
			}
		case <-idle:
			return false
		case <-end:
			return false
		}
	}
}

// render formats the events and errors received as output lines.
func (s *script) render(errs []error) []string {
	var lines []string
	for _, e := range s.events {
		if strings.HasPrefix(filepath.Base(e.Path), syncPrefix) || s.ignore[e.Op.String()] {
			continue
		}
		f := []string{e.Op.String()}
		if e.Op == watch.Rename {
			f = append(f, s.rel(e.OldPath))
		}
		if e.Op != watch.Overflow {
			f = append(f, s.rel(e.Path))
		}
		for _, flag := range []struct {
			on   bool
			name string
		}{{e.IsDir, "dir"}, {e.Moved, "moved"}, {e.Scan, "scan"}} {
			if flag.on {
				f = append(f, flag.name)
			}
		}
		line := strings.Join(quoteAll(f), " ")
		if len(lines) == 0 || lines[len(lines)-1] != line {
			lines = append(lines, line)
		}
	}
	for _, err := range errs {
		var pe *watch.PathError
		if !errors.As(err, &pe) {
			lines = append(lines, strings.Join(quoteAll([]string{"error", err.Error()}), " "))
			continue
		}
		lines = append(lines, strings.Join(quoteAll([]string{"error", pe.Op, s.rel(pe.Path), pe.Err.Error()}), " "))
	}
	return lines
}

// tokens splits a line on spaces; a token starting with " is a Go string.
func tokens(t *testing.T, line string) []string {
	t.Helper()
	var out []string
	for line = strings.TrimSpace(line); line != ""; line = strings.TrimSpace(line) {
		if line[0] == '"' {
			q, err := strconv.QuotedPrefix(line)
			if err != nil {
				t.Fatalf("bad quoted string in %q: %v", line, err)
			}
			u, _ := strconv.Unquote(q)
			out = append(out, u)
			line = line[len(q):]
			continue
		}
		tok, rest, _ := strings.Cut(line, " ")
		out = append(out, tok)
		line = rest
	}
	return out
}

// quoteAll quotes the tokens that need it, so that output lines compare
// exactly whatever bytes the names hold.
func quoteAll(toks []string) []string {
	out := make([]string, len(toks))
	for i, tok := range toks {
		out[i] = tok
		if tok == "" || strings.IndexFunc(tok, func(r rune) bool {
			return r <= ' ' || r == '"' || r == '\\' || r >= 0x7f
		}) >= 0 {
			out[i] = strconv.Quote(tok)
		}
	}
	return out
}

// lineDiff is a minimal longest-common-subsequence diff of two line lists.
func lineDiff(want, have []string) string {
	n, m := len(want), len(have)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if want[i] == have[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var b strings.Builder
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && want[i] == have[j]:
			fmt.Fprintf(&b, "\t  %s\n", want[i])
			i, j = i+1, j+1
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			fmt.Fprintf(&b, "\t+ %s\n", have[j])
			j++
		default:
			fmt.Fprintf(&b, "\t- %s\n", want[i])
			i++
		}
	}
	return b.String()
}
