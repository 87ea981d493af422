package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	DiffsBucket     = "fso-diffs" // object store of large diffs
)

// SetupOptions size what Setup creates.
type SetupOptions struct {
	// Replicas of the stream and buckets; 0 keeps those of an existing
	// stream, and for a new one picks 3 when the connection knows of three
	// or more servers, else 1.
	Replicas int
	// StreamMaxBytes bounds the stream. A full stream refuses new messages
	// (agents keep them in their spool) rather than dropping old ones.
	// Default 1 GiB.
	StreamMaxBytes int64
	// DuplicateWindow is how long the stream remembers message ids; 0 keeps
	// that of an existing stream, default 2m for a new one. Only the
	// broker's operator sets it (fso broker --dedupe-window); clients pass 0
	// so that connecting never resets it.
	DuplicateWindow time.Duration
	// Logger hears of a step that keeps failing (every 10s while it
	// does); nil: silent.
	Logger *slog.Logger
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
	asked := o
	// A new stream is a work queue; one made by an older FSO keeps
	// interest retention, which the broker cannot change to a work queue.
	retention := jetstream.WorkQueuePolicy
	if old := existingStream(ctx, js, o.Logger); old != nil {
		retention = old.Retention
		if o.Replicas <= 0 {
			o.Replicas = old.Replicas
		}
		if o.DuplicateWindow == 0 {
			o.DuplicateWindow = old.Duplicates
		}
	}
	if o.Replicas <= 0 {
		o.Replicas = Replicas(js.Conn(), 0)
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
		Subjects:    []string{event.AllEvents, event.AllDiffs, event.ConfigSubject},
		Storage:     jetstream.FileStorage,
		// Both retentions remove a message once the recorder acked it;
		// DiscardNew makes a full stream refuse, never drop unrecorded events.
		Retention:   retention,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    o.StreamMaxBytes,
		Duplicates:  o.DuplicateWindow,
		Replicas:    o.Replicas,
		DenyDelete:  true,
		DenyPurge:   true,
		AllowDirect: true,
	}
	if err := retry(ctx, o.Logger, "stream "+Stream, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateStream(ctx, sc)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Another component created it meanwhile, with other settings:
			// update it next time, keeping its settings where asked leaves them open.
			if s, ierr := js.Stream(ctx, Stream); ierr == nil {
				c := s.CachedInfo().Config
				sc.Retention = c.Retention
				if asked.Replicas <= 0 {
					sc.Replicas = c.Replicas
				}
				if asked.DuplicateWindow == 0 {
					sc.Duplicates = c.Duplicates
				}
			}
			return fmt.Errorf("created meanwhile: %v", err)
		}
		if err != nil {
			// The broker cannot change a stream's retention to or from a
			// work queue: keep the stream's own.
			if s, ierr := js.Stream(ctx, Stream); ierr == nil && s.CachedInfo().Config.Retention != sc.Retention {
				sc.Retention = s.CachedInfo().Config.Retention
				return fmt.Errorf("keeping the stream's retention: %v", err)
			}
		}
		return err
	}); err != nil {
		return fmt.Errorf("broker: set up stream %s: %w", Stream, err)
	}
	cc := jetstream.ConsumerConfig{
		Durable:       RecorderDurable,
		Description:   "fso recorder: appends to the audit log, acks after fsync",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		// What a killed recorder had received but not acked is redelivered
		// after AckWait; until then the next recorder holds that agent's
		// later records back (seq order). Redelivery of what is being
		// written is harmless: the recorder drops seqs it has.
		AckWait:       10 * time.Second,
		MaxDeliver:    -1,
		MaxAckPending: 50000,
		Replicas:      o.Replicas,
		// The consumer's state (what is delivered, what acked) is kept in
		// the broker's memory, not rewritten to a file ten times a second:
		// in a work queue the stream itself keeps every message not acked,
		// so a consumer lost with a broker restart is re-created (by the
		// recorder or the next component to connect) and delivers them
		// all again; the recorder drops what it has. With interest
		// retention a stream without its consumer would drop new messages,
		// so there the state stays on disk.
		MemoryStorage: sc.Retention == jetstream.WorkQueuePolicy,
	}
	if err := retry(ctx, o.Logger, "consumer "+RecorderDurable, func(ctx context.Context) error {
		// Nor can it change where a consumer keeps its state.
		if c, err := js.Consumer(ctx, Stream, RecorderDurable); err == nil {
			cc.MemoryStorage = c.CachedInfo().Config.MemoryStorage
		}
		_, err := js.CreateOrUpdateConsumer(ctx, Stream, cc)
		return err
	}); err != nil {
		return fmt.Errorf("broker: set up consumer %s: %w", RecorderDurable, err)
	}
	for _, kv := range []jetstream.KeyValueConfig{
		{Bucket: ConfigBucket, Description: "desired agent configuration, written by the controller", History: 64, Storage: jetstream.FileStorage, Replicas: o.Replicas},
		{Bucket: AgentsBucket, Description: "agent status and recorder watermarks", History: 1, Storage: jetstream.FileStorage, Replicas: o.Replicas},
	} {
		if err := retry(ctx, o.Logger, "bucket "+kv.Bucket, func(ctx context.Context) error {
			_, err := js.CreateOrUpdateKeyValue(ctx, kv)
			return err
		}); err != nil {
			return fmt.Errorf("broker: set up bucket %s: %w", kv.Bucket, err)
		}
	}
	// Diffs larger than a message: the agent puts them here, the recorder
	// copies them next to the audit log and deletes them.
	if err := retry(ctx, o.Logger, "object store "+DiffsBucket, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: DiffsBucket,
			Description: "diffs too large for one message, until the recorder has them", Storage: jetstream.FileStorage, Replicas: o.Replicas})
		return err
	}); err != nil {
		return fmt.Errorf("broker: set up object store %s: %w", DiffsBucket, err)
	}
	return nil
}

// existingStream returns the configuration of the FSO stream, or nil if
// there is none yet (or the broker does not answer until ctx ends).
func existingStream(ctx context.Context, js jetstream.JetStream, logger *slog.Logger) *jetstream.StreamConfig {
	var c *jetstream.StreamConfig
	_ = retry(ctx, logger, "stream "+Stream, func(ctx context.Context) error {
		s, err := js.Stream(ctx, Stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		cfg := s.CachedInfo().Config
		c = &cfg
		return nil
	})
	return c
}

// retry runs f until it succeeds or ctx ends: right after a server starts
// (or a cluster elects its meta leader) JetStream answers "not ready" for a
// moment. In a new three-node cluster the first request of each step gets
// no answer at all (each timed out, then the next attempt succeeded at
// once): a first attempt of 3s instead of 10s has such a cluster set up
// in ~15s instead of ~50s; later attempts get longer, for a slow server.
func retry(ctx context.Context, logger *slog.Logger, what string, f func(context.Context) error) error {
	var err error
	start, said := time.Now(), time.Now()
	timeout := 3 * time.Second
	for wait := 50 * time.Millisecond; ; wait, timeout = min(2*wait, 2*time.Second), min(2*timeout, 10*time.Second) {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err = f(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return err
		}
		// A request the broker refuses as such (a configuration it will
		// not take) fails the same way every time: say so at once.
		if apiErr := (*jetstream.APIError)(nil); errors.As(err, &apiErr) && apiErr.Code == 400 {
			return err
		}
		if logger != nil && time.Since(said) >= 10*time.Second {
			said = time.Now()
			logger.Warn("broker setup: still trying", "what", what, "for", time.Since(start).Round(time.Second), "err", err)
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(wait):
		}
	}
}
