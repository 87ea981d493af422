package auditlog_test

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/fso-project/fso/internal/auditlog"
	"github.com/fso-project/fso/internal/event"
)

func TestQuery(t *testing.T) {
	dir := t.TempDir()
	diff, _ := event.Diff{Agent: "b", Seq: 4, EventID: "b:3", Path: "/srv/www/app.conf", Diff: "-a\n+b\n"}.Marshal()
	// Line numbers 1..6; observed 1h, 2h, 3h, 4h after t0; the gap and
	// the diff have only recorded_at, a few ms after t0.
	write(t, open(t, dir, auditlog.Options{}), 10,
		ev(t, "a", 1, event.Create, "/etc/nginx/nginx.conf"),
		ev(t, "a", 2, event.Modify, "/etc/hosts"),
		ev(t, "b", 3, event.Modify, "/srv/www/app.conf"),
		ev(t, "a", 4, event.Rename, "/etc/a.conf"), // from /etc/a.conf.old
		gap(t, "a", 5, 3, 3),
		diff,
	)
	tests := []struct {
		name   string
		filter auditlog.Filter
		want   []int64 // line numbers
	}{
		{name: "all", want: []int64{1, 2, 3, 4, 5, 6}},
		{name: "glob any depth", filter: auditlog.Filter{Paths: []string{"**/*.conf"}}, want: []int64{1, 3, 4, 6}},
		{name: "glob on old_path", filter: auditlog.Filter{Paths: []string{"**/*.old"}}, want: []int64{4}},
		{name: "absolute glob", filter: auditlog.Filter{Paths: []string{"/etc/**"}}, want: []int64{1, 2, 4}},
		{name: "any glob", filter: auditlog.Filter{Paths: []string{"/etc/hosts", "/srv/**"}}, want: []int64{2, 3, 6}},
		{name: "agent", filter: auditlog.Filter{Agents: []string{"b"}}, want: []int64{3, 6}},
		{name: "type", filter: auditlog.Filter{Types: []string{"modify"}}, want: []int64{2, 3}},
		{name: "kind", filter: auditlog.Filter{Kinds: []string{"gap", "diff"}}, want: []int64{5, 6}},
		{name: "time range", filter: auditlog.Filter{Since: t0.Add(2 * time.Hour), Until: t0.Add(4 * time.Hour)}, want: []int64{2, 3}},
		{name: "since only", filter: auditlog.Filter{Since: t0.Add(3 * time.Hour)}, want: []int64{3, 4}},
		{name: "until recorded_at", filter: auditlog.Filter{Until: t0.Add(time.Hour)}, want: []int64{5, 6}},
		{name: "agent and glob", filter: auditlog.Filter{Agents: []string{"a"}, Paths: []string{"**/*.conf"}}, want: []int64{1, 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var have []int64
			err := auditlog.Query(t.Context(), dir, tc.filter, func(r auditlog.Record) error {
				have = append(have, r.Line)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(have, tc.want) {
				t.Errorf("have lines %v, want %v", have, tc.want)
			}
		})
	}
	if err := auditlog.Query(t.Context(), dir, auditlog.Filter{Paths: []string{"[a-"}}, func(auditlog.Record) error { return nil }); err == nil {
		t.Error("query with a bad glob: have no error")
	}
}

// startTail runs Tail on dir until the test ends and returns its records.
func startTail(t *testing.T, dir string, f auditlog.Filter) <-chan auditlog.Record {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	got := make(chan auditlog.Record, 1000)
	done := make(chan error, 1)
	go func() {
		done <- auditlog.Tail(ctx, dir, f, func(r auditlog.Record) error {
			got <- r
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("tail: %v", err)
		}
	})
	return got
}

// expectIDs receives records from got and checks their ids.
func expectIDs(t *testing.T, got <-chan auditlog.Record, ids ...string) []auditlog.Record {
	t.Helper()
	var rs []auditlog.Record
	for _, id := range ids {
		select {
		case r := <-got:
			if r.ID != id {
				t.Fatalf("tail: have %s (%s line %d), want %s", r.ID, r.Segment, r.Line, id)
			}
			rs = append(rs, r)
		case <-time.After(5 * time.Second):
			t.Fatalf("tail: nothing after 5s, want %s", id)
		}
	}
	return rs
}

func expectNothing(t *testing.T, got <-chan auditlog.Record) {
	t.Helper()
	select {
	case r := <-got:
		t.Fatalf("tail: have %s (%s line %d), want nothing more", r.ID, r.Segment, r.Line)
	case <-time.After(600 * time.Millisecond):
	}
}

func TestTailFollows(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir, auditlog.Options{SegmentBytes: 1000})
	recs := events(t, 20)
	write(t, w, 2, recs[:4]...)
	got := startTail(t, dir, auditlog.Filter{Agents: []string{"a"}})
	expectIDs(t, got, "a:1", "a:2", "a:3", "a:4")
	for i := 4; i < 20; i += 2 {
		write(t, w, 2, recs[i], ev(t, "b", uint64(i), event.Create, "/other"), recs[i+1])
	}
	var want []string
	for i := 5; i <= 20; i++ {
		want = append(want, event.ID("a", uint64(i)))
	}
	rs := expectIDs(t, got, want...)
	if last := rs[len(rs)-1]; last.Segment == "00000001.jsonl" {
		t.Errorf("the last record is in %s: no rotation happened", last.Segment)
	}
	expectNothing(t, got)
}

// A Sync that fails after writing takes its lines back; Tail may have
// emitted them already. It must go on with the lines written in their place.
func TestTailResyncsAfterTakeBack(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir, auditlog.Options{})
	write(t, w, 5, events(t, 5)...)
	w.Close()
	lines := readLines(t, seg(dir, 1))

	// The same first 3 lines, then two others chained to the third.
	alt := t.TempDir()
	writeLines(t, seg(alt, 1), lines[:3])
	w2 := open(t, alt, auditlog.Options{})
	write(t, w2, 5, ev(t, "b", 1, event.Create, "/b1"), ev(t, "b", 2, event.Create, "/b2"))
	w2.Close()
	replaced := readLines(t, seg(alt, 1))[3:]

	got := startTail(t, dir, auditlog.Filter{})
	expectIDs(t, got, "a:1", "a:2", "a:3", "a:4", "a:5")

	f, err := os.OpenFile(seg(dir, 1), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size := int64(len(lines[0]) + len(lines[1]) + len(lines[2]))
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(append(replaced[0], replaced[1]...), size); err != nil {
		t.Fatal(err)
	}
	rs := expectIDs(t, got, "b:1", "b:2")
	if rs[0].Line != 4 || rs[1].Line != 5 {
		t.Errorf("replacing lines numbered %d, %d; want 4, 5", rs[0].Line, rs[1].Line)
	}
	expectNothing(t, got)
}

func TestFormatText(t *testing.T) {
	tests := []struct {
		name string
		r    auditlog.Record
		want string
	}{
		{
			name: "event",
			r:    auditlog.Record{Kind: "event", Type: "modify", Agent: "web-1", Path: "/etc/hosts", ObservedAt: t0, RecordedAt: t0.Add(time.Second)},
			want: "2026-03-01T12:00:00.000000000Z web-1 event/modify /etc/hosts",
		},
		{
			name: "rename",
			r:    auditlog.Record{Kind: "event", Type: "rename", Agent: "web-1", Path: "/etc/b", OldPath: "/etc/a", ObservedAt: t0},
			want: "2026-03-01T12:00:00.000000000Z web-1 event/rename /etc/a -> /etc/b",
		},
		{
			name: "newline cannot forge a line",
			r:    auditlog.Record{Kind: "event", Type: "create", Agent: "web-1", Path: "/tmp/x\n2026-03-01T12:00:00.000000000Z web-1 event/delete /etc/passwd", ObservedAt: t0},
			want: `2026-03-01T12:00:00.000000000Z web-1 event/create "/tmp/x\n2026-03-01T12:00:00.000000000Z web-1 event/delete /etc/passwd"`,
		},
		{
			name: "invalid UTF-8",
			r:    auditlog.Record{Kind: "event", Type: "create", Agent: "web-1", Path: "/tmp/\xff", ObservedAt: t0},
			want: `2026-03-01T12:00:00.000000000Z web-1 event/create "/tmp/\xff"`,
		},
		{
			name: "arrow cannot forge a rename",
			r:    auditlog.Record{Kind: "event", Type: "create", Agent: "web-1", Path: "/tmp/a -> /etc/shadow", ObservedAt: t0},
			want: `2026-03-01T12:00:00.000000000Z web-1 event/create "/tmp/a -> /etc/shadow"`,
		},
		{
			name: "bidi override",
			r:    auditlog.Record{Kind: "event", Type: "create", Agent: "web-1", Path: "/tmp/\u202egnp.exe", ObservedAt: t0},
			want: `2026-03-01T12:00:00.000000000Z web-1 event/create "/tmp/\u202egnp.exe"`,
		},
		{
			name: "spaces are fine inside",
			r:    auditlog.Record{Kind: "event", Type: "create", Agent: "web-1", Path: "/srv/My Documents/a b", ObservedAt: t0},
			want: `2026-03-01T12:00:00.000000000Z web-1 event/create /srv/My Documents/a b`,
		},
		{
			name: "gap uses recorded_at",
			r:    auditlog.Record{Kind: "gap", Agent: "web-1", FromSeq: 3, ToSeq: 5, Reason: "spool full", RecordedAt: t0},
			want: "2026-03-01T12:00:00.000000000Z web-1 gap seq 3..5 (spool full)",
		},
		{
			name: "diff",
			r:    auditlog.Record{Kind: "diff", Agent: "web-1", Path: "/etc/x.conf", EventID: "web-1:7", RecordedAt: t0},
			want: "2026-03-01T12:00:00.000000000Z web-1 diff /etc/x.conf (event web-1:7)",
		},
		{
			name: "nothing known",
			r:    auditlog.Record{Kind: "rejected"},
			want: "- - rejected",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if have := auditlog.FormatText(tc.r); have != tc.want {
				t.Errorf("\nhave %s\nwant %s", have, tc.want)
			}
		})
	}
}
