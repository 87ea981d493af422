package recorder

import (
	"context"
	"crypto/ed25519"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fso-project/fso/internal/auditlog"
)

// CheckpointConfig configures the signed checkpoints a recorder appends to
// the audit log and publishes to the fso-agents bucket (key
// checkpoint.<Name>): `fso audit verify --pubkey K --server URL` checks
// their signatures and detects a log whose tail was cut off.
type CheckpointConfig struct {
	// Key signs the checkpoints; nil: no checkpoints.
	Key ed25519.PrivateKey
	// Name is this recorder's name in the checkpoints and the bucket key;
	// default "recorder".
	Name string
	// Every: a checkpoint after this many records; default 10000.
	Every int64
	// Interval: a checkpoint at least this often while records arrive;
	// default 1m. A clean stop always writes one.
	Interval time.Duration
}

func (c *CheckpointConfig) setDefaults() {
	if c.Name == "" {
		c.Name = "recorder"
	}
	if c.Every == 0 {
		c.Every = 10000
	}
	if c.Interval == 0 {
		c.Interval = time.Minute
	}
}

// CheckpointKey is the fso-agents bucket key of a recorder's latest checkpoint.
func CheckpointKey(name string) string { return "checkpoint." + name }

// checkpointer is the recorder's checkpoint state; only the write loop
// touches it, except the published value under mu.
type checkpointer struct {
	lines int64 // lines in the audit log
	since int64 // lines since the last checkpoint
	tick  *time.Ticker

	once    sync.Once
	mu      sync.Mutex
	pending []byte // to publish
	wake    chan struct{}
}

func (r *Recorder) checkpointInit() {
	r.cp.once.Do(func() {
		r.cp.wake = make(chan struct{}, 1)
		if r.cfg.Checkpoints.Key != nil {
			r.cp.tick = time.NewTicker(r.cfg.Checkpoints.Interval)
		}
	})
}

// checkpointDue fires when a checkpoint may be due by time; nil without a key.
func (r *Recorder) checkpointDue() <-chan time.Time {
	r.checkpointInit()
	if r.cp.tick == nil {
		return nil
	}
	return r.cp.tick.C
}

// wroteLines counts lines just made durable and checkpoints every Every.
func (r *Recorder) wroteLines(n int) {
	r.cp.lines += int64(n)
	r.cp.since += int64(n)
	if r.cp.since >= r.cfg.Checkpoints.Every {
		r.checkpoint("records")
	}
}

// checkpoint appends a signed checkpoint of the log as it is, if anything
// was written since the last one, and hands it to the publisher. A failure
// is logged; the next checkpoint covers the same lines.
func (r *Recorder) checkpoint(why string) {
	key := r.cfg.Checkpoints.Key
	if key == nil || r.cp.since == 0 {
		return
	}
	r.checkpointInit()
	seg, line, head := r.log.Head()
	c := auditlog.Checkpoint{Recorder: r.cfg.Checkpoints.Name, Segment: seg, Line: line,
		Records: r.cp.lines, Head: head, At: time.Now().UTC()}
	c.Sign(key)
	b, err := c.Marshal()
	if err == nil {
		if err = r.log.Append(b); err == nil {
			err = r.log.Sync()
		}
	}
	if err != nil {
		r.logger.Warn("checkpoint not written", "err", err)
		return
	}
	r.cp.lines++
	r.cp.since = 0
	r.logger.Debug("checkpoint written", "why", why, "records", c.Records, "segment", seg, "line", line)
	r.cp.mu.Lock()
	r.cp.pending = b
	r.cp.mu.Unlock()
	select {
	case r.cp.wake <- struct{}{}:
	default:
	}
}

// publishCheckpoints puts each new checkpoint into the fso-agents bucket,
// until ctx ends (then once more, with a deadline).
func (r *Recorder) publishCheckpoints(ctx context.Context, kv jetstream.KeyValue) {
	if r.cfg.Checkpoints.Key == nil {
		return
	}
	r.checkpointInit()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			r.flushCheckpoint(fctx, kv)
			cancel()
			return
		case <-r.cp.wake:
			r.flushCheckpoint(ctx, kv)
		case <-time.After(5 * time.Second): // retry a failed put
			r.flushCheckpoint(ctx, kv)
		}
	}
}

func (r *Recorder) flushCheckpoint(ctx context.Context, kv jetstream.KeyValue) {
	r.cp.mu.Lock()
	b := r.cp.pending
	r.cp.pending = nil
	r.cp.mu.Unlock()
	if b == nil {
		return
	}
	// Not cut short by a stop: the checkpoint written at a clean stop is
	// the one that proves the log's end.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := kv.Put(pctx, CheckpointKey(r.cfg.Checkpoints.Name), b); err != nil {
		r.logger.Warn("publish checkpoint", "err", err)
		r.cp.mu.Lock()
		if r.cp.pending == nil {
			r.cp.pending = b
		}
		r.cp.mu.Unlock()
	}
}
