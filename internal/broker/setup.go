package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fso-project/fso/internal/event"
)

// Names of what Setup creates.
const (
	Stream          = "FSO"
	RecorderDurable = "recorder"
	ConfigBucket    = "fso-config"
	AgentsBucket    = "fso-agents"
)

// SetupOptions size what Setup creates.
type SetupOptions struct {
	// Replicas of the stream and buckets; 0 picks 3 when the connection
	// knows of three or more servers, else 1.
	Replicas int
	// StreamMaxBytes bounds the stream. A full stream refuses new messages
	// (agents keep them in their spool) rather than dropping old ones.
	// Default 1 GiB.
	StreamMaxBytes int64
	// DuplicateWindow is how long the stream remembers message ids; default 2m.
	DuplicateWindow time.Duration
}

// Replicas is the replica count Setup would choose for nc.
func Replicas(nc *nats.Conn, want int) int {
	if want > 0 {
		return want
	}
	if len(nc.Servers()) >= 3 {
		return 3
	}
	return 1
}

// Setup creates or updates the FSO stream, the recorder's durable consumer
// and the KV buckets. It is idempotent and safe to run from every component
// on every connect.
func Setup(ctx context.Context, js jetstream.JetStream, o SetupOptions) error {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.StreamMaxBytes == 0 {
		o.StreamMaxBytes = 1 << 30
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = 2 * time.Minute
	}
	sc := jetstream.StreamConfig{
		Name:        Stream,
		Description: "FSO events and diffs, kept until the recorder has written them",
		Subjects:    []string{event.AllEvents, event.AllDiffs},
		Storage:     jetstream.FileStorage,
		// Interest retention removes a message once the recorder acked it;
		// DiscardNew makes a full stream refuse, never drop unrecorded events.
		Retention:   jetstream.InterestPolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    o.StreamMaxBytes,
		Duplicates:  o.DuplicateWindow,
		Replicas:    o.Replicas,
		DenyDelete:  true,
		DenyPurge:   true,
		AllowDirect: true,
	}
	if err := retry(ctx, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateStream(ctx, sc)
		return err
	}); err != nil {
		return fmt.Errorf("broker: set up stream %s: %w", Stream, err)
	}
	cc := jetstream.ConsumerConfig{
		Durable:       RecorderDurable,
		Description:   "fso recorder: appends to the audit log, acks after fsync",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    -1,
		MaxAckPending: 50000,
		Replicas:      o.Replicas,
	}
	if err := retry(ctx, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateConsumer(ctx, Stream, cc)
		return err
	}); err != nil {
		return fmt.Errorf("broker: set up consumer %s: %w", RecorderDurable, err)
	}
	for _, kv := range []jetstream.KeyValueConfig{
		{Bucket: ConfigBucket, Description: "desired agent configuration, written by the controller", History: 64, Storage: jetstream.FileStorage, Replicas: o.Replicas},
		{Bucket: AgentsBucket, Description: "agent status and recorder watermarks", History: 1, Storage: jetstream.FileStorage, Replicas: o.Replicas},
	} {
		if err := retry(ctx, func(ctx context.Context) error {
			_, err := js.CreateOrUpdateKeyValue(ctx, kv)
			return err
		}); err != nil {
			return fmt.Errorf("broker: set up bucket %s: %w", kv.Bucket, err)
		}
	}
	return nil
}

// retry runs f until it succeeds or ctx ends: right after a server starts
// (or a cluster elects its meta leader) JetStream answers "not ready" for a
// moment.
func retry(ctx context.Context, f func(context.Context) error) error {
	var err error
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = f(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(wait):
		}
	}
}
