package baseline_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fso-project/fso/internal/baseline"
)

func TestSaveLoad(t *testing.T) {
	b := baseline.Baseline{"/a": {Ino: 1, Size: 2, Mtime: -3, Ctime: 4, Mode: 0o100644, UID: 5, GID: 6}, "/b\xff\n": {Ino: 7}}
	p := filepath.Join(t.TempDir(), "baseline")
	if err := baseline.Save(p, b); err != nil {
		t.Fatal(err)
	}
	got, err := baseline.Load(p)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(b) {
		t.Fatalf("have %v %v, want %v", got, err, b)
	}
	data, _ := os.ReadFile(p)
	data[len(data)/2] ^= 1
	os.WriteFile(p, data, 0o600)
	if _, err := baseline.Load(p); !errors.Is(err, baseline.ErrCorrupt) {
		t.Fatalf("damaged baseline: %v", err)
	}
	if _, err := baseline.Load(p + ".none"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing baseline: %v", err)
	}
}

func TestDiff(t *testing.T) {
	root := t.TempDir()
	p := func(s string) string { return filepath.Join(root, s) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(p("d/e"), 0o755))
	for _, f := range []string{"keep", "mod", "chmod", "gone", "moved", "d/e/inner", "skip/x", "repl", "repl.new"} {
		must(os.MkdirAll(filepath.Dir(p(f)), 0o755))
		must(os.WriteFile(p(f), []byte("1"), 0o644))
	}
	trees := []baseline.Tree{{Path: root, Recursive: true, SkipDir: func(d string) bool { return d == p("skip") }}}
	old, _, err := baseline.Walk(trees)
	must(err)
	if _, ok := old[p("skip/x")]; ok {
		t.Fatal("walk entered a skipped directory")
	}
	time.Sleep(10 * time.Millisecond) // a coarse-grained mtime must move
	must(os.WriteFile(p("mod"), []byte("22"), 0o644))
	must(os.Chmod(p("chmod"), 0o600))
	must(os.Remove(p("gone")))
	must(os.Rename(p("moved"), p("moved2")))
	must(os.Rename(p("d"), p("d2")))
	must(os.WriteFile(p("new"), []byte("n"), 0o644))
	must(os.Rename(p("repl.new"), p("repl"))) // an editor's save: the old file is gone, its path is not
	cur, _, err := baseline.Walk(trees)
	must(err)
	var have []string
	for _, c := range baseline.Diff(old, cur, trees) {
		s := string(c.Type) + " " + c.Path[len(root):]
		if c.OldPath != "" {
			s = string(c.Type) + " " + c.OldPath[len(root):] + " -> " + c.Path[len(root):]
		}
		have = append(have, s)
	}
	want := []string{
		"delete /repl",
		"rename /d -> /d2", "rename /d/e -> /d2/e", "rename /d/e/inner -> /d2/e/inner", "rename /moved -> /moved2", "rename /repl.new -> /repl",
		"create /new", "attrib /chmod", "modify /mod", "delete /gone",
	}
	if fmt.Sprint(have) != fmt.Sprint(want) {
		t.Fatalf("have %q\nwant %q", have, want)
	}
}
