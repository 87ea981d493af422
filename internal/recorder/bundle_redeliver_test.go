package recorder_test

import (
	"testing"
	"time"

	"github.com/fso-project/fso/internal/broker"
	"github.com/fso-project/fso/internal/broker/brokertest"
)

// A bundle that stays in the stream (a line waits for a missing seq) is
// delivered again and again; its bad line is a rejected record once, not
// once a delivery.
func TestBundleRejectOnce(t *testing.T) {
	b := brokertest.Start(t)
	js := b.JetStream(t)
	dir := t.TempDir()
	start(t, b, dir)
	// Redeliver every 200ms instead of every 10s.
	c, err := js.Consumer(t.Context(), broker.Stream, broker.RecorderDurable)
	if err != nil {
		t.Fatal(err)
	}
	cc := c.CachedInfo().Config
	cc.AckWait = 200 * time.Millisecond
	if _, err := js.UpdateConsumer(t.Context(), broker.Stream, cc); err != nil {
		t.Fatal(err)
	}
	bad := bundle("a", 2, 3)
	bad.Data = append(append(bad.Data, '\n'), []byte(`{"kind":"event","agent":"b"}`)...)
	publish(t, js, bad)
	waitLines(t, dir, 1)
	time.Sleep(1500 * time.Millisecond) // several redeliveries
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumRedelivered == 0 && info.Delivered.Consumer < 2 {
		t.Fatalf("the bundle was not delivered again (%+v): the test proves nothing", info)
	}
	publish(t, js, ev("a", 1))
	got := waitLines(t, dir, 4)
	time.Sleep(500 * time.Millisecond) // a late redelivery would add a line
	got = waitLines(t, dir, 4)
	rejected := 0
	for _, l := range got {
		if l.Kind == "rejected" {
			rejected++
		}
	}
	if rejected != 1 || len(got) != 4 {
		t.Fatalf("%d lines, %d rejected: want events 1, 2, 3 and one rejected line", len(got), rejected)
	}
}
