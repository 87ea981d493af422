package diff_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fso-project/fso/internal/diff"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenCases are diffed and compared with testdata/NAME.diff.
var goldenCases = []struct {
	name     string
	from, to string // header names
	old, new string
}{
	{name: "one-line", from: "/etc/a.conf", to: "/etc/a.conf", old: "a\nb\nc\nd\ne\nf\ng\n", new: "a\nb\nc\nD\ne\nf\ng\n"},
	{name: "two-hunks", from: "/x", to: "/x", old: "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n", new: "1\nzwei\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\nthirteen\n14\n"},
	{name: "no-final-newline-added", from: "/x", to: "/x", old: "a\nb", new: "a\nb\n"},
	{name: "no-final-newline-removed", from: "/x", to: "/x", old: "a\nb\n", new: "a\nb"},
	{name: "no-final-newline-both", from: "/x", to: "/x", old: "a\nb", new: "a\nc"},
	{name: "crlf", from: "/w.ini", to: "/w.ini", old: "[a]\r\nk=1\r\nj=2\r\n", new: "[a]\r\nk=2\r\nj=2\r\n"},
	{name: "crlf-to-lf", from: "/w.ini", to: "/w.ini", old: "x\r\ny\r\n", new: "x\ny\n"},
	{name: "create", from: diff.DevNull, to: "/new", old: "", new: "hello\nworld\n"},
	{name: "create-empty", from: diff.DevNull, to: "/new", old: "", new: ""},
	{name: "delete", from: "/gone", to: diff.DevNull, old: "bye\n", new: ""},
	{name: "truncate", from: "/t", to: "/t", old: "a\nb\n", new: ""},
	{name: "from-empty", from: "/t", to: "/t", old: "", new: "a\n"},
	{name: "unicode", from: "/ü", to: "/ü", old: "grüße\n日本\n", new: "grüße\n日本語\n🙂\n"},
	{name: "diff-lookalike-lines", from: "/p", to: "/p", old: "--- a\n+++ b\n@@ -1 +1 @@\n", new: "--- a\n+++ c\n@@ -1 +1 @@\n\\ No newline at end of file\n"},
	{name: "quoted-name", from: diff.Name("/a\nb"), to: diff.Name("/a\nb"), old: "x\n", new: "y\n"},
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			got := diff.Unified(tc.from, tc.to, []byte(tc.old), []byte(tc.new))
			file := filepath.Join("testdata", tc.name+".diff")
			if *update {
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("diff of %q -> %q:\nhave:\n%s\nwant:\n%s", tc.old, tc.new, got, want)
			}
			back, err := diff.Apply([]byte(tc.old), got)
			if err != nil {
				t.Fatalf("apply: %v", err)
			}
			if string(back) != tc.new {
				t.Errorf("apply: have %q, want %q", back, tc.new)
			}
		})
	}
}

func TestNames(t *testing.T) {
	p, err := diff.Parse(diff.Unified(diff.Name("/a\nb"), diff.DevNull, []byte("x\n"), nil))
	if err != nil {
		t.Fatal(err)
	}
	if p.From != "/a\nb" || !p.ToNull() {
		t.Errorf("have from %q to %q", p.From, p.To)
	}
}

func TestApplyMismatch(t *testing.T) {
	d := diff.Unified("/x", "/x", []byte("a\nb\nc\n"), []byte("a\nB\nc\n"))
	for _, old := range []string{"a\nX\nc\n", "a\nb\r\nc\n", "", "a\nb\nc"} {
		if _, err := diff.Apply([]byte(old), d); !errors.Is(err, diff.ErrMismatch) {
			t.Errorf("apply to %q: have %v, want ErrMismatch", old, err)
		}
	}
	if _, err := diff.Apply(nil, "garbage\n"); !errors.Is(err, diff.ErrMalformed) {
		t.Errorf("have %v, want ErrMalformed", err)
	}
}

func TestIsText(t *testing.T) {
	for s, want := range map[string]bool{"": true, "a\r\nb": true, "ü": true, "a\x00b": false, "\xff\xfe": false} {
		if got := diff.IsText([]byte(s)); got != want {
			t.Errorf("IsText(%q) = %v, want %v", s, got, want)
		}
	}
}

// edit returns b changed at random: lines inserted, deleted, replaced,
// CRLF endings, a missing final newline, truncation.
func edit(r *rand.Rand, b []byte) []byte {
	lines := strings.SplitAfter(string(b), "\n")
	words := []string{"a\n", "b\n", "c\r\n", "ü\n", "\n", "x", "--- y\n", "+z\n", " \n", "\\ No newline at end of file\n"}
	for range r.IntN(5) + 1 {
		i := r.IntN(len(lines) + 1)
		switch r.IntN(5) {
		case 0:
			lines = append(lines[:i], append([]string{words[r.IntN(len(words))]}, lines[i:]...)...)
		case 1:
			if i < len(lines) {
				lines = append(lines[:i], lines[i+1:]...)
			}
		case 2:
			if i < len(lines) {
				lines[i] = words[r.IntN(len(words))]
			}
		case 3:
			if i < len(lines) {
				lines[i] = strings.TrimSuffix(lines[i], "\n") + "\r\n"
			}
		case 4:
			if r.IntN(10) == 0 {
				lines = nil
			}
		}
	}
	return []byte(strings.Join(lines, ""))
}

func TestRoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var cur []byte
	for i := range 3000 {
		next := edit(r, cur)
		d := diff.Unified("/f", "/f", cur, next)
		back, err := diff.Apply(cur, d)
		if err != nil || !bytes.Equal(back, next) {
			t.Fatalf("step %d: %q -> %q: diff\n%s\napply: %q, %v", i, cur, next, d, back, err)
		}
		cur = next
	}
}

func FuzzRoundTrip(f *testing.F) {
	f.Add("a\nb\n", "a\nc\n")
	f.Add("a\r\nb", "a\nb\n")
	f.Add("", "x")
	f.Fuzz(func(t *testing.T, old, new string) {
		if !diff.IsText([]byte(old)) || !diff.IsText([]byte(new)) {
			return
		}
		d := diff.Unified("/f", "/f", []byte(old), []byte(new))
		back, err := diff.Apply([]byte(old), d)
		if err != nil || string(back) != new {
			t.Fatalf("%q -> %q: diff\n%s\napply: %q, %v", old, new, d, back, err)
		}
	})
}

func BenchmarkUnified(b *testing.B) {
	var base bytes.Buffer
	for i := 0; base.Len() < 1<<20; i++ {
		fmt.Fprintf(&base, "%d ", i) // unique lines, as in most text files
		base.WriteString(strings.Repeat("line ", 8))
		base.WriteString(string(rune('a' + i%26)))
		base.WriteString(" ")
		base.WriteString(strings.Repeat("x", i%17))
		base.WriteString("\n")
	}
	old := base.Bytes()
	lines := bytes.SplitAfter(old, []byte("\n"))
	oneLine := bytes.Join(append(append(append([][]byte{}, lines[:len(lines)/2]...), []byte("changed line\n")), lines[len(lines)/2+1:]...), nil)
	tenPct := make([][]byte, len(lines))
	for i, l := range lines {
		tenPct[i] = l
		if i%10 == 0 {
			tenPct[i] = []byte("changed " + string(l))
		}
	}
	for _, bc := range []struct {
		name string
		new  []byte
	}{{"1MB-one-line", oneLine}, {"1MB-10pct", bytes.Join(tenPct, nil)}} {
		b.Run(bc.name, func(b *testing.B) {
			var n int
			b.SetBytes(int64(len(old)))
			for b.Loop() {
				n = len(diff.Unified("/f", "/f", old, bc.new))
			}
			b.ReportMetric(float64(n), "diff-bytes")
		})
	}
}
