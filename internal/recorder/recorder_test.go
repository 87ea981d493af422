package recorder_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fso-project/fso/internal/auditlog"
	"github.com/fso-project/fso/internal/broker/brokertest"
	"github.com/fso-project/fso/internal/event"
	"github.com/fso-project/fso/internal/recorder"
)

func ev(agent string, seq uint64) *nats.Msg {
	t0 := time.Now()
	e := event.Event{ID: event.ID(agent, seq), Agent: agent, Host: "h", Seq: seq, Type: event.Create,
		Path: fmt.Sprintf("/r/f%d", seq), ObservedAt: t0, EmittedAt: t0, Source: event.SourceWatch}
	b, _ := e.Marshal()
	return &nats.Msg{Subject: event.EventSubject(agent, event.Create), Data: b}
}

func publish(t *testing.T, js jetstream.JetStream, m *nats.Msg) {
	t.Helper()
	if _, err := js.PublishMsg(t.Context(), m); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

type line struct {
	Kind   string `json:"kind"`
	Agent  string `json:"agent"`
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason"`
}

func start(t *testing.T, b *brokertest.Broker, dir string) context.CancelFunc {
	t.Helper()
	return startWith(t, b, recorder.Config{AuditDir: dir})
}

// startWith runs a recorder with cfg until the returned func or the end
// of the test.
func startWith(t *testing.T, b *brokertest.Broker, cfg recorder.Config) context.CancelFunc {
	t.Helper()
	r, err := recorder.New(cfg, b.JetStream(t), slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("recorder: %v", err)
		}
	}
	t.Cleanup(func() {
		if ctx.Err() == nil {
			stop()
		}
	})
	return stop
}

func waitLines(t *testing.T, dir string, n int) []line {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var out []line
		auditlog.Scan(t.Context(), dir, func(r auditlog.Record) error {
			var l line
			json.Unmarshal(r.Raw, &l)
			out = append(out, l)
			return nil
		})
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("have %d lines, want %d: %+v", len(out), n, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Out-of-order arrivals are written in seq order, duplicates dropped,
// garbage rejected explicitly, and the watermark published.
func TestOrderDedupeReject(t *testing.T) {
	b := brokertest.Start(t)
	js := b.JetStream(t)
	dir := t.TempDir()
	stop := start(t, b, dir)
	for _, seq := range []uint64{2, 1, 1, 3, 5, 2} {
		publish(t, js, ev("a", seq))
	}
	publish(t, js, &nats.Msg{Subject: "fso.events.a.create", Data: []byte("not json")})
	forged := ev("b", 1)
	forged.Subject = "fso.events.a.create"
	publish(t, js, forged) // payload names agent b on agent a's subject
	publish(t, js, ev("a", 4))
	got := waitLines(t, dir, 7)
	var seqs []uint64
	rejected := 0
	for _, l := range got {
		switch l.Kind {
		case "event":
			if l.Agent != "a" {
				t.Fatalf("forged record accepted: %+v", l)
			}
			seqs = append(seqs, l.Seq)
		case "rejected":
			rejected++
		}
	}
	if fmt.Sprint(seqs) != "[1 2 3 4 5]" || rejected != 2 {
		t.Fatalf("have seqs %v and %d rejected, want [1 2 3 4 5] and 2: %+v", seqs, rejected, got)
	}
	kv, err := js.KeyValue(t.Context(), "fso-agents")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		e, err := kv.Get(t.Context(), "recorded.a")
		if err == nil && string(e.Value()) == "5" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("watermark of a: %v %v, want 5", e, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Nothing more is written later: no duplicate behind the lines waited for.
	stop()
	if all := waitLines(t, dir, 0); len(all) != 7 {
		t.Fatalf("have %d lines after stopping, want 7: %+v", len(all), all)
	}
}

// A restarted recorder knows what it wrote: redelivered and retransmitted
// records are not written twice, and a gap record lets it move past seqs
// that will never come.
func TestRestartAndGap(t *testing.T) {
	b := brokertest.Start(t)
	js := b.JetStream(t)
	dir := t.TempDir()
	stop := start(t, b, dir)
	for seq := uint64(1); seq <= 3; seq++ {
		publish(t, js, ev("a", seq))
	}
	waitLines(t, dir, 3)
	stop()
	stop = start(t, b, dir)
	for seq := uint64(1); seq <= 3; seq++ {
		publish(t, js, ev("a", seq)) // a retransmit after the dedupe window
	}
	publish(t, js, ev("a", 7))
	g, _ := event.Gap{Agent: "a", Seq: 6, FromSeq: 4, ToSeq: 5, Reason: "spool full"}.Marshal()
	publish(t, js, &nats.Msg{Subject: event.GapSubject("a"), Data: g})
	got := waitLines(t, dir, 5)
	var desc []string
	for _, l := range got {
		desc = append(desc, fmt.Sprintf("%s%d", l.Kind, l.Seq))
	}
	if fmt.Sprint(desc) != "[event1 event2 event3 gap6 event7]" {
		t.Fatalf("have %v", desc)
	}
	stop()
	if all := waitLines(t, dir, 0); len(all) != 5 {
		t.Fatalf("have %d lines after stopping, want 5: %+v", len(all), all)
	}
	rep, err := auditlog.Verify(t.Context(), dir, nil)
	if err != nil || rep.Problem != nil || rep.Agents["a"].MissingCount != 0 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// bundle joins events of agent into one bundle message.
func bundle(agent string, seqs ...uint64) *nats.Msg {
	var recs [][]byte
	for _, s := range seqs {
		recs = append(recs, ev(agent, s).Data)
	}
	return &nats.Msg{Subject: event.BundleSubject(agent), Data: event.Bundle(recs)}
}

// startStream runs a recorder writing to a new dir on a new broker, and
// returns a client, the dir and the FSO stream.
func startStream(t *testing.T) (jetstream.JetStream, string, jetstream.Stream) {
	t.Helper()
	b := brokertest.Start(t)
	js := b.JetStream(t)
	dir := t.TempDir()
	start(t, b, dir)
	stream, err := js.Stream(t.Context(), "FSO")
	if err != nil {
		t.Fatal(err)
	}
	return js, dir, stream
}

// A bundle's events are written like single ones, a bad line is rejected
// alone, and the bundle stays in the stream (unacked) while one of its
// lines waits for a missing predecessor.
func TestBundles(t *testing.T) {
	js, dir, stream := startStream(t)
	msgs := func() uint64 {
		si, err := stream.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return si.State.Msgs
	}
	waitMsgs := func(want uint64) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); msgs() != want; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("stream holds %d messages, want %d", msgs(), want)
			}
		}
	}
	bad := bundle("a", 1, 2)
	bad.Data = append(append(bad.Data, '\n'), []byte(`{"kind":"event","agent":"b"}`)...) // another agent's line
	publish(t, js, bad)
	got := waitLines(t, dir, 3)
	if got[0].Seq != 1 || got[1].Seq != 2 || got[2].Kind != "rejected" {
		t.Fatalf("have %+v, want events 1, 2 and a rejected line", got)
	}
	waitMsgs(0) // acked once every line is accounted for
	// Seq 4 is missing: the bundle's 3 is written, its 5 waits, so the
	// bundle must stay.
	publish(t, js, bundle("a", 3, 5))
	// Acks go out in order: once the next message is acked, an early ack
	// of the bundle would have gone out too.
	publish(t, js, ev("c", 1))
	waitLines(t, dir, 5)
	waitMsgs(1)
	publish(t, js, ev("a", 4))
	got = waitLines(t, dir, 7)
	var seqs []uint64
	for _, l := range got {
		if l.Agent == "a" {
			seqs = append(seqs, l.Seq)
		}
	}
	if fmt.Sprint(seqs) != "[1 2 3 4 5]" {
		t.Fatalf("agent a's seqs %v, want [1 2 3 4 5]", seqs)
	}
	waitMsgs(0)
}

// TestNewestAckHeld: the ack round after records were written holds the
// newest ack back, so that a steady stream never empties the stream (the
// broker would re-create its last block file at every round); the next
// round without new records sends it.
func TestNewestAckHeld(t *testing.T) {
	js, dir, stream := startStream(t)
	publish(t, js, ev("a", 1))
	publish(t, js, ev("a", 2))
	waitLines(t, dir, 2)
	var seen []uint64 // distinct message counts, in order
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		si, err := stream.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n := si.State.Msgs; len(seen) == 0 || seen[len(seen)-1] != n {
			seen = append(seen, n)
		}
		if si.State.Msgs == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream still holds messages after 20 s: counts %v", seen)
		}
	}
	if len(seen) < 2 || fmt.Sprint(seen[len(seen)-2:]) != "[1 0]" {
		t.Fatalf("messages in the stream went %v; want the newest held for a round: ... 1 0", seen)
	}
}
