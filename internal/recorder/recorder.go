// Package recorder is the durable consumer of the FSO stream: it appends
// every record to the audit log, fsyncs, and only then acknowledges. It
// writes each agent's records in seq order, drops what it already wrote (so
// redelivery cannot duplicate a line), turns anything it cannot decode into
// a rejected record, and publishes per agent the highest contiguous seq it
// has made durable (the watermark agents trim their spools at).
package recorder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fso-project/fso/internal/auditlog"
	"github.com/fso-project/fso/internal/broker"
	"github.com/fso-project/fso/internal/event"
)

// Config configures a recorder.
type Config struct {
	AuditDir string // required
	// MaxBatch bounds the records of one append+fsync; default 2000.
	MaxBatch int
	// MaxPending bounds, per agent, records held while waiting for a
	// missing predecessor; past it they are left to redelivery. Default
	// 20000, well under the consumer's MaxAckPending (50000), so one agent's
	// hole cannot stop delivery for the others.
	MaxPending int
	// WatermarkInterval is the least time between two watermark updates of
	// one agent; default 200ms. Each is a message stored by the broker and
	// delivered to the agent; it only trims the agent's spool.
	WatermarkInterval time.Duration
	Audit             auditlog.Options
	Checkpoints       CheckpointConfig // signed checkpoints (checkpoint.go)
}

func (c *Config) setDefaults() {
	if c.MaxBatch == 0 {
		c.MaxBatch = 2000
	}
	if c.MaxPending == 0 {
		c.MaxPending = 20000
	}
	if c.WatermarkInterval == 0 {
		c.WatermarkInterval = 200 * time.Millisecond
	}
	c.Checkpoints.setDefaults()
}

// Recorder consumes the FSO stream into an audit log.
type Recorder struct {
	cfg    Config
	js     jetstream.JetStream
	logger *slog.Logger

	log    *auditlog.Writer
	agents map[string]*agentSeq
	ackq   []ackable // written and fsynced, ack not sent yet (loop goroutine)
	// wroteAcks: acks joined ackq since the last ack round (loop goroutine).
	wroteAcks bool
	// configs are the revisions of the config records in the log: they
	// have no agent seq, so the revision is their identity.
	configs map[uint64]bool
	// rejectedLines are the bad lines of bundles already written as
	// rejected records (loop goroutine).
	rejectedLines lineSet

	wmMu    sync.Mutex
	wmDirty map[string]uint64
	wmWake  chan struct{}

	statsMu  sync.Mutex
	written  int64
	rejected int64
	syncs    int64 // of the audit log
	// statusPut is the status last put (status.go).
	statusPut Status

	cp checkpointer
}

// New checks cfg and returns a recorder reading through js.
func New(cfg Config, js jetstream.JetStream, logger *slog.Logger) (*Recorder, error) {
	cfg.setDefaults()
	if cfg.AuditDir == "" {
		return nil, errors.New("recorder: --audit-dir is required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Recorder{cfg: cfg, js: js, logger: logger, agents: map[string]*agentSeq{},
		wmDirty: map[string]uint64{}, wmWake: make(chan struct{}, 1)}, nil
}

// Run records until ctx ends. What it has acknowledged is in the audit log
// and fsynced; what it has not is redelivered to the next run.
func (r *Recorder) Run(ctx context.Context) error {
	opts := r.cfg.Audit
	if opts.Logger == nil {
		opts.Logger = r.logger
	}
	w, err := auditlog.Open(r.cfg.AuditDir, opts)
	if err != nil {
		return fmt.Errorf("recorder: %w", err)
	}
	r.log = w
	defer w.Close()
	if err := r.load(ctx); err != nil {
		return err
	}
	kv, err := r.js.KeyValue(ctx, broker.AgentsBucket)
	if err != nil {
		return fmt.Errorf("recorder: open bucket %s: %w", broker.AgentsBucket, err)
	}
	for a, s := range r.agents {
		r.wmDirty[a] = s.wm
	}
	msgs := make(chan jetstream.Msg, 4096)
	var wg sync.WaitGroup
	wmCtx, wmCancel := context.WithCancel(context.WithoutCancel(ctx))
	wg.Go(func() { r.publishWatermarks(wmCtx, kv) })
	wg.Go(func() { r.publishCheckpoints(wmCtx, kv) })
	wg.Go(func() { r.consume(ctx, msgs) })
	err = r.loop(ctx, msgs)
	r.checkpoint("stop")
	wmCancel()
	wg.Wait()
	return err
}

// load rebuilds each agent's position from the audit log.
func (r *Recorder) load(ctx context.Context) error {
	n := 0
	err := auditlog.Scan(ctx, r.cfg.AuditDir, func(rec auditlog.Record) error {
		r.cp.lines++
		if rec.Kind == event.KindConfig {
			rev, err := configRevision(rec.Raw)
			if err != nil {
				return fmt.Errorf("%s line %d: %w", rec.Segment, rec.Line, err)
			}
			if r.configs == nil {
				r.configs = map[uint64]bool{}
			}
			r.configs[rev] = true
			return nil
		}
		if rec.Agent == "" || rec.Seq == 0 {
			return nil
		}
		n++
		er := event.Record{Kind: rec.Kind, Agent: rec.Agent, Seq: rec.Seq}
		if rec.Kind == event.KindGap {
			g, err := gapOf(rec.Raw)
			if err != nil {
				return fmt.Errorf("%s line %d: %w", rec.Segment, rec.Line, err)
			}
			er.Gap = g
		}
		r.agent(rec.Agent).wrote(er)
		return nil
	})
	if err != nil {
		return fmt.Errorf("recorder: read audit log: %w", err)
	}
	r.logger.Info("audit log loaded", "dir", r.cfg.AuditDir, "agent_records", n, "agents", len(r.agents))
	return nil
}

func (r *Recorder) agent(id string) *agentSeq {
	s, ok := r.agents[id]
	if !ok {
		s = newAgentSeq()
		r.agents[id] = s
	}
	return s
}

// consume feeds msgs from the durable consumer until ctx ends, starting
// again after errors (a deleted consumer is re-created).
func (r *Recorder) consume(ctx context.Context, msgs chan<- jetstream.Msg) {
	for ctx.Err() == nil {
		err := r.consumeOnce(ctx, msgs)
		if ctx.Err() != nil {
			return
		}
		r.logger.Warn("consumer interrupted, resuming", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (r *Recorder) consumeOnce(ctx context.Context, msgs chan<- jetstream.Msg) error {
	cons, err := r.js.Consumer(ctx, broker.Stream, broker.RecorderDurable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		// A broker restart loses a work queue's consumer (its state is in
		// memory); the broker's own setup makes it again at its start.
		// Try here too, for a broker that does not, but not for long: a
		// recorder without the right to update the stream (--auth) waits
		// for the broker's instead.
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = broker.Setup(sctx, r.js, broker.SetupOptions{Logger: r.logger})
		cancel()
		if err == nil {
			cons, err = r.js.Consumer(ctx, broker.Stream, broker.RecorderDurable)
		}
	}
	if err != nil {
		return err
	}
	// A pull request that reaches the broker before its consumer is made
	// again gets "no responders", which the client takes for transient:
	// only missing heartbeats (two, at half the expiry) end the iterator.
	// A 5 s expiry bounds that pause after a broker restart.
	it, err := cons.Messages(jetstream.PullMaxMessages(2048), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return err
		}
		select {
		case msgs <- m:
		case <-ctx.Done():
			it.Stop()
			return nil
		}
	}
}

// loop writes batches: take what is ready, append, fsync, then ack.
func (r *Recorder) loop(ctx context.Context, msgs <-chan jetstream.Msg) error {
	backoff := 100 * time.Millisecond
	ackTick := time.NewTicker(ackDelay)
	defer ackTick.Stop()
	defer r.flushAcks(false)
	for {
		var batch []jetstream.Msg
		select {
		case <-ctx.Done():
			return nil
		case <-ackTick.C:
			r.flushAcks(r.wroteAcks)
			r.wroteAcks = false
			continue
		case m := <-msgs:
			batch = append(batch, m)
		case <-r.checkpointDue():
			r.checkpoint("interval")
			continue
		}
		// MaxBatch bounds records, not messages: a bundle holds many.
		n := records(batch[0])
	more:
		for n < r.cfg.MaxBatch {
			select {
			case m := <-msgs:
				batch = append(batch, m)
				n += records(m)
			default:
				break more
			}
		}
		if err := r.write(batch); err != nil {
			r.logger.Error("audit log write failed; nothing acknowledged, will retry", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
	}
}

// records is how many records m carries: the lines of a bundle, else one.
func records(m jetstream.Msg) int {
	if event.IsBundle(m.Subject()) {
		return 1 + bytes.Count(m.Data(), []byte{'\n'})
	}
	return 1
}

// bundleRef acks a bundle's message once every line of it is acked: a
// line held for a missing predecessor keeps the whole message in the
// stream (redelivered if the recorder dies) until that line is written.
type bundleRef struct {
	m     ackable
	left  int
	naked bool
}

func (b *bundleRef) Ack() error {
	b.left--
	if b.left == 0 {
		return b.m.Ack()
	}
	return nil
}

func (b *bundleRef) Nak() error {
	if b.naked {
		return nil
	}
	b.naked = true
	return b.m.Nak()
}

// lineKey is a line of a bundle: the stream seq of its message, its index.
type lineKey struct {
	streamSeq uint64
	line      int
}

// lineSet remembers the last lineSetSize keys added. A bundle stays in
// the stream while one of its lines waits for a missing seq, so it is
// delivered again every AckWait; its bad lines, written as rejected
// records at the first delivery, must not be written again.
type lineSet struct {
	seen  map[lineKey]struct{}
	order []lineKey
}

const lineSetSize = 10_000

func (s *lineSet) has(k lineKey) bool {
	_, ok := s.seen[k]
	return ok
}

func (s *lineSet) add(k lineKey) {
	if s.seen == nil {
		s.seen = map[lineKey]struct{}{}
	}
	if _, ok := s.seen[k]; ok {
		return
	}
	if len(s.order) >= lineSetSize {
		delete(s.seen, s.order[0])
		s.order = s.order[1:]
	}
	s.seen[k] = struct{}{}
	s.order = append(s.order, k)
}

// ackDelay is how long acks of written records may wait to be sent
// together. The records are already fsynced, so a lost ack only means a
// redelivery, which is dropped; grouping spares the broker an ack per
// record and emptying and re-creating its stream block (a file) after every
// group (the stream deletes what its consumer acked). At 50ms that churn
// was a sixth of the pipeline's CPU at 1,000 changes/s.
const ackDelay = 250 * time.Millisecond

// flushAcks sends the acks waiting. With keepNewest, while records keep
// coming, the newest ack waits for the next round: the stream then never
// runs empty, which would make the broker delete its last block file and
// create a new one (with a tombstone) at every round. On a filesystem that
// avoids reusing recently deleted inodes (ext4 without a journal) creating
// a file grows costly under such churn.
func (r *Recorder) flushAcks(keepNewest bool) {
	n := len(r.ackq)
	if keepNewest && n > 0 {
		n--
	}
	for _, m := range r.ackq[:n] {
		m.Ack()
	}
	r.ackq = append(r.ackq[:0], r.ackq[n:]...)
}

// write appends what of batch can be written in order, fsyncs, and acks.
// On failure nothing is acknowledged and the in-memory state is as before.
func (r *Recorder) write(batch []jetstream.Msg) error {
	now := time.Now()
	undo := map[string]seqState{}
	var acks []ackable
	var lines [][]byte
	touched := map[string]bool{}
	configsAdded := map[uint64]bool{}
	var objects []*event.Diff
	var rejected int64
	rejectedNow := map[lineKey]bool{} // bundle lines rejected in this batch
	reject := func(subject string, data []byte, err error, streamSeq uint64, a ackable) {
		rj := event.NewRejected(subject, data, err, streamSeq)
		line, _ := rj.Marshal()
		lines = append(lines, line)
		acks = append(acks, a)
		rejected++
		// An alert: a client sent what no FSO agent sends (a forged
		// agent name, a malformed or oversized record).
		r.logger.Error("alert: message rejected", "subject", subject, "size", len(data), "err", err)
	}
	handle := func(rec event.Record, a ackable) {
		if rec.Kind == event.KindConfig {
			if !r.configSeen(rec, configsAdded) {
				lines = append(lines, rec.JSON)
			}
			acks = append(acks, a)
			return
		}
		s := r.agent(rec.Agent)
		if _, ok := undo[rec.Agent]; !ok {
			undo[rec.Agent] = s.snapshot()
		}
		if s.has(rec.Seq) {
			acks = append(acks, a) // already in the log: a redelivery or retransmit
			// The agent may be resending because it missed the watermark.
			touched[rec.Agent] = true
			return
		}
		if old, ok := s.pending[rec.Seq]; ok && old.msg != nil {
			old.msg = a // the newest delivery is the one to ack
			return
		}
		if len(s.pending) >= r.cfg.MaxPending {
			return // left unacknowledged: redelivered later
		}
		s.hold(&item{rec: rec, msg: a})
		for {
			it, ok := s.next()
			if !ok {
				break
			}
			lines = append(lines, it.rec.JSON)
			acks = append(acks, it.msg)
			s.wrote(it.rec)
			touched[rec.Agent] = true
			if it.rec.Diff != nil && it.rec.Diff.Object != "" {
				objects = append(objects, it.rec.Diff)
			}
		}
	}
	for _, m := range batch {
		var streamSeq uint64
		if md, err := m.Metadata(); err == nil {
			streamSeq = md.Sequence.Stream
		}
		if event.IsBundle(m.Subject()) {
			bl := event.DecodeBundle(m.Subject(), m.Data())
			ref := &bundleRef{m: m, left: len(bl)}
			for i, l := range bl {
				k := lineKey{streamSeq, i}
				switch {
				case l.Err != nil && streamSeq != 0 && (r.rejectedLines.has(k) || rejectedNow[k]):
					acks = append(acks, ref) // rejected at an earlier delivery
				case l.Err != nil:
					reject(m.Subject(), l.Data, l.Err, streamSeq, ref)
					if streamSeq != 0 {
						rejectedNow[k] = true
					}
				default:
					handle(l.Record, ref)
				}
			}
			continue
		}
		rec, err := event.Decode(m.Subject(), m.Data())
		if err != nil {
			reject(m.Subject(), m.Data(), err, streamSeq, m)
			continue
		}
		handle(rec, m)
	}
	if len(lines) > 0 {
		// Large diffs are on disk (objects.go) before their lines are.
		err := r.storeObjects(objects)
		if err == nil {
			err = r.log.Append(lines...)
		}
		if err == nil {
			err = r.log.Sync()
		}
		if err != nil {
			for a, st := range undo {
				r.agents[a].restore(st)
			}
			for rev := range configsAdded {
				delete(r.configs, rev)
			}
			for _, m := range acks {
				m.Nak()
			}
			return err
		}
	}
	for k := range rejectedNow {
		r.rejectedLines.add(k)
	}
	r.ackq = append(r.ackq, acks...)
	r.wroteAcks = r.wroteAcks || len(acks) > 0
	if len(r.ackq) >= 1024 {
		r.flushAcks(true)
	}
	r.dropObjects(objects)
	r.statsMu.Lock()
	r.written += int64(len(lines))
	r.rejected += rejected
	if len(lines) > 0 {
		r.syncs++
	}
	r.statsMu.Unlock()
	r.wroteLines(len(lines))
	if len(touched) > 0 || rejected > 0 { // the watermark publisher also puts the status
		r.wmMu.Lock()
		for a := range touched {
			r.wmDirty[a] = r.agents[a].wm
		}
		r.wmMu.Unlock()
		select {
		case r.wmWake <- struct{}{}:
		default:
		}
	}
	if d := time.Since(now); d > time.Second {
		r.logger.Warn("slow audit write", "records", len(lines), "took", d)
	}
	return nil
}

// publishWatermarks puts, at most every WatermarkInterval, each changed
// agent's watermark into the fso-agents bucket. Only fsynced positions get
// here, so an agent never trims what is not durable.
func (r *Recorder) publishWatermarks(ctx context.Context, kv jetstream.KeyValue) {
	for {
		r.flushWatermarks(ctx, kv, false)
		select {
		case <-ctx.Done():
			// A last put, so a stopping agent sees its final records durable.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			r.flushWatermarks(fctx, kv, true)
			cancel()
			return
		case <-r.wmWake:
		case <-time.After(time.Second):
			// Retry puts that failed; nothing else wakes us if all is quiet.
		}
		select {
		case <-ctx.Done():
		case <-time.After(r.cfg.WatermarkInterval):
		}
	}
}

func (r *Recorder) flushWatermarks(ctx context.Context, kv jetstream.KeyValue, final bool) {
	r.wmMu.Lock()
	dirty := r.wmDirty
	r.wmDirty = map[string]uint64{}
	r.wmMu.Unlock()
	r.flushStatus(ctx, kv, final)
	for a, wm := range dirty {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := kv.Put(pctx, "recorded."+a, []byte(strconv.FormatUint(wm, 10)))
		cancel()
		if err != nil {
			r.wmMu.Lock()
			if _, newer := r.wmDirty[a]; !newer {
				r.wmDirty[a] = wm
			}
			r.wmMu.Unlock()
			if ctx.Err() == nil { // else stopping: the final put follows
				r.logger.Warn("publish watermark", "agent", a, "err", err)
			}
		}
	}
}
