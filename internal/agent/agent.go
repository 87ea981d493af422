// Package agent watches directories and publishes every change to the
// broker without losing any: watch (or scan) → filter → enrich → sequence →
// spool (fsynced) → publish. A record leaves the spool only when the
// recorder's watermark says it is in the audit log.
package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/fso-project/fso/internal/baseline"
	"github.com/fso-project/fso/internal/broker"
	"github.com/fso-project/fso/internal/event"
	"github.com/fso-project/fso/internal/spool"
	"github.com/fso-project/fso/internal/watch"
)

// Config is what one agent watches and how it delivers.
type Config struct {
	ID       string            // agent id, [a-z0-9-]; required
	Host     string            // host name reported in events; default os.Hostname
	Labels   map[string]string // announced in the status
	StateDir string            // spool and sequence; required
	Roots    []Root
	// HashLimit is the largest file whose sha256 is taken; default 64 MiB.
	HashLimit int64
	// Debounce is how long a written file may stay open before its change
	// is reported anyway; default 50ms. Closing the file reports it at once.
	Debounce time.Duration
	// CommitDelay is how long changes may wait for others to share their
	// spool fsync and publish when changes are arriving steadily (the
	// kernel delivered the last ones less than 10 commit delays ago): the
	// watcher pauses this long between reads (watch.Options.ReadPause). An
	// isolated change never waits. Default 6ms, at most MaxCommitDelay;
	// negative: never wait.
	CommitDelay time.Duration
	// SpoolSyncAfter is how long a batch of events may wait in the spool
	// unsynced for the recorder to make it durable in the audit log first
	// (syncmark.go); past it the spool is fsynced. Gap, overflow and diff
	// records are always fsynced before they are published. A machine
	// crash may then lose up to this much (plus a second) of records the
	// recorder did not have yet, which a gap record declares after the
	// restart. Default 500ms, at most MaxSpoolSyncAfter; negative: fsync
	// every batch before publishing it.
	SpoolSyncAfter time.Duration
	// PublishWindow bounds records awaiting the broker's ack; default 4096.
	PublishWindow int
	// Bundle is the most events published in one broker message when
	// several are ready together (event.BundleSubject); default 64; 1 sends
	// every event on its own. The broker's cost is per message.
	Bundle int
	// RetransmitAfter: when the recorder's watermark has not moved for this
	// long although the broker acked later records, the agent sends the
	// records after the watermark again (the broker may have lost them).
	// Default 10s.
	RetransmitAfter time.Duration
	// DrainTimeout bounds how long a stopping agent waits for what it
	// observed to be recorded; what is not stays in the spool. Default 10s.
	DrainTimeout time.Duration
	// StatusInterval is the heartbeat period; default 5s.
	StatusInterval time.Duration
	// RateLimit caps the records per second published; the rest wait in
	// the spool. 0: no cap.
	RateLimit float64
	// MaxQueued bounds the kernel events read but not yet processed;
	// default 1,000,000 (about 150 MB at most).
	MaxQueued int
	// AllowRoots bounds what any root may be, from the flags or the
	// controller (config.go); empty allows every directory.
	AllowRoots []string
	// Important are ** globs, relative to each watched root, of the files
	// whose content changes are published as unified diffs (important.go).
	Important []string
	// NoDiff are ** globs of important files whose content never leaves
	// the host: their diff records carry only hashes and sizes. Default
	// DefaultNoDiff.
	NoDiff []string
	// DiffMax is the largest file whose content is diffed; above it only
	// hashes are sent (truncated). Default 50 MB.
	DiffMax int64
	// ScanInterval is how often directories the watch could not arm
	// (watch limit, permissions) are covered by a rescan; default 30s.
	ScanInterval time.Duration
	// BaselineInterval is how often a changed baseline is saved; default 1m.
	BaselineInterval time.Duration
	Spool            spool.Options
}

// MaxCommitDelay bounds Config.CommitDelay.
const MaxCommitDelay = 100 * time.Millisecond

// MaxSpoolSyncAfter bounds Config.SpoolSyncAfter.
const MaxSpoolSyncAfter = 10 * time.Second

func (c *Config) setDefaults() {
	if c.Host == "" {
		c.Host, _ = os.Hostname()
	}
	if c.HashLimit == 0 {
		c.HashLimit = 64 << 20
	}
	if c.Debounce == 0 {
		c.Debounce = 50 * time.Millisecond
	}
	if c.CommitDelay == 0 {
		c.CommitDelay = 6 * time.Millisecond
	}
	if c.SpoolSyncAfter == 0 {
		c.SpoolSyncAfter = 500 * time.Millisecond
	}
	if c.PublishWindow == 0 {
		c.PublishWindow = 4096
	}
	if c.Bundle == 0 {
		c.Bundle = 64
	}
	if c.RetransmitAfter == 0 {
		c.RetransmitAfter = 10 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.StatusInterval == 0 {
		c.StatusInterval = 5 * time.Second
	}
	if c.MaxQueued == 0 {
		c.MaxQueued = 1_000_000
	}
	if c.ScanInterval == 0 {
		c.ScanInterval = 30 * time.Second
	}
	if c.BaselineInterval == 0 {
		c.BaselineInterval = time.Minute
	}
}

// Validate reports the first bad field.
func (c *Config) Validate() error {
	if err := event.ValidAgentID(c.ID); err != nil {
		return fmt.Errorf("agent: --id: %w", err)
	}
	if c.StateDir == "" {
		return errors.New("agent: --state is required")
	}
	if c.CommitDelay > MaxCommitDelay {
		// The kernel's queue holds the changes meanwhile: a long pause
		// would overflow it (16,384 events by default) at modest rates.
		return fmt.Errorf("agent: --commit-delay %v: want at most %v", c.CommitDelay, MaxCommitDelay)
	}
	if c.SpoolSyncAfter > MaxSpoolSyncAfter {
		// What a machine crash may cost grows with it.
		return fmt.Errorf("agent: --spool-sync-after %v: want at most %v", c.SpoolSyncAfter, MaxSpoolSyncAfter)
	}
	if err := validateDiffConfig(c); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	for i, r := range c.Roots {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("agent: watch[%d]: %w", i, err)
		}
		if err := checkAllowed(filepath.Clean(r.Path), c.AllowRoots); err != nil {
			return fmt.Errorf("agent: --watch: %w", err)
		}
		for _, o := range c.Roots[:i] {
			if within(r.Path, o.Path) || within(o.Path, r.Path) {
				return fmt.Errorf("agent: watch[%d]: %s overlaps %s", i, r.Path, o.Path)
			}
		}
	}
	return nil
}

func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// JetStreamOptions are the options the agent's JetStream client needs: a
// bounded window of asynchronous publishes that time out.
func JetStreamOptions() []jetstream.JetStreamOpt {
	return []jetstream.JetStreamOpt{
		jetstream.WithPublishAsyncMaxPending(8192),
		jetstream.WithPublishAsyncTimeout(5 * time.Second),
	}
}

// Agent is one running agent.
type Agent struct {
	cfg    Config
	js     jetstream.JetStream
	logger *slog.Logger
	nonce  string

	mu      sync.Mutex
	roots   []*rootState
	lastErr string
	lastAt  time.Time
	status  Status

	sp        *spool.Spool
	wake      chan struct{} // new records in the spool
	resend    chan uint64   // publish again from this seq
	published atomic.Uint64 // highest seq acked by the broker, in order
	recorded  atomic.Uint64 // the recorder's watermark
	observed  atomic.Uint64 // changes reported since start
	overflows atomic.Int64
	degraded  atomic.Bool
	// gapMu guards gaps and seqFloor, and is held by record.
	gapMu    sync.Mutex
	gaps     []event.Gap // declared losses whose gap records are not spooled yet
	seqFloor uint64      // the next seq is at least this (seqs consumed by gaps)
	boot     string      // this boot's id; "" if unknown, and then every batch is fsynced
	// The unsynced marker (syncmark.go): its content when this run wrote or
	// adopted it (marked), and whether the run may remove it (markerDone:
	// there was none, or what it said is settled).
	mark       marker
	marked     bool
	markerDone bool
	live       liveConfig // the controller's configuration (config.go)
	diffs      *differ    // important files' snapshots (important.go); collect goroutine

	// Owned by the collect goroutine.
	base      *baseline.Packed
	baseDirty bool
	// scanned holds the paths recent rescans reported, so that the kernel's
	// own late event for the same file is not reported twice.
	scanned   map[string]time.Time
	rescanReq chan struct{} // a root was armed after start
	lastScan  time.Time     // guarded by mu
	startWalk *startWalk    // guarded by mu; what arming the roots at start listed (scan.go)
}

type rootState struct {
	Root
	f        *filter
	watching bool
	err      string
}

// New checks cfg and returns an agent publishing through js.
func New(cfg Config, js jetstream.JetStream, logger *slog.Logger) (*Agent, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var n [8]byte
	rand.Read(n[:])
	a := &Agent{cfg: cfg, js: js, logger: logger, nonce: hex.EncodeToString(n[:]), boot: bootID(),
		wake: make(chan struct{}, 1), resend: make(chan uint64, 1), rescanReq: make(chan struct{}, 1)}
	for _, r := range cfg.Roots {
		r.Path = filepath.Clean(r.Path)
		a.roots = append(a.roots, &rootState{Root: r, f: newFilter(r)})
	}
	return a, nil
}

// Run watches until ctx ends, then stops watching, publishes what it
// observed and waits up to DrainTimeout for it to be recorded.
func (a *Agent) Run(ctx context.Context) error {
	if err := os.MkdirAll(a.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("agent: state dir: %w", err)
	}
	// The state holds snapshots of important files: nobody else may read
	// it, also when it existed before with looser permissions.
	if fi, err := os.Stat(a.cfg.StateDir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		a.logger.Warn("state dir was readable by others; making it 0700", "dir", a.cfg.StateDir, "mode", fi.Mode().Perm())
		if err := os.Chmod(a.cfg.StateDir, 0o700); err != nil {
			return fmt.Errorf("agent: state dir: %w", err)
		}
	}
	sopts := a.cfg.Spool
	sopts.Logger = a.logger
	sp, err := spool.Open(filepath.Join(a.cfg.StateDir, "spool"), sopts)
	var ce *spool.CorruptError
	var lostFrom uint64
	if errors.As(err, &ce) && sp != nil {
		a.fail("spool damaged, quarantined", err)
		a.sp = sp
		a.gapMu.Lock()
		a.spoolDamage(ce)
		a.gapMu.Unlock()
		lostFrom = ce.LostFrom
	} else if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.sp = sp
	defer func() {
		if err := sp.Close(); err != nil {
			a.fail("close spool", err)
			a.gapMu.Lock()
			a.poisonMarker(err)
			a.gapMu.Unlock()
			return
		}
		a.clearMarker()
	}()

	// A new state dir must learn from the broker where the audit log's
	// seqs for this id end, before it numbers anything; an agent with state
	// starts watching at once and reaches the broker when it can.
	// The same holds when the spool lost its newest segment: the seqs it
	// had handed out are unknown.
	a.gapMu.Lock()
	err = a.loadGaps()
	a.gapMu.Unlock()
	if err != nil {
		return err
	}
	lostWhy := ""
	if lostFrom > 0 {
		lostWhy = "newest spool segment unreadable: " + ce.Error()
	}
	markerLost, reserved := a.checkMarker()
	if markerLost {
		lostFrom, lostWhy = a.sp.NextSeq(), "the machine went down, or an fsync failed, while the spool held records not yet fsynced (--spool-sync-after): those the recorder did not have may be lost; the start rescan reports what differs from the baseline"
		if ce != nil && ce.LostFrom > 0 {
			lostFrom = min(lostFrom, ce.LostFrom)
			lostWhy += "; newest spool segment unreadable: " + ce.Error()
		}
	}
	fresh := a.sp.NextSeq() == 1 || lostFrom > 0
	var kv jetstream.KeyValue
	if fresh {
		if kv = a.waitKV(ctx); kv == nil {
			return ctx.Err()
		}
		wm := a.learnWatermark(ctx, kv)
		if lostFrom > 0 {
			// Records from lostFrom on may be in the stream or the log
			// already: skip far past anything this agent can have used,
			// and declare what may be lost.
			a.gapMu.Lock()
			floor := max(a.sp.NextSeq(), wm+1, a.seqFloor, reserved) + 1<<16
			if err := a.addGap(max(lostFrom, wm+1), floor-1, lostWhy); err == nil && markerLost {
				a.markerDone = true // the gap, persisted, says it now
				a.mark = marker{}
			}
			a.gapMu.Unlock()
		}
	}
	if a.sp.NextSeq() > 1 {
		a.logger.Info("spool opened", "next_seq", a.sp.NextSeq(), "unrecorded", a.sp.Stats().Entries)
	}

	// The commit delay is a pause between reads: changes arriving
	// steadily gather in the kernel's queue and become one batch, one
	// spool fsync and one publish, without a thread waking for each.
	w, err := watch.New(watch.Options{Logger: a.logger, ReadPause: max(a.cfg.CommitDelay, 0)})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.mu.Lock()
	a.startWalk = newStartWalk()
	a.mu.Unlock()
	a.armRoots(w)

	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	bg, bgcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer bgcancel()
	var wg sync.WaitGroup
	var watchErr error
	wg.Go(func() { watchErr = w.Run(wctx) })
	wg.Go(func() { a.publish(bg) })
	var kvMu sync.Mutex
	wg.Go(func() {
		if kv == nil {
			k := a.waitKV(bg)
			if k == nil {
				return
			}
			a.learnWatermark(bg, k)
			kvMu.Lock()
			kv = k
			kvMu.Unlock()
		}
		wg.Go(func() { a.followConfig(wctx, kv, w) })
		a.track(bg, kv, w)
	})

	collectErr := a.collect(w)
	wcancel()
	a.drain(ctx)
	bgcancel()
	wg.Wait()
	kvMu.Lock()
	if kv != nil {
		a.putStatus(context.Background(), kv, w, false)
	}
	kvMu.Unlock()
	return errors.Join(collectErr, watchErr)
}

// waitKV opens the fso-agents bucket, retrying until the broker answers
// or ctx ends (nil then).
func (a *Agent) waitKV(ctx context.Context) jetstream.KeyValue {
	logged := false
	for {
		kv, err := a.js.KeyValue(ctx, broker.AgentsBucket)
		if err == nil {
			return kv
		}
		if !logged {
			a.logger.Warn("broker not reachable yet; changes are kept in the spool", "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// learnWatermark adopts the recorder's watermark at start and returns it
// (0 when unknown).
func (a *Agent) learnWatermark(ctx context.Context, kv jetstream.KeyValue) uint64 {
	wm, err := readWatermark(ctx, kv, a.cfg.ID)
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			a.logger.Warn("read watermark", "err", err)
		}
		return 0
	}
	a.adoptWatermark(wm)
	a.gapMu.Lock()
	a.clipGaps(wm)
	a.gapMu.Unlock()
	return wm
}

// drain waits, after the watcher stopped, until everything spooled is
// recorded or DrainTimeout passes.
func (a *Agent) drain(ctx context.Context) {
	last := a.sp.NextSeq() - 1
	deadline := time.Now().Add(a.cfg.DrainTimeout)
	for a.recorded.Load() < last && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if r := a.recorded.Load(); r < last {
		a.logger.Warn("stopping with records not yet recorded; they stay in the spool and are sent at the next start",
			"recorded", r, "last", last)
	} else {
		a.logger.Info("all observed changes recorded", "last_seq", last)
	}
}

func (a *Agent) armRoots(w *watch.Watcher) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.roots {
		if r.watching {
			continue
		}
		f := watch.Filter{Recursive: r.Recursive, SkipDir: r.f.skipDir}
		if a.startWalk != nil {
			f.Listed = a.startWalk.listed
		}
		err := w.Add(r.Path, f)
		if err != nil {
			if r.err != err.Error() {
				a.logger.Error("cannot watch root", "root", r.Path, "err", err)
			}
			r.err = err.Error()
			a.lastErr, a.lastAt = err.Error(), time.Now()
			continue
		}
		r.watching, r.err = true, ""
		if a.startWalk != nil {
			a.startWalk.roots[r.Path] = true
			// Checked now: a resync after an overflow may arm them
			// before the start rescan looks, unlisted all the same.
			a.startWalk.incomplete = a.startWalk.incomplete || w.Status().UnwatchedCount > 0
		}
		a.logger.Info("watching", "root", r.Path, "recursive", r.Recursive)
		signal(a.rescanReq)
	}
}

func (a *Agent) fail(msg string, err error) {
	a.logger.Error(msg, "err", err)
	a.mu.Lock()
	a.lastErr, a.lastAt = fmt.Sprintf("%s: %v", msg, err), time.Now()
	a.mu.Unlock()
}

// collect turns the watcher's events into spooled records until the
// watcher stops.
func (a *Agent) collect(w *watch.Watcher) error {
	q := newQueue(a.cfg.MaxQueued)
	go q.pump(w.Events())
	// On an early return, keep draining so the pump (and the watcher
	// behind it) can finish.
	defer func() {
		go func() {
			for {
				if _, done := q.take(); done {
					return
				}
				<-q.ready
			}
		}()
	}()
	// The watch is armed and being read: a change during the walk is seen
	// by one or both, never by neither.
	select {
	case <-a.rescanReq: // the initial walk covers the roots armed so far
	default:
	}
	if base, since, ok := a.loadBaseline(); ok {
		a.base = baseline.Pack(base)
		if err := a.rescan(w, since, true, "start: changes while the agent was stopped"); err != nil {
			return err
		}
	} else {
		a.base = &baseline.Packed{}
		if err := a.rescan(w, time.Time{}, false, "first start: taking the baseline"); err != nil {
			return err
		}
	}
	defer a.saveBaseline()
	co := newCoalescer(a.cfg.Debounce)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	periodic := time.NewTicker(time.Second)
	defer periodic.Stop()
	lastSave := time.Now()
	var pendingRescan time.Time
	var changes []change
	const maxBatch = 1024
	var backlog []watch.Event
	errs := w.Errors()
	// flushChanges records what is ready before anything that must see it
	// recorded first (a rescan compares with the baseline it updates).
	flushChanges := func() error {
		if len(changes) == 0 {
			return nil
		}
		err := a.record(w, changes)
		changes = changes[:0]
		return err
	}
	for {
		co.debounce = a.debounce() // the controller may change it
		var tc <-chan time.Time
		if d, ok := co.next(); ok {
			timer.Reset(time.Until(d))
			tc = timer.C
		}
		if len(backlog) == 0 {
			select {
			case <-q.ready:
				batches, done := q.take()
				if done {
					changes = co.flushAll(changes)
					return a.record(w, changes)
				}
				for _, b := range batches {
					backlog = append(backlog, b...)
				}
			case <-tc:
				// Only once everything the kernel delivered so far is
				// folded in: the close that ends a write may be queued.
				if q.depth() > 0 {
					continue
				}
				changes = co.due(time.Now(), changes)
			case <-a.rescanReq:
				if err := flushChanges(); err != nil {
					return err
				}
				if err := a.rescan(w, time.Now(), true, "root armed"); err != nil {
					return err
				}
				continue
			case now := <-periodic.C:
				a.gapMu.Lock()
				gap := len(a.gaps) > 0
				a.gapMu.Unlock()
				if gap || len(changes) > 0 { // a gap record waits for room in the spool
					if err := flushChanges(); err != nil {
						return err
					}
					if err := a.record(w, nil); err != nil {
						return err
					}
				}
				a.mu.Lock()
				last := a.lastScan
				a.mu.Unlock()
				if w.Status().UnwatchedCount > 0 && now.Sub(last) >= a.cfg.ScanInterval {
					if err := a.rescan(w, last, true, "directories not watched"); err != nil {
						return err
					}
				} else if now.Sub(lastSave) >= a.cfg.BaselineInterval {
					lastSave = now
					a.saveBaseline()
				}
				a.gapMu.Lock()
				a.syncDue(now)
				a.gapMu.Unlock()
				continue
			case err, ok := <-errs:
				if !ok {
					errs = nil
					continue
				}
				a.fail("watch problem", err)
				continue
			}
		}
		// Group commit: up to maxBatch events per spool fsync.
		n := min(len(backlog), maxBatch)
		for _, ev := range backlog[:n] {
			changes = co.add(ev, changes)
		}
		backlog = backlog[n:]
		if len(backlog) > 0 {
			signal(q.ready) // come back for the rest without waiting
		}
		overflow := time.Time{}
		for _, c := range changes {
			if c.overflow {
				overflow = c.at
			}
		}
		if err := flushChanges(); err != nil {
			return err
		}
		if !overflow.IsZero() && pendingRescan.IsZero() {
			pendingRescan = overflow
		}
		if !pendingRescan.IsZero() && len(backlog) == 0 && q.depth() == 0 {
			// The kernel dropped events: once what it did deliver is
			// reported, compare the trees with the baseline and report
			// the difference.
			if err := a.rescan(w, pendingRescan, true, "inotify queue overflow"); err != nil {
				return err
			}
			pendingRescan = time.Time{}
		}
	}
}

// record filters, enriches, sequences and spools changes.
func (a *Agent) record(w *watch.Watcher, changes []change) error {
	a.gapMu.Lock()
	defer a.gapMu.Unlock()
	if len(changes) == 0 && len(a.gaps) == 0 {
		return nil
	}
	next := max(a.sp.NextSeq(), a.seqFloor)
	entries := make([]spool.Entry, 0, len(changes)+len(a.gaps))
	// Declared losses and diffs are fsynced before they go out: a lost gap
	// record would make a loss silent, a lost diff would break the chain
	// of snapshots the next diff starts from. Events may wait (syncmark.go).
	durable := len(a.gaps) > 0
	for _, g := range a.gaps {
		g.Seq = next
		data, _ := g.Marshal()
		entries = append(entries, spool.Entry{Seq: g.Seq, Subject: event.GapSubject(a.cfg.ID), Data: data})
		next++
	}
	for _, c := range changes {
		var subject string
		var data []byte
		var err error
		var ev *event.Event
		seq := next
		if c.overflow {
			a.overflows.Add(1)
			o := event.Overflow{Agent: a.cfg.ID, Seq: seq, Reason: "inotify queue overflow: the kernel dropped events", ObservedAt: c.at}
			subject, data = event.OverflowSubject(a.cfg.ID), must(o.Marshal())
			durable = true
			a.logger.Warn("inotify queue overflow")
		} else {
			r := a.rootOf(c.path)
			if r == nil || !(c.rootGone || r.f.wants(c.path, c.typ) || (c.typ == event.Rename && r.f.wants(c.oldPath, c.typ))) {
				continue
			}
			if c.rootGone {
				a.rootGone(w, r)
			}
			e := event.Event{ID: event.ID(a.cfg.ID, seq), Agent: a.cfg.ID, Host: a.cfg.Host, Seq: seq, Type: c.typ,
				Path: c.path, OldPath: c.oldPath, IsDir: c.isDir, ObservedAt: c.at, Source: event.SourceWatch}
			if c.scan {
				e.Source = event.SourceScan
				if !c.since.IsZero() {
					since := c.since.UTC()
					e.ScanSince = &since
				}
			}
			var st *unix.Stat_t
			if c.typ != event.Delete {
				if s, ok := enrich(&e, a.hashLimit(), r.Path); ok {
					st = &s
				}
			}
			if a.base != nil && !c.scan && st != nil {
				old, known := a.base.Get(c.path)
				_, scanned := a.scanned[c.path]
				switch {
				case scanned && known && c.typ == event.Create && old.Ino == st.Ino && old.Ctime == st.Ctim.Nano():
					delete(a.scanned, c.path)
					continue // a rescan has reported this very file already
				case scanned && known && c.typ == event.Create && old.Ino == st.Ino && !c.isDir:
					// A rescan reported its create; what is new is the write.
					delete(a.scanned, c.path)
					e.Type, c.typ = event.Modify, event.Modify
				case !known && (c.typ == event.Modify || c.typ == event.Attrib):
					// First sight of the path: its create was dropped by the
					// kernel (overflow), so this is news of a new file.
					e.Type, c.typ = event.Create, event.Create
				}
			}
			if a.base != nil {
				a.noteChange(c, st)
			}
			subject = event.EventSubject(a.cfg.ID, e.Type)
			if data, err = e.Marshal(); err != nil {
				return fmt.Errorf("agent: encode event: %w", err)
			}
			ev = &e
		}
		entries = append(entries, spool.Entry{Seq: seq, Subject: subject, Data: data})
		next++
		if ev != nil {
			// Important files: the diff follows its event, with the next seq.
			if d := a.diffFor(ev); d != nil {
				d.Agent, d.Seq, d.EventID = a.cfg.ID, next, ev.ID
				ddata, err := d.Marshal()
				if err != nil {
					return fmt.Errorf("agent: encode diff: %w", err)
				}
				entries = append(entries, spool.Entry{Seq: next, Subject: event.DiffSubject(a.cfg.ID), Data: ddata})
				next++
				durable = true
			}
		}
	}
	if len(entries) == 0 {
		return nil
	}
	err := a.spoolAppend(entries, durable)
	if err != nil {
		a.poisonMarker(err)
		// Nothing was written. The changes are lost unless we say so:
		// their seqs (and those of any gap records tried with them) are
		// declared a gap, persisted, and reported once the spool takes
		// records again.
		a.addGap(entries[0].Seq, entries[len(entries)-1].Seq, "agent spool: "+err.Error())
		a.fail("changes dropped, a gap record will say so", err)
		return nil
	}
	if len(a.gaps) > 0 {
		a.gaps = nil
		if err := a.saveGaps(); err != nil {
			a.fail("clear pending gaps", err)
		}
	}
	a.observed.Add(uint64(len(entries)))
	select {
	case a.wake <- struct{}{}:
	default:
	}
	a.syncDue(time.Now())
	return nil
}

// spoolAppend appends entries, whose first seq may be past the spool's
// next (seqs consumed by gaps), fsynced at once if durable or if the agent
// may not defer that. A spool without room degrades as DESIGN.md
// says: what the broker has acked is safe there, so it is trimmed before
// anything new is refused. gapMu held.
func (a *Agent) spoolAppend(entries []spool.Entry, durable bool) error {
	size := int64(0)
	for _, e := range entries {
		size += int64(len(e.Data) + len(e.Subject) + 64)
	}
	room := func() bool { return a.sp.Stats().Bytes+size <= a.spoolMax() }
	if !room() {
		if pub := a.published.Load(); pub >= a.sp.First() {
			if !a.degraded.Swap(true) {
				a.fail("spool full: trimming at the broker's ack instead of the recorder's watermark", spool.ErrFull)
			}
			a.sp.Trim(pub)
		}
		if !room() {
			// Checked before touching the spool, so a long outage does not
			// leave a segment file per refused batch.
			return spool.ErrFull
		}
	}
	if first := entries[0].Seq; first > a.sp.NextSeq() {
		if err := a.sp.SetNextSeq(first); err != nil {
			return err
		}
	}
	var err error
	if durable || !a.canDefer(entries[len(entries)-1].Seq) {
		err = a.sp.Append(entries)
	} else {
		err = a.sp.AppendDeferred(entries)
	}

	if err == nil && a.degraded.Load() && a.sp.Stats().Bytes < a.spoolMax()/2 {
		a.degraded.Store(false)
	}
	return err
}

func (a *Agent) spoolMax() int64 {
	if a.cfg.Spool.MaxBytes > 0 {
		return a.cfg.Spool.MaxBytes
	}
	return 1 << 30 // the spool's default
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err) // only fixed-shape records reach here
	}
	return b
}

func (a *Agent) rootOf(p string) *rootState {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.roots {
		if within(p, r.Path) {
			return r
		}
	}
	return nil
}

func (a *Agent) rootGone(w *watch.Watcher, r *rootState) {
	w.Remove(r.Path)
	a.mu.Lock()
	r.watching, r.err = false, "root deleted or moved away; re-armed when it exists again"
	a.lastErr, a.lastAt = r.Path+": "+r.err, time.Now()
	a.mu.Unlock()
	a.logger.Error("root gone", "root", r.Path)
}

// zeroEmitted is how a record's emitted_at reads before it is sent. No
// string value can contain it unescaped, so it occurs once, as the field.
var zeroEmitted = []byte(`"emitted_at":"0001-01-01T00:00:00Z"`)

func stamp(data []byte, now time.Time) []byte {
	i := bytes.Index(data, zeroEmitted)
	if i < 0 {
		return data
	}
	ts := now.UTC().Format(time.RFC3339Nano)
	out := make([]byte, 0, len(data)+len(ts))
	out = append(out, data[:i]...)
	out = append(out, `"emitted_at":"`...)
	out = append(out, ts...)
	out = append(out, '"')
	return append(out, data[i+len(zeroEmitted):]...)
}

// inflight is one published message awaiting the broker's ack: one
// record, or a bundle of records first..seq.
type inflight struct {
	first, seq uint64
	fut        jetstream.PubAckFuture
}

// bundleable reports whether e may share a broker message with others:
// events only; diffs, gaps and overflow notices keep their own subjects.
func (a *Agent) bundleable(e spool.Entry) bool {
	return a.cfg.Bundle > 1 && strings.HasPrefix(e.Subject, event.EventsPrefix) &&
		e.Subject != event.GapSubject(a.cfg.ID) && e.Subject != event.OverflowSubject(a.cfg.ID)
}

// publish sends spooled records in seq order, a bounded window at a time,
// and starts again from the first one that failed.
func (a *Agent) publish(ctx context.Context) {
	cursor := a.sp.First()
	var q []inflight
	records := func() int { // in flight
		if len(q) == 0 {
			return 0
		}
		return int(q[len(q)-1].seq - q[0].first + 1)
	}
	lim := rate.NewLimiter(rate.Inf, 1)
	limit := 0.0
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		for records() < a.cfg.PublishWindow {
			ents, err := a.sp.Read(cursor, min(512, a.cfg.PublishWindow-records()), 4<<20)
			var ce *spool.CorruptError
			if errors.As(err, &ce) && len(ents) == 0 && len(ce.Lost) > 0 {
				// A frame damaged on disk since Open: declare it lost and
				// go on past it, rather than stall every later record.
				a.fail("spool frame damaged", err)
				a.gapMu.Lock()
				a.spoolDamage(ce)
				a.gapMu.Unlock()
				cursor = max(cursor, ce.Lost[len(ce.Lost)-1][1]+1)
				continue
			}
			if err != nil && len(ents) == 0 {
				a.fail("read spool", err)
				break
			}
			if len(ents) == 0 {
				break
			}
			now := time.Now()
			failed := false
			if r := a.rateLimit(); r != limit {
				limit = r
				if r > 0 {
					lim.SetLimit(rate.Limit(r))
					lim.SetBurst(max(1, int(r/10)))
				} else {
					lim.SetLimit(rate.Inf)
				}
			}
			for i := 0; i < len(ents); {
				// Events ready together share a message (a bundle); a
				// lone one goes on its own subject.
				const stampRoom = 64 // emitted_at is filled in below
				j, size := i+1, len(ents[i].Data)+stampRoom
				for a.bundleable(ents[i]) && j < len(ents) && j-i < a.cfg.Bundle && a.bundleable(ents[j]) &&
					size+len(ents[j].Data)+stampRoom <= event.MaxBundleBytes {
					size += len(ents[j].Data) + stampRoom
					j++
				}
				var datas [][]byte
				for _, e := range ents[i:j] {
					if limit > 0 {
						if err := lim.Wait(ctx); err != nil {
							return
						}
						now = time.Now()
					}
					datas = append(datas, stamp(e.Data, now))
				}
				first, last := ents[i].Seq, ents[j-1].Seq
				m := nats.NewMsg(ents[i].Subject)
				m.Data = datas[0]
				id := a.cfg.ID + ":" + a.nonce + ":" + strconv.FormatUint(first, 10)
				if j-i > 1 {
					m.Subject, m.Data = event.BundleSubject(a.cfg.ID), event.Bundle(datas)
					id += "-" + strconv.FormatUint(last, 10)
				}
				m.Header.Set(jetstream.MsgIDHeader, id)
				fut, err := a.js.PublishMsgAsync(m, jetstream.WithExpectStream(broker.Stream))
				if err != nil {
					a.fail("publish", err)
					failed = true
					break
				}
				q = append(q, inflight{first, last, fut})
				cursor = last + 1
				i = j
			}
			if failed {
				break
			}
		}
		if len(q) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-a.wake:
			case from := <-a.resend:
				a.resendHead(from)
			case <-time.After(time.Second):
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-q[0].fut.Ok():
			a.published.Store(q[0].seq)
			q = q[1:]
			backoff = 100 * time.Millisecond
		case err := <-q[0].fut.Err():
			a.fail("publish not acknowledged, will retry", err)
			cursor, q = q[0].first, nil
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		case from := <-a.resend:
			a.resendHead(from)
		}
	}
}

// resendHead publishes again the first records after the watermark, the
// ones a recorder waiting for a missing seq needs, without moving the
// publish cursor: a stalled recorder is not flooded with copies.
func (a *Agent) resendHead(from uint64) {
	ents, err := a.sp.Read(max(from, a.sp.First()), 256, 4<<20)
	if err != nil && len(ents) == 0 {
		a.fail("read spool for a retransmit", err)
		return
	}
	now := time.Now()
	for _, e := range ents {
		m := nats.NewMsg(e.Subject)
		m.Data = stamp(e.Data, now)
		m.Header.Set(jetstream.MsgIDHeader, a.cfg.ID+":"+a.nonce+":"+strconv.FormatUint(e.Seq, 10))
		if _, err := a.js.PublishMsgAsync(m, jetstream.WithExpectStream(broker.Stream)); err != nil {
			a.fail("retransmit", err)
			return
		}
	}
}

func watermarkKey(id string) string { return "recorded." + id }
func statusKey(id string) string    { return "status." + id }

func readWatermark(ctx context.Context, kv jetstream.KeyValue, id string) (uint64, error) {
	e, err := kv.Get(ctx, watermarkKey(id))
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(string(e.Value()), 10, 64)
}

// adoptWatermark trims what the recorder has, and moves the seq past it
// when the state dir was lost: reusing seqs the audit log already holds
// would make the recorder drop new records as duplicates.
func (a *Agent) adoptWatermark(wm uint64) {
	a.gapMu.Lock()
	if wm >= max(a.sp.NextSeq(), a.seqFloor) {
		a.logger.Warn("the audit log has records past this agent's spool: state was lost or replaced; continuing after them",
			"watermark", wm, "next_seq", a.sp.NextSeq())
		a.seqFloor = wm + 1
	}
	a.gapMu.Unlock()
	if wm > a.recorded.Load() {
		a.recorded.Store(wm)
		if err := a.sp.Trim(wm); err != nil {
			a.fail("trim spool", err)
		}
	}
}

// track follows the recorder's watermark, trims the spool, asks for a
// retransmit when the watermark is stuck, re-arms missing roots and sends
// the heartbeat.
func (a *Agent) track(ctx context.Context, kv jetstream.KeyValue, w *watch.Watcher) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	lastMove := time.Now()
	wait := a.cfg.RetransmitAfter
	var lastStatus, lastArm time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			// Also here, when collect is not in a long record (a rescan).
			if a.gapMu.TryLock() {
				a.syncDue(now)
				a.gapMu.Unlock()
			}
			if a.recorded.Load() < a.sp.NextSeq()-1 {
				if wm, err := readWatermark(ctx, kv, a.cfg.ID); err == nil && wm > a.recorded.Load() {
					a.adoptWatermark(wm)
					lastMove, wait = now, a.cfg.RetransmitAfter
				}
				if a.published.Load() > a.recorded.Load() && now.Sub(lastMove) > wait {
					a.logger.Warn("recorder watermark stuck; sending unrecorded records again", "from", a.recorded.Load()+1)
					select {
					case a.resend <- a.recorded.Load() + 1:
					default:
					}
					lastMove, wait = now, min(2*wait, 5*time.Minute)
				}
			} else {
				lastMove = now
			}
			if now.Sub(lastArm) > 2*time.Second {
				lastArm = now
				a.armRoots(w)
			}
			if now.Sub(lastStatus) >= a.cfg.StatusInterval {
				lastStatus = now
				a.putStatus(ctx, kv, w, true)
			}
		}
	}
}

// Status is what an agent reports of itself in the fso-agents bucket
// (key status.<id>).
type Status struct {
	ID           string            `json:"id"`
	Host         string            `json:"host"`
	Labels       map[string]string `json:"labels,omitempty"`
	Online       bool              `json:"online"`
	Heartbeat    time.Time         `json:"heartbeat"`
	Roots        []RootStatus      `json:"roots"`
	Watches      int               `json:"watches"`
	Unwatched    []string          `json:"unwatched,omitempty"`
	UnwatchedN   int               `json:"unwatched_count"`
	Overflows    int64             `json:"overflows"`
	Observed     uint64            `json:"observed"`
	NextSeq      uint64            `json:"next_seq"`
	Published    uint64            `json:"published"`
	Recorded     uint64            `json:"recorded"`
	SpoolEntries int               `json:"spool_entries"`
	SpoolBytes   int64             `json:"spool_bytes"`
	// SpoolSyncs counts the spool's fsyncs since the agent started: one
	// per batch of gap, overflow or diff records, and for events one per
	// Config.SpoolSyncAfter at most, none while the recorder keeps up (one
	// per batch with a negative SpoolSyncAfter).
	SpoolSyncs uint64 `json:"spool_syncs"`
	// SpoolDegraded is set while the spool is full and trims at the
	// broker's ack instead of the recorder's watermark.
	SpoolDegraded bool `json:"spool_degraded,omitempty"`
	// LastScan is when the trees were last walked; directories in
	// Unwatched are covered only by these scans.
	LastScan      time.Time `json:"last_scan,omitzero"`
	LastError     string    `json:"last_error,omitempty"`
	LastErrorTime time.Time `json:"last_error_at,omitzero"`
	// Configuration (config.go): the revision in force, the newest seen,
	// and the newest that could not be applied, with why.
	AllowRoots     []string         `json:"allow_roots,omitempty"`
	ConfigRevision uint64           `json:"config_revision"`
	ConfigDesired  uint64           `json:"config_desired"`
	ConfigSHA256   string           `json:"config_sha256,omitempty"`
	ConfigRejected *ConfigRejection `json:"config_rejected,omitempty"`
	EventsPerSec   float64          `json:"events_per_sec"`
}

// RootStatus is one watched root in a Status.
type RootStatus struct {
	Path     string `json:"path"`
	Watching bool   `json:"watching"`
	Error    string `json:"error,omitempty"`
}

// Status returns the agent's current status.
func (a *Agent) Status(w *watch.Watcher) Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := Status{ID: a.cfg.ID, Host: a.cfg.Host, Labels: a.cfg.Labels, Heartbeat: time.Now().UTC(), LastScan: a.lastScan,
		SpoolDegraded: a.degraded.Load(),
		Overflows:     a.overflows.Load(), Observed: a.observed.Load(),
		Published: a.published.Load(), Recorded: a.recorded.Load(), LastError: a.lastErr, LastErrorTime: a.lastAt}
	for _, r := range a.roots {
		st.Roots = append(st.Roots, RootStatus{Path: r.Path, Watching: r.watching, Error: r.err})
	}
	if a.sp != nil {
		ss := a.sp.Stats()
		st.NextSeq, st.SpoolEntries, st.SpoolBytes, st.SpoolSyncs = ss.NextSeq, ss.Entries, ss.Bytes, a.sp.Syncs()
	}
	if w != nil {
		ws := w.Status()
		st.Watches, st.Unwatched, st.UnwatchedN = ws.Watches, slices.Clone(ws.Unwatched), ws.UnwatchedCount
	}
	a.configStatus(&st)
	return st
}

func (a *Agent) putStatus(ctx context.Context, kv jetstream.KeyValue, w *watch.Watcher, online bool) {
	st := a.Status(w)
	st.Online = online
	data, err := json.Marshal(st)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := kv.Put(ctx, statusKey(a.cfg.ID), data); err != nil {
		a.logger.Debug("put status", "err", err)
	}
}
