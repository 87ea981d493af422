package event_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fso-project/fso/internal/event"
)

func TestBundle(t *testing.T) {
	enc := func(agent string, seq uint64) []byte {
		t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
		e := event.Event{ID: event.ID(agent, seq), Agent: agent, Host: "h", Seq: seq, Type: event.Modify,
			Path: "/r/x\ny", ObservedAt: t0, EmittedAt: t0, Source: event.SourceWatch}
		b, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	subj := event.BundleSubject("web-1")
	if !event.IsBundle(subj) || event.IsBundle(event.EventSubject("web-1", event.Create)) || event.IsBundle("fso.diffs.bundle") {
		t.Fatal("IsBundle is wrong")
	}
	gap, _ := event.Gap{Agent: "web-1", Seq: 9, FromSeq: 1, ToSeq: 2, Reason: "r", EmittedAt: time.Now()}.Marshal()
	data := event.Bundle([][]byte{enc("web-1", 1), []byte("garbage"), enc("other", 2), {}, gap, enc("web-1", 3)})
	lines := event.DecodeBundle(subj, data)
	if len(lines) != 6 {
		t.Fatalf("%d lines, want 6", len(lines))
	}
	for i, want := range []string{"", "invalid", `payload agent "other"`, "empty line", "unknown field", ""} {
		l := lines[i]
		switch {
		case want == "" && (l.Err != nil || l.Record.Event == nil):
			t.Errorf("line %d: %v, want an event", i, l.Err)
		case want != "" && (l.Err == nil || !errors.Is(l.Err, event.ErrInvalid) || !strings.Contains(l.Err.Error(), want)):
			t.Errorf("line %d: error %v, want one mentioning %q", i, l.Err, want)
		}
	}
	if lines[0].Record.Seq != 1 || lines[5].Record.Seq != 3 || lines[0].Record.Event.Path != "/r/x\ny" {
		t.Errorf("records: %+v %+v", lines[0].Record, lines[5].Record)
	}
	if !bytes.Equal(lines[1].Data, []byte("garbage")) {
		t.Errorf("a bad line keeps its bytes: %q", lines[1].Data)
	}
	big := event.DecodeBundle(subj, bytes.Repeat([]byte("x"), event.MaxBundleBytes+1))
	if len(big) != 1 || big[0].Err == nil {
		t.Errorf("an oversized bundle is one rejected line: %+v", big)
	}
}
