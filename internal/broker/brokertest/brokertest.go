// Package brokertest starts a real embedded broker for tests, on a random
// loopback port, ready when Start returns and stopped by t.Cleanup.
package brokertest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fso-project/fso/internal/broker"
)

// Broker is a test broker with FSO's stream and buckets set up.
type Broker struct {
	*broker.Broker
	URL string
}

// Start starts a broker with its store in t.TempDir().
func Start(t testing.TB) *Broker {
	t.Helper()
	return StartIn(t, t.TempDir())
}

// StartIn starts a broker storing in dir, so a test can restart it on the
// same data.
func StartIn(t testing.TB, dir string) *Broker {
	t.Helper()
	b, err := broker.Start(broker.Config{DataDir: dir, Listen: "127.0.0.1:0"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(b.Shutdown)
	tb := &Broker{Broker: b, URL: b.ClientURL()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := tb.JetStream(t)
	if err := broker.Setup(ctx, js, broker.SetupOptions{}); err != nil {
		t.Fatalf("set up broker: %v", err)
	}
	return tb
}

// JetStream returns an in-process JetStream client, closed by t.Cleanup.
func (b *Broker) JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	nc := b.Conn(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return js
}

// Conn returns an in-process connection, closed by t.Cleanup.
func (b *Broker) Conn(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := b.Connect(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
