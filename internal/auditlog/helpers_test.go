package auditlog_test

import (
	"bytes"
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

// t0 is the fixed start of every test clock.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock returns a Now that starts at t0 and advances 1ms a call.
func clock() func() time.Time {
	var mu sync.Mutex
	t := t0
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Millisecond)
		return t
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// ev returns an event record of agent with seq, of type typ on path.
func ev(t testing.TB, agent string, seq uint64, typ event.Type, path string) []byte {
	t.Helper()
	e := event.Event{
		ID: event.ID(agent, seq), Agent: agent, Host: agent + ".example", Seq: seq, Type: typ, Path: path,
		ObservedAt: t0.Add(time.Duration(seq) * time.Hour), EmittedAt: t0.Add(time.Duration(seq)*time.Hour + time.Second),
		Source: event.SourceWatch,
	}
	if typ == event.Rename {
		e.OldPath = path + ".old"
	}
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gap(t testing.TB, agent string, seq, from, to uint64) []byte {
	t.Helper()
	b, err := event.Gap{Agent: agent, Seq: seq, FromSeq: from, ToSeq: to, Reason: "spool full", EmittedAt: t0}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// events returns n modify events of agent a with seqs from 1.
func events(t testing.TB, n int) [][]byte {
	t.Helper()
	var recs [][]byte
	for i := 1; i <= n; i++ {
		recs = append(recs, ev(t, "a", uint64(i), event.Modify, "/etc/f"+strings.Repeat("x", i%7)))
	}
	return recs
}

func open(t testing.TB, dir string, opts auditlog.Options) *auditlog.Writer {
	t.Helper()
	if opts.Now == nil {
		opts.Now = clock()
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	w, err := auditlog.Open(dir, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// write appends recs in batches of batch lines, syncing after each.
func write(t testing.TB, w *auditlog.Writer, batch int, recs ...[]byte) {
	t.Helper()
	for len(recs) > 0 {
		n := min(batch, len(recs))
		if err := w.Append(recs[:n]...); err != nil {
			t.Fatalf("append: %v", err)
		}
		if err := w.Sync(); err != nil {
			t.Fatalf("sync: %v", err)
		}
		recs = recs[n:]
	}
}

// scanAll returns every record in dir.
func scanAll(t testing.TB, dir string) []auditlog.Record {
	t.Helper()
	var rs []auditlog.Record
	if err := auditlog.Scan(t.Context(), dir, func(r auditlog.Record) error {
		rs = append(rs, r)
		return nil
	}); err != nil {
		t.Fatalf("scan: %v", err)
	}
	return rs
}

// verifyOK verifies dir, fails on a problem, and returns the report.
func verifyOK(t testing.TB, dir string) auditlog.Report {
	t.Helper()
	rep, err := auditlog.Verify(t.Context(), dir, nil)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if rep.Problem != nil {
		t.Fatalf("verify: have problem %+v, want none", *rep.Problem)
	}
	return rep
}

// readLines returns the lines of a segment, with their "\n".
func readLines(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(b, []byte("\n"))[:bytes.Count(b, []byte("\n"))]
}

func writeLines(t testing.TB, path string, lines [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o640); err != nil {
		t.Fatal(err)
	}
}

func seg(dir string, n int) string {
	return filepath.Join(dir, []string{"", "00000001.jsonl", "00000002.jsonl", "00000003.jsonl", "00000004.jsonl"}[n])
}
