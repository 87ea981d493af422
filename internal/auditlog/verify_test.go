package auditlog_test

import (
	"bytes"
	"os"
	"reflect"
	"testing"

	"github.com/fso-project/fso/internal/auditlog"
	"github.com/fso-project/fso/internal/event"
)

// tamperLog writes 3 segments of 4 lines each (records a:1 .. a:12).
func tamperLog(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	w := open(t, dir, auditlog.Options{SegmentBytes: 1})
	write(t, w, 4, events(t, 12)...)
	w.Close()
	return dir
}

func TestVerifyDetectsTampering(t *testing.T) {
	tests := []struct {
		name string
		// tamper changes the log in dir.
		tamper func(t *testing.T, dir string)
		want   auditlog.Problem
	}{
		{
			name: "edited byte in a record",
			tamper: func(t *testing.T, dir string) {
				l := readLines(t, seg(dir, 2))
				l[2] = bytes.Replace(l[2], []byte("/etc/"), []byte("/etx/"), 1)
				writeLines(t, seg(dir, 2), l)
			},
			want: auditlog.Problem{Segment: "00000002.jsonl", Line: 3, Reason: "edited"},
		},
		{
			name: "edited hash",
			tamper: func(t *testing.T, dir string) {
				l := readLines(t, seg(dir, 1))
				i := len(l[1]) - 5
				if l[1][i] == '0' { // a hex digit becomes another one
					l[1][i] = '1'
				} else {
					l[1][i] = '0'
				}
				writeLines(t, seg(dir, 1), l)
			},
			want: auditlog.Problem{Segment: "00000001.jsonl", Line: 2, Reason: "edited"},
		},
		{
			name: "deleted line",
			tamper: func(t *testing.T, dir string) {
				l := readLines(t, seg(dir, 2))
				writeLines(t, seg(dir, 2), append(l[:1], l[2:]...))
			},
			want: auditlog.Problem{Segment: "00000002.jsonl", Line: 2, Reason: "chain broken"},
		},
		{
			name: "deleted first line of the log",
			tamper: func(t *testing.T, dir string) {
				writeLines(t, seg(dir, 1), readLines(t, seg(dir, 1))[1:])
			},
			want: auditlog.Problem{Segment: "00000001.jsonl", Line: 1, Reason: "chain broken"},
		},
		{
			name: "deleted last line of a segment",
			tamper: func(t *testing.T, dir string) {
				writeLines(t, seg(dir, 1), readLines(t, seg(dir, 1))[:3])
			},
			want: auditlog.Problem{Segment: "00000002.jsonl", Line: 1, Reason: "chain broken"},
		},
		{
			name: "inserted copy of another line",
			tamper: func(t *testing.T, dir string) {
				l := readLines(t, seg(dir, 2))
				l = append(l[:3], append([][]byte{readLines(t, seg(dir, 1))[0]}, l[3:]...)...)
				writeLines(t, seg(dir, 2), l)
			},
			want: auditlog.Problem{Segment: "00000002.jsonl", Line: 4, Reason: "chain broken"},
		},
		{
			name: "line repeated",
			tamper: func(t *testing.T, dir string) {
				l := readLines(t, seg(dir, 2))
				l = append(l[:2], append([][]byte{l[1]}, l[2:]...)...)
				writeLines(t, seg(dir, 2), l)
			},
			want: auditlog.Problem{Segment: "00000002.jsonl", Line: 3, Reason: "chain broken"},
		},
		{
			name: "two lines swapped",
			tamper: func(t *testing.T, dir string) {
				l := readLines(t, seg(dir, 3))
				l[1], l[2] = l[2], l[1]
				writeLines(t, seg(dir, 3), l)
			},
			want: auditlog.Problem{Segment: "00000003.jsonl", Line: 2, Reason: "chain broken"},
		},
		{
			name:   "missing middle segment",
			tamper: func(t *testing.T, dir string) { os.Remove(seg(dir, 2)) },
			want:   auditlog.Problem{Segment: "00000002.jsonl", Line: 0, Reason: "missing segment"},
		},
		{
			name:   "missing first segment",
			tamper: func(t *testing.T, dir string) { os.Remove(seg(dir, 1)) },
			want:   auditlog.Problem{Segment: "00000001.jsonl", Line: 0, Reason: "missing segment"},
		},
		{
			name: "torn last line",
			tamper: func(t *testing.T, dir string) {
				b, _ := os.ReadFile(seg(dir, 3))
				os.WriteFile(seg(dir, 3), b[:len(b)-100], 0o640)
			},
			want: auditlog.Problem{Segment: "00000003.jsonl", Line: 4, Reason: "torn"},
		},
		{
			name: "unparsable line",
			tamper: func(t *testing.T, dir string) {
				l := readLines(t, seg(dir, 1))
				l[2] = []byte("{\"kind\":\"event\"}\n")
				writeLines(t, seg(dir, 1), l)
			},
			want: auditlog.Problem{Segment: "00000001.jsonl", Line: 3, Reason: "unparsable"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := tamperLog(t)
			verifyOK(t, dir)
			tc.tamper(t, dir)
			rep, err := auditlog.Verify(t.Context(), dir, nil)
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if rep.Problem == nil || (auditlog.Problem{Segment: rep.Problem.Segment, Line: rep.Problem.Line, Reason: rep.Problem.Reason}) != tc.want {
				t.Errorf("have problem %+v, want %+v", rep.Problem, tc.want)
			}
		})
	}
}

func TestVerifyAgents(t *testing.T) {
	tests := []struct {
		name string
		recs func(t *testing.T) [][]byte
		want map[string]auditlog.AgentReport
	}{
		{
			name: "missing seq",
			recs: func(t *testing.T) [][]byte {
				return [][]byte{ev(t, "a", 1, event.Create, "/x"), ev(t, "a", 2, event.Modify, "/x"), ev(t, "a", 4, event.Delete, "/x")}
			},
			want: map[string]auditlog.AgentReport{
				"a": {Records: 3, FirstSeq: 1, LastSeq: 4, Missing: [][2]uint64{{3, 3}}, MissingCount: 1},
			},
		},
		{
			name: "gap record covers the loss",
			recs: func(t *testing.T) [][]byte {
				return [][]byte{ev(t, "a", 1, event.Create, "/x"), ev(t, "a", 2, event.Modify, "/x"), gap(t, "a", 4, 3, 3), ev(t, "a", 5, event.Delete, "/x")}
			},
			want: map[string]auditlog.AgentReport{
				"a": {Records: 4, FirstSeq: 1, LastSeq: 5, Gaps: 1},
			},
		},
		{
			name: "agents apart, first seq above 1, diff shares the sequence",
			recs: func(t *testing.T) [][]byte {
				d, _ := event.Diff{Agent: "b", Seq: 11, EventID: "b:10", Path: "/x", Diff: "-a\n+b\n"}.Marshal()
				return [][]byte{
					ev(t, "b", 10, event.Modify, "/x"), ev(t, "a", 1, event.Create, "/x"), d,
					ev(t, "b", 14, event.Modify, "/x"), ev(t, "a", 2, event.Create, "/x"), ev(t, "b", 20, event.Modify, "/x"),
					[]byte(`{"kind":"rejected","agent":"b","seq":30}`), // not an agent's record: no seq
				}
			},
			want: map[string]auditlog.AgentReport{
				"a": {Records: 2, FirstSeq: 1, LastSeq: 2},
				"b": {Records: 4, FirstSeq: 10, LastSeq: 20, Missing: [][2]uint64{{12, 13}, {15, 19}}, MissingCount: 7},
			},
		},
		{
			name: "duplicate and out of order",
			recs: func(t *testing.T) [][]byte {
				return [][]byte{ev(t, "a", 2, event.Create, "/x"), ev(t, "a", 1, event.Create, "/x"), ev(t, "a", 2, event.Create, "/x")}
			},
			want: map[string]auditlog.AgentReport{
				"a": {Records: 3, FirstSeq: 1, LastSeq: 2, Duplicates: 1},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, open(t, dir, auditlog.Options{}), 100, tc.recs(t)...)
			rep := verifyOK(t, dir)
			if !reflect.DeepEqual(rep.Agents, tc.want) {
				t.Errorf("agents:\nhave %+v\nwant %+v", rep.Agents, tc.want)
			}
		})
	}
}

func TestVerifyProgress(t *testing.T) {
	dir := tamperLog(t)
	var done, total int64
	rep, err := auditlog.Verify(t.Context(), dir, func(d, t int64) { done, total = d, t })
	if err != nil {
		t.Fatal(err)
	}
	if done != rep.Bytes || total != rep.Bytes || total == 0 {
		t.Errorf("last progress %d/%d, want %d/%d", done, total, rep.Bytes, rep.Bytes)
	}
}

func TestVerifyEmpty(t *testing.T) {
	rep := verifyOK(t, t.TempDir())
	if rep.Segments != 0 || rep.Records != 0 || rep.Head != "" {
		t.Errorf("empty log: report %+v", rep)
	}
}
