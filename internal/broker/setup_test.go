package broker_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fso-project/fso/internal/broker"
	"github.com/fso-project/fso/internal/broker/brokertest"
)

// TestWorkQueueConsumerInMemory: a new FSO stream is a work queue and the
// recorder's consumer keeps its state in memory. A broker killed and
// restarted on its data has lost that consumer but kept the messages;
// Setup makes the consumer again, and it delivers every one of them.
func TestWorkQueueConsumerInMemory(t *testing.T) {
	dir := t.TempDir()
	b := brokertest.StartIn(t, dir)
	js := b.JetStream(t)
	checkSetup(t, js, jetstream.WorkQueuePolicy, true)
	for i := range 3 {
		if _, err := js.Publish(t.Context(), "fso.events.a.create", []byte{byte('0' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	b.Shutdown()

	// Restarted without Setup: the consumer is gone, the messages are not.
	rb := startRaw(t, dir)
	js = rb.JetStream(t)
	if _, err := js.Consumer(t.Context(), broker.Stream, broker.RecorderDurable); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("consumer after a restart: %v, want not found (its state was in memory)", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := broker.Setup(ctx, js, broker.SetupOptions{}); err != nil {
		t.Fatal(err)
	}
	c, err := js.Consumer(t.Context(), broker.Stream, broker.RecorderDurable)
	if err != nil {
		t.Fatalf("consumer after Setup: %v", err)
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

// startRaw starts a broker on dir without FSO's setup.
func startRaw(t *testing.T, dir string) *brokertest.Broker {
	t.Helper()
	b, err := broker.Start(broker.Config{DataDir: dir, Listen: "127.0.0.1:0"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	return &brokertest.Broker{Broker: b, URL: b.ClientURL()}
}

// TestInterestStreamKept: a stream made by an older FSO (interest
// retention, which the broker cannot turn into a work queue) keeps its
// retention, and the consumer its state on disk: without its consumer an
// interest stream would drop new messages.
func TestInterestStreamKept(t *testing.T) {
	js := startRaw(t, t.TempDir()).JetStream(t)
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: broker.Stream, Subjects: []string{"fso.events.>", "fso.diffs.>", "fso.config"},
		Retention: jetstream.InterestPolicy, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	// Bounded: a Setup that insisted on a work queue would retry forever.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := broker.Setup(ctx, js, broker.SetupOptions{}); err != nil {
		t.Fatal(err)
	}
	checkSetup(t, js, jetstream.InterestPolicy, false)
}

// checkSetup checks the FSO stream's retention and whether the recorder's
// consumer keeps its state in memory.
func checkSetup(t *testing.T, js jetstream.JetStream, retention jetstream.RetentionPolicy, memory bool) {
	t.Helper()
	s, err := js.Stream(t.Context(), broker.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if r := s.CachedInfo().Config.Retention; r != retention {
		t.Fatalf("stream retention %v, want %v", r, retention)
	}
	c, err := js.Consumer(t.Context(), broker.Stream, broker.RecorderDurable)
	if err != nil {
		t.Fatal(err)
	}
	if m := c.CachedInfo().Config.MemoryStorage; m != memory {
		t.Fatalf("recorder's consumer state in memory: %v, want %v", m, memory)
	}
}
