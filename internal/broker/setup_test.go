package broker_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fso-project/fso/internal/broker"
	"github.com/fso-project/fso/internal/broker/brokertest"
)

// TestWorkQueueConsumerInMemory: a new FSO stream is a work queue and the
// recorder's consumer keeps its state in memory. A broker restart loses
// that consumer; Setup makes it again, and it delivers every message the
// stream still holds.
func TestWorkQueueConsumerInMemory(t *testing.T) {
	dir := t.TempDir()
	b := brokertest.StartIn(t, dir)
	js := b.JetStream(t)
	s, err := js.Stream(t.Context(), broker.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if r := s.CachedInfo().Config.Retention; r != jetstream.WorkQueuePolicy {
		t.Fatalf("new stream: retention %v, want work queue", r)
	}
	c, err := js.Consumer(t.Context(), broker.Stream, broker.RecorderDurable)
	if err != nil {
		t.Fatal(err)
	}
	if !c.CachedInfo().Config.MemoryStorage {
		t.Fatal("recorder's consumer on a work queue: state on disk, want in memory")
	}
	for i := range 3 {
		if _, err := js.Publish(t.Context(), "fso.events.a.create", []byte{byte('0' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	b.Shutdown()

	b = brokertest.StartIn(t, dir) // runs Setup
	js = b.JetStream(t)
	c, err = js.Consumer(t.Context(), broker.Stream, broker.RecorderDurable)
	if err != nil {
		t.Fatalf("consumer after a restart and Setup: %v", err)
	}
	batch, err := c.Fetch(10, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for m := range batch.Messages() {
		got = append(got, string(m.Data()))
	}
	if len(got) != 3 || got[0] != "0" || got[2] != "2" {
		t.Fatalf("after the restart the consumer delivered %q, want the 3 messages kept", got)
	}
}

// TestInterestStreamKept: a stream made by an older FSO (interest
// retention, which the broker cannot turn into a work queue) keeps its
// retention, and the consumer its state on disk: without its consumer an
// interest stream would drop new messages.
func TestInterestStreamKept(t *testing.T) {
	b, err := broker.Start(broker.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	tb := &brokertest.Broker{Broker: b, URL: b.ClientURL()}
	js := tb.JetStream(t)
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: broker.Stream, Subjects: []string{"fso.events.>", "fso.diffs.>", "fso.config"},
		Retention: jetstream.InterestPolicy, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if err := broker.Setup(t.Context(), js, broker.SetupOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(t.Context(), broker.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if r := s.CachedInfo().Config.Retention; r != jetstream.InterestPolicy {
		t.Fatalf("older stream after Setup: retention %v, want interest kept", r)
	}
	c, err := js.Consumer(t.Context(), broker.Stream, broker.RecorderDurable)
	if err != nil {
		t.Fatal(err)
	}
	if c.CachedInfo().Config.MemoryStorage {
		t.Fatal("recorder's consumer on an interest stream: state in memory, want on disk")
	}
}
