package auditlog_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fso-project/fso/internal/auditlog"
	"github.com/fso-project/fso/internal/event"
)

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir, auditlog.Options{})
	recs := [][]byte{
		ev(t, "a", 1, event.Create, "/etc/hosts"),
		ev(t, "a", 2, event.Rename, "/etc/bad\xff\x00name"),
		gap(t, "a", 6, 3, 5),
	}
	write(t, w, 10, recs...)
	if seg, line, hash := w.Head(); seg != "00000001.jsonl" || line != 3 || len(hash) != 64 {
		t.Errorf("Head() = %q, %d, %q; want 00000001.jsonl, 3, a hash", seg, line, hash)
	}
	rs := scanAll(t, dir)
	if len(rs) != 3 {
		t.Fatalf("scan: have %d records, want 3", len(rs))
	}
	r := rs[1]
	if r.Kind != "event" || r.Agent != "a" || r.ID != "a:2" || r.Type != "rename" || r.Seq != 2 ||
		r.Path != "/etc/bad\xff\x00name" || r.OldPath != "/etc/bad\xff\x00name.old" ||
		!r.ObservedAt.Equal(t0.Add(2*time.Hour)) || !r.RecordedAt.Equal(t0.Add(2*time.Millisecond)) ||
		r.Segment != "00000001.jsonl" || r.Line != 2 || r.Prev != rs[0].Hash {
		t.Errorf("record 2:\nhave %+v", r)
	}
	if g := rs[2]; g.Kind != "gap" || g.Seq != 6 || g.FromSeq != 3 || g.ToSeq != 5 || g.Reason != "spool full" {
		t.Errorf("gap record: have %+v", g)
	}
	if _, _, h := w.Head(); h != rs[2].Hash {
		t.Errorf("Head hash %s, want last line's %s", h, rs[2].Hash)
	}
	if want := zeros; rs[0].Prev != want {
		t.Errorf("first prev = %s, want zeros", rs[0].Prev)
	}
	// Raw is the line as written, minus the record's closing brace.
	if !bytes.HasPrefix(rs[0].Raw, recs[0][:len(recs[0])-1]) {
		t.Errorf("raw line does not start with the record:\n%s", rs[0].Raw)
	}
	rep := verifyOK(t, dir)
	if rep.Records != 3 || rep.Segments != 1 || rep.Head != rs[2].Hash {
		t.Errorf("report = %+v", rep)
	}
}

var zeros = strings.Repeat("0", 64)

func TestRotationChains(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir, auditlog.Options{SegmentBytes: 2000})
	write(t, w, 3, events(t, 40)...)
	rep := verifyOK(t, dir)
	if rep.Segments < 4 || rep.Records != 40 {
		t.Fatalf("have %d segments, %d records; want several segments, 40 records", rep.Segments, rep.Records)
	}
	rs := scanAll(t, dir)
	for i := 1; i < len(rs); i++ {
		if rs[i].Prev != rs[i-1].Hash {
			t.Fatalf("record %d (%s line %d) does not chain to the one before", i, rs[i].Segment, rs[i].Line)
		}
	}
	last := rs[len(rs)-1]
	if s, l, h := w.Head(); s != last.Segment || l != last.Line || h != last.Hash {
		t.Errorf("Head() = %s %d %s, want %s %d %s", s, l, h, last.Segment, last.Line, last.Hash)
	}
	// Segments are only started with a line to write: none is empty.
	segs, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	for _, s := range segs {
		if info, _ := os.Stat(s); info.Size() == 0 {
			t.Errorf("%s is empty", s)
		}
	}
	if rep.Agents["a"].LastSeq != 40 || rep.Agents["a"].MissingCount != 0 {
		t.Errorf("agent report %+v", rep.Agents["a"])
	}
}

func TestReopenContinuesChain(t *testing.T) {
	tests := []struct {
		name         string
		segmentBytes int64
		// prepare runs on the closed log before it is reopened.
		prepare func(t *testing.T, dir string)
	}{
		{name: "same segment", segmentBytes: 1 << 20},
		{name: "after rotation", segmentBytes: 1000},
		{
			name:         "empty last segment",
			segmentBytes: 1 << 20,
			// A crash right after the next segment was created.
			prepare: func(t *testing.T, dir string) {
				if err := os.WriteFile(seg(dir, 2), nil, 0o640); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w := open(t, dir, auditlog.Options{SegmentBytes: tc.segmentBytes})
			recs := events(t, 10)
			write(t, w, 5, recs[:5]...)
			s1, l1, h1 := w.Head()
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if tc.prepare != nil {
				tc.prepare(t, dir)
			}
			w = open(t, dir, auditlog.Options{SegmentBytes: tc.segmentBytes})
			if s, l, h := w.Head(); s != s1 || l != l1 || h != h1 {
				t.Errorf("reopened Head() = %s %d %s, want %s %d %s", s, l, h, s1, l1, h1)
			}
			write(t, w, 5, recs[5:]...)
			rep := verifyOK(t, dir)
			if rep.Records != 10 {
				t.Errorf("have %d records, want 10", rep.Records)
			}
		})
	}
}

func TestOpenRepairsTornTail(t *testing.T) {
	tests := []struct {
		name string
		// damage changes the last segment, whose content is b.
		damage func(b []byte) []byte
		// keep is how many of the 5 lines survive.
		keep int
	}{
		{name: "cut mid-line", damage: func(b []byte) []byte { return b[:len(b)-40] }, keep: 4},
		{name: "newline missing", damage: func(b []byte) []byte { return b[:len(b)-1] }, keep: 4},
		{name: "zero fill", damage: func(b []byte) []byte { return append(b, make([]byte, 4096)...) }, keep: 5},
		{name: "zero fill after a cut", damage: func(b []byte) []byte { return append(b[:len(b)-100], make([]byte, 8192)...) }, keep: 4},
		{name: "garbage lines", damage: func(b []byte) []byte { return append(b, "garbage\n{\"kind\":\nmore"...) }, keep: 5},
		{
			name: "unsealed line",
			damage: func(b []byte) []byte {
				lines := bytes.SplitAfter(b, []byte("\n"))
				last := bytes.Replace(lines[len(lines)-2], []byte("/etc/"), []byte("/etx/"), 1)
				return append(b, last...)
			},
			keep: 5,
		},
		{name: "everything torn", damage: func(b []byte) []byte { return make([]byte, 100) }, keep: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w := open(t, dir, auditlog.Options{SegmentBytes: 2500})
			recs := events(t, 12)
			// Segment 1 holds lines 1..7 (past 2500 bytes), segment 2 lines 8..12.
			write(t, w, 7, recs[:7]...)
			write(t, w, 5, recs[7:]...)
			w.Close()
			b, err := os.ReadFile(seg(dir, 2))
			if err != nil {
				t.Fatal(err)
			}
			damaged := tc.damage(b)
			if err := os.WriteFile(seg(dir, 2), damaged, 0o640); err != nil {
				t.Fatal(err)
			}

			var logs bytes.Buffer
			w = open(t, dir, auditlog.Options{SegmentBytes: 2500, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if !strings.Contains(logs.String(), "torn tail repaired") || !strings.Contains(logs.String(), "bytes_removed=") {
				t.Errorf("no repair logged: %s", logs.String())
			}
			after, _ := os.ReadFile(seg(dir, 2))
			if want := bytes.Join(bytes.SplitAfter(b, []byte("\n"))[:tc.keep], nil); !bytes.Equal(after, want) {
				t.Errorf("after repair the segment holds %d bytes, want the first %d lines (%d bytes)", len(after), tc.keep, len(want))
			}
			wantSeg, wantLine := "00000002.jsonl", int64(tc.keep)
			if tc.keep == 0 {
				wantSeg, wantLine = "00000001.jsonl", 7
			}
			if s, line, _ := w.Head(); s != wantSeg || line != wantLine {
				t.Errorf("Head() = %s line %d, want %s line %d", s, line, wantSeg, wantLine)
			}
			write(t, w, 5, recs[7+tc.keep:]...)
			if rep := verifyOK(t, dir); rep.Records != 12 {
				t.Errorf("have %d records, want 12", rep.Records)
			}
		})
	}
}

func TestOpenRefusesCorruption(t *testing.T) {
	tests := []struct {
		name   string
		damage func(lines [][]byte) [][]byte
		// want is in the error's message.
		want string
	}{
		{
			name: "edited line before valid ones",
			damage: func(l [][]byte) [][]byte {
				l[1] = bytes.Replace(l[1], []byte("/etc/"), []byte("/etx/"), 1)
				return l
			},
			want: "00000001.jsonl line 2",
		},
		{
			name:   "garbage before valid lines",
			damage: func(l [][]byte) [][]byte { return append(l[:2], append([][]byte{[]byte("garbage\n")}, l[2:]...)...) },
			want:   "00000001.jsonl line 3",
		},
		{
			name:   "deleted line",
			damage: func(l [][]byte) [][]byte { return append(l[:1], l[2:]...) },
			want:   "00000001.jsonl line 2: chain broken",
		},
		{
			name:   "sealed line appended out of chain",
			damage: func(l [][]byte) [][]byte { return append(l, l[0]) },
			want:   "00000001.jsonl line 6: chain broken",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w := open(t, dir, auditlog.Options{})
			write(t, w, 5, events(t, 5)...)
			w.Close()
			writeLines(t, seg(dir, 1), tc.damage(readLines(t, seg(dir, 1))))
			before, _ := os.ReadFile(seg(dir, 1))
			w2, err := auditlog.Open(dir, auditlog.Options{Logger: testLogger(t)})
			if err == nil {
				w2.Close()
				t.Fatal("open: have no error, want ErrCorrupt")
			}
			if !errors.Is(err, auditlog.ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("open: have %v, want ErrCorrupt with %q", err, tc.want)
			}
			if after, _ := os.ReadFile(seg(dir, 1)); !bytes.Equal(before, after) {
				t.Error("open changed a corrupt segment")
			}
		})
	}
}

func TestAppendRejects(t *testing.T) {
	tests := []struct {
		name string
		rec  string
	}{
		{"empty", ``},
		{"array", `[1]`},
		{"not closed", `{"a":1`},
		{"trailing space", `{"a":1} `},
		{"newline", `{"a":` + "\n" + `1}`},
		{"invalid JSON", `{"a":}`},
		{"empty object", `{}`},
		{"hash", `{"a":1,"hash":"x"}`},
		{"prev", `{"prev":1}`},
		{"recorded_at", `{"recorded_at":"2026-01-01T00:00:00Z"}`},
		{"escaped reserved key", `{"h\u0061sh":1}`},
	}
	w := open(t, t.TempDir(), auditlog.Options{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := w.Append([]byte(`{"kind":"ok"}`), []byte(tc.rec))
			if !errors.Is(err, auditlog.ErrInvalidRecord) || !strings.Contains(err.Error(), "record 1") {
				t.Errorf("append %q: have %v, want ErrInvalidRecord naming record 1", tc.rec, err)
			}
		})
	}
	// Nested members may use the reserved names; nothing was buffered above.
	write(t, w, 1, []byte(`{"kind":"x","nested":{"hash":1,"prev":2}}`))
	if _, line, _ := w.Head(); line != 1 {
		t.Errorf("Head line %d, want 1: a rejected Append buffered lines", line)
	}
}

func TestOpenLocks(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir, auditlog.Options{})
	if w2, err := auditlog.Open(dir, auditlog.Options{}); err == nil {
		w2.Close()
		t.Fatal("second open of the same dir: have no error")
	}
	w.Close()
	if err := w.Append([]byte(`{"a":1}`)); !errors.Is(err, auditlog.ErrClosed) {
		t.Errorf("append after close: have %v, want ErrClosed", err)
	}
	open(t, dir, auditlog.Options{}).Close()
}

func TestCloseDiscardsUnsynced(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir, auditlog.Options{})
	write(t, w, 2, events(t, 2)...)
	if err := w.Append(events(t, 3)[2]); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if rep := verifyOK(t, dir); rep.Records != 2 {
		t.Errorf("have %d records, want the 2 synced", rep.Records)
	}
}

func TestConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir, auditlog.Options{SegmentBytes: 4000})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 25 {
				if err := w.Append(ev(t, fmt.Sprintf("g%d", g), uint64(i+1), event.Modify, "/x")); err != nil {
					t.Error(err)
				}
				if err := w.Sync(); err != nil {
					t.Error(err)
				}
				w.Head()
			}
		})
	}
	wg.Wait()
	rep := verifyOK(t, dir)
	if rep.Records != 100 || len(rep.Agents) != 4 || rep.Agents["g3"].LastSeq != 25 {
		t.Errorf("report %+v", rep)
	}
}

func TestScanTornAndCorrupt(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir, auditlog.Options{SegmentBytes: 2000})
	write(t, w, 5, events(t, 10)...)
	w.Close()

	// A torn last line ends the scan quietly.
	b, _ := os.ReadFile(seg(dir, 2))
	os.WriteFile(seg(dir, 2), b[:len(b)-30], 0o640)
	if rs := scanAll(t, dir); len(rs) != 9 {
		t.Errorf("scan with a torn last line: have %d records, want 9", len(rs))
	}
	// An error from fn stops the scan and comes back as is.
	stop, calls := errors.New("stop"), 0
	if err := auditlog.Scan(t.Context(), dir, func(auditlog.Record) error { calls++; return stop }); err != stop || calls != 1 {
		t.Errorf("scan: have %v after %d calls, want the error of fn after 1", err, calls)
	}
	// An incomplete line in a finished segment is corruption.
	b, _ = os.ReadFile(seg(dir, 1))
	os.WriteFile(seg(dir, 1), b[:len(b)-1], 0o640)
	err := auditlog.Scan(t.Context(), dir, func(auditlog.Record) error { return nil })
	if !errors.Is(err, auditlog.ErrCorrupt) || !strings.Contains(err.Error(), "00000001.jsonl line 5") {
		t.Errorf("scan: have %v, want ErrCorrupt at 00000001.jsonl line 5", err)
	}
	// So is a line that is not a JSON object.
	writeLines(t, seg(dir, 1), [][]byte{[]byte("not json\n")})
	err = auditlog.Scan(t.Context(), dir, func(auditlog.Record) error { return nil })
	if !errors.Is(err, auditlog.ErrCorrupt) || !strings.Contains(err.Error(), "00000001.jsonl line 1") {
		t.Errorf("scan: have %v, want ErrCorrupt at 00000001.jsonl line 1", err)
	}
}

// Old segments may be archived away: the writer goes on, and Verify says
// what is missing.
func TestOpenAfterArchiving(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir, auditlog.Options{SegmentBytes: 1})
	write(t, w, 4, events(t, 8)...)
	w.Close()
	os.Remove(seg(dir, 1))
	w = open(t, dir, auditlog.Options{SegmentBytes: 1})
	write(t, w, 4, events(t, 12)[8:]...)
	rep, err := auditlog.Verify(t.Context(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := auditlog.Problem{Segment: "00000001.jsonl", Reason: "missing segment"}
	if rep.Problem == nil || *rep.Problem != want || rep.Records != 8 {
		t.Errorf("have %+v, problem %+v; want 8 records and %+v", rep, rep.Problem, want)
	}
}
