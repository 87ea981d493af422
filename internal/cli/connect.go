package cli

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fso-project/fso/internal/broker"
)

const defaultServer = "nats://127.0.0.1:4222"

// connect dials the broker (comma-separated URLs), retrying until ctx ends,
// and sets up FSO's stream and buckets.
func connect(ctx context.Context, servers, name string, logger *slog.Logger, jsOpts ...jetstream.JetStreamOpt) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := dial(servers, name, logger)
	if err != nil {
		return nil, nil, err
	}
	return setup(ctx, nc, logger, jsOpts...)
}

// connectLater returns at once with a client that connects, and
// reconnects, in the background: an agent watches and spools while the
// broker is away.
func connectLater(servers, name string, logger *slog.Logger, jsOpts ...jetstream.JetStreamOpt) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := dial(servers, name, logger)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc, jsOpts...)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

func dial(servers, name string, logger *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	nc, err := nats.Connect(servers, append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(64 << 20),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("disconnected from broker", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { logger.Info("reconnected to broker", "url", nc.ConnectedUrlRedacted()) }),
	}, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connect %s (--server): %w", servers, err)
	}
	return nc, nil
}

func setup(ctx context.Context, nc *nats.Conn, logger *slog.Logger, jsOpts ...jetstream.JetStreamOpt) (*nats.Conn, jetstream.JetStream, error) {
	return setupWith(ctx, nc, logger, broker.SetupOptions{}, jsOpts...)
}

// setupWith is setup with explicit stream options (fso broker's flags);
// clients pass none, which keeps what the stream has.
func setupWith(ctx context.Context, nc *nats.Conn, logger *slog.Logger, so broker.SetupOptions, jsOpts ...jetstream.JetStreamOpt) (*nats.Conn, jetstream.JetStream, error) {
	js, err := jetstream.New(nc, jsOpts...)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	// Wait for the first connection without giving up: a broker that
	// starts later is fine, Ctrl-C ends the wait.
	for !nc.IsConnected() {
		select {
		case <-ctx.Done():
			nc.Close()
			return nil, nil, fmt.Errorf("connect %s: %w", strings.Join(nc.Servers(), ","), ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if so.Logger == nil {
		so.Logger = logger
	}
	if err := broker.Setup(ctx, js, so); err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}
