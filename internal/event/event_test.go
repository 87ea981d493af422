package event_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fso-project/fso/internal/event"
)

func sample(path string) event.Event {
	t0 := time.Date(2026, 11, 26, 1, 2, 3, 4, time.UTC)
	size := int64(3)
	return event.Event{ID: "web-1:7", Agent: "web-1", Host: "h", Seq: 7, Type: event.Rename, Path: path, OldPath: path + ".old",
		ObservedAt: t0, EmittedAt: t0.Add(time.Millisecond), Source: event.SourceWatch, Size: &size}
}

func TestDecodeRoundTrip(t *testing.T) {
	for _, p := range []string{"/a/b", "/with space/new\nline", "/x/\xff\xfe", "/q/\"quote\\", "/ctl/\x01\x1b[0m", "/" + strings.Repeat("é", 200)} {
		e := sample(p)
		data, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.ContainsRune(data, '\n') {
			t.Fatalf("encoded record spans lines: %s", data)
		}
		r, err := event.Decode(event.EventSubject("web-1", event.Rename), data)
		if err != nil {
			t.Fatalf("decode %q: %v", p, err)
		}
		if r.Event.Path != p || r.Event.OldPath != p+".old" || r.Seq != 7 || r.Agent != "web-1" {
			t.Fatalf("round trip of %q: have path %q old %q", p, r.Event.Path, r.Event.OldPath)
		}
		if !bytes.Equal(r.JSON, data) {
			t.Fatalf("re-encoding changed the record:\nhave %s\nwant %s", r.JSON, data)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good := func() event.Event { return sample("/a") }
	enc := func(e event.Event) []byte { b, _ := e.Marshal(); return b }
	tests := []struct {
		name    string
		subject string
		data    []byte
		want    string // part of the error
	}{
		{"not json", "fso.events.web-1.rename", []byte("garbage"), "invalid"},
		{"unknown kind", "fso.events.web-1.rename", []byte(`{"kind":"bogus"}`), "unknown kind"},
		{"unknown field", "fso.events.web-1.rename", append(enc(good())[:len(enc(good()))-1], []byte(`,"recorded_at":"x"}`)...), "unknown field"},
		{"agent mismatch", "fso.events.web-2.rename", enc(good()), "subject"},
		{"type mismatch", "fso.events.web-1.create", enc(good()), "does not match event type"},
		{"not an fso subject", "other.subject", enc(good()), "not an FSO subject"},
		{"bad id", "fso.events.web-1.rename", func() []byte { e := good(); e.ID = "web-1:8"; return enc(e) }(), "id"},
		{"zero seq", "fso.events.web-1.rename", func() []byte { e := good(); e.Seq, e.ID = 0, "web-1:0"; return enc(e) }(), "seq"},
		{"rename without old path", "fso.events.web-1.rename", func() []byte { e := good(); e.OldPath = ""; return enc(e) }(), "old_path"},
		{"two records", "fso.events.web-1.rename", append(enc(good()), enc(good())...), "data after the record"},
		{"kind given twice", "fso.events.web-1.rename", append(enc(good())[:len(enc(good()))-1], []byte(`,"kind":"diff"}`)...), "kind"},
		{"oversized", "fso.events.web-1.rename", bytes.Repeat([]byte(" "), event.MaxRecordBytes+1), "bytes"},
		{"bad agent id", "fso.events.WEB.rename", []byte(`{"kind":"event","agent":"WEB"}`), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := event.Decode(tc.subject, tc.data)
			if !errors.Is(err, event.ErrInvalid) {
				t.Fatalf("have %v, want an ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestSubjects(t *testing.T) {
	if a, ok := event.SubjectAgent(event.DiffSubject("x-1")); !ok || a != "x-1" {
		t.Fatalf("diff subject agent: %q %v", a, ok)
	}
	if a, ok := event.SubjectAgent(event.GapSubject("x-1")); !ok || a != "x-1" {
		t.Fatalf("gap subject agent: %q %v", a, ok)
	}
	for in, want := range map[string]string{"Web_01.example.com": "web-01-example-com", "": "agent", "---": "agent", "ÉTÉ": "t"} {
		if have := event.SanitizeID(in); have != want {
			t.Errorf("SanitizeID(%q) = %q, want %q", in, have, want)
		}
		if err := event.ValidAgentID(event.SanitizeID(in)); err != nil {
			t.Errorf("SanitizeID(%q) is not valid: %v", in, err)
		}
	}
}

func TestRejected(t *testing.T) {
	data := bytes.Repeat([]byte{0xff}, event.RejectedDataMax+10)
	r := event.NewRejected("fso.events.x.create", data, errors.New("bad \xff reason"), 9)
	if !r.Truncated || r.Size != len(data) || len(r.SHA256) != 64 {
		t.Fatalf("rejected: %+v", r)
	}
	b, err := r.Marshal()
	if err != nil || !bytes.Contains(b, []byte(`"kind":"rejected"`)) {
		t.Fatalf("marshal: %s %v", b, err)
	}
}

// FuzzDecode: no input may panic the decoder, and what it accepts
// re-encodes to something it accepts again, unchanged.
func FuzzDecode(f *testing.F) {
	e := sample("/a/\xff")
	b, _ := e.Marshal()
	f.Add("fso.events.web-1.rename", b)
	g, _ := event.Gap{Agent: "web-1", Seq: 3, FromSeq: 1, ToSeq: 2, Reason: "r"}.Marshal()
	f.Add("fso.events.web-1.gap", g)
	f.Add("fso.diffs.web-1", []byte(`{"kind":"diff","agent":"web-1","seq":1,"event_id":"web-1:1","path":"/a","diff":""}`))
	f.Add("fso.events.x", []byte(`{"kind":"event"`))
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		r, err := event.Decode(subject, data)
		if err != nil {
			return
		}
		r2, err := event.Decode(subject, r.JSON)
		if err != nil {
			t.Fatalf("re-encoded record rejected: %v\n%s", err, r.JSON)
		}
		if !bytes.Equal(r.JSON, r2.JSON) {
			t.Fatalf("encoding not stable:\n%s\n%s", r.JSON, r2.JSON)
		}
	})
}
