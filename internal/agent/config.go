package agent

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fso-project/fso/internal/agentconfig"
	"github.com/fso-project/fso/internal/broker"
	"github.com/fso-project/fso/internal/event"
	"github.com/fso-project/fso/internal/watch"
)

// The agent follows its own key in fso-config, agents.<id>, where the
// controller stores its rendering of the document (least privilege: an
// agent reads no other configuration), and applies each newer revision
// live: decode → validate → build the new roots → swap. Roots that did not
// change keep their watches, so nothing on them is missed; added roots are
// armed (and a rescan reports what they hold), dropped roots
// are removed, and patterns and event types change in place. A revision
// that cannot be applied is reported in the status and the last good
// configuration stays. Revisions only move forward.

// configPoll is how often the agent also reads its configuration directly,
// in case the KV watch is stalled (it takes long to resume after a broker
// restart).
const configPoll = 2 * time.Second

// liveConfig is what the controller's configuration drives at run time.
type liveConfig struct {
	mu        sync.Mutex
	applied   uint64 // revision in force; 0: the local flags
	desired   uint64 // newest revision seen
	sha       string
	rejected  *ConfigRejection
	important []string
	nodiff    []string
	lastObs   uint64
	lastObsAt time.Time
	rate      float64

	hashLimit atomic.Int64  // 0: cfg.HashLimit
	debounce  atomic.Int64  // 0: cfg.Debounce
	rateLimit atomic.Uint64 // math.Float64bits; 0: cfg.RateLimit
}

// rateLimit is the publish cap in force, records/s; 0: none.
func (a *Agent) rateLimit() float64 {
	if v := math.Float64frombits(a.live.rateLimit.Load()); v > 0 {
		return v
	}
	return a.cfg.RateLimit
}

// ConfigRejection is a revision the agent could not apply, and why.
type ConfigRejection struct {
	Revision uint64 `json:"revision"`
	Reason   string `json:"reason"`
}

func (a *Agent) hashLimit() int64 {
	if v := a.live.hashLimit.Load(); v > 0 {
		return v
	}
	return a.cfg.HashLimit
}

func (a *Agent) debounce() time.Duration {
	if v := a.live.debounce.Load(); v > 0 {
		return time.Duration(v)
	}
	return a.cfg.Debounce
}

// diffPatterns returns the important and nodiff globs in force: the
// controller's when a revision is applied, else the local flags.
func (a *Agent) diffPatterns() (important, nodiff []string) {
	a.live.mu.Lock()
	defer a.live.mu.Unlock()
	if a.live.applied == 0 {
		return a.cfg.Important, a.cfg.NoDiff
	}
	return a.live.important, a.live.nodiff
}

// AppliedRevision returns the configuration revision in force (0 before
// any).
func (a *Agent) AppliedRevision() uint64 {
	a.live.mu.Lock()
	defer a.live.mu.Unlock()
	return a.live.applied
}

// configStatus fills the configuration fields of st.
func (a *Agent) configStatus(st *Status) {
	l := &a.live
	l.mu.Lock()
	defer l.mu.Unlock()
	st.AllowRoots = a.cfg.AllowRoots
	st.ConfigRevision, st.ConfigDesired, st.ConfigSHA256 = l.applied, l.desired, l.sha
	if l.rejected != nil {
		r := *l.rejected
		st.ConfigRejected = &r
	}
	now := time.Now()
	if d := now.Sub(l.lastObsAt); d >= time.Second || l.lastObsAt.IsZero() {
		if !l.lastObsAt.IsZero() {
			l.rate = float64(st.Observed-l.lastObs) / d.Seconds()
		}
		l.lastObs, l.lastObsAt = st.Observed, now
	}
	st.EventsPerSec = l.rate
}

func checkAllowed(p string, allow []string) error {
	if len(allow) == 0 {
		return nil
	}
	for _, d := range allow {
		if d == "/" || within(p, filepath.Clean(d)) {
			return nil
		}
	}
	return fmt.Errorf("%s is outside --allow-root %s", p, strings.Join(allow, ","))
}

// followConfig applies the newest configuration revision until ctx ends,
// re-creating its KV watch after every reconnect.
func (a *Agent) followConfig(ctx context.Context, status jetstream.KeyValue, w *watch.Watcher) {
	var kv jetstream.KeyValue
	for ctx.Err() == nil {
		if kv == nil {
			var err error
			if kv, err = a.js.KeyValue(ctx, broker.ConfigBucket); err != nil {
				a.logger.Debug("open config bucket", "err", err)
				kv = nil
				sleep(ctx, time.Second)
				continue
			}
		}
		a.watchConfig(ctx, kv, status, w)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// watchConfig runs one KV watch of the document until it ends or the
// connection is re-established.
func (a *Agent) watchConfig(ctx context.Context, kv jetstream.KeyValue, status jetstream.KeyValue, w *watch.Watcher) {
	var reconnected chan nats.Status
	if nc := a.js.Conn(); nc != nil {
		reconnected = nc.StatusChanged(nats.CONNECTED)
		defer nc.RemoveStatusListener(reconnected)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	kw, err := kv.Watch(wctx, a.configKey())
	if err != nil {
		a.logger.Debug("watch config", "err", err)
		a.pollConfig(ctx, kv, status, w)
		sleep(ctx, time.Second)
		return
	}
	defer kw.Stop()
	poll := time.NewTicker(configPoll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-kw.Updates():
			if !ok {
				return
			}
			if e != nil && e.Operation() == jetstream.KeyValuePut {
				a.offerConfig(ctx, e.Value(), status, w)
			}
		case <-reconnected:
			a.pollConfig(ctx, kv, status, w)
			return
		case <-poll.C:
			a.pollConfig(ctx, kv, status, w)
		}
	}
}

func (a *Agent) pollConfig(ctx context.Context, kv jetstream.KeyValue, status jetstream.KeyValue, w *watch.Watcher) {
	gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	e, err := kv.Get(gctx, a.configKey())
	cancel()
	if err == nil {
		a.offerConfig(ctx, e.Value(), status, w)
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		a.logger.Debug("read config", "err", err)
	}
}

// configKey is the agent's own key in fso-config: the controller's
// rendering of the document for it. Agents read nothing else there.
func (a *Agent) configKey() string { return agentconfig.AgentPrefix + a.cfg.ID }

// offerConfig applies a rendering unless its revision is not newer than
// the newest already seen, then puts the status at once.
func (a *Agent) offerConfig(ctx context.Context, data []byte, status jetstream.KeyValue, w *watch.Watcher) {
	ac, derr := agentconfig.DecodeAgent(data)
	rev := ac.Revision
	l := &a.live
	if derr != nil && rev == 0 {
		l.mu.Lock()
		l.rejected = &ConfigRejection{Reason: derr.Error()}
		l.mu.Unlock()
		a.logger.Error("configuration rejected, keeping the last good one", "err", derr)
		a.putStatus(ctx, status, w, true)
		return
	}
	l.mu.Lock()
	if rev <= l.desired {
		l.mu.Unlock()
		return
	}
	l.desired = rev
	l.mu.Unlock()
	err := derr
	if err == nil {
		err = a.applyConfig(ac, w)
	}
	l.mu.Lock()
	if err != nil {
		l.rejected = &ConfigRejection{Revision: rev, Reason: err.Error()}
	} else {
		l.rejected = nil
	}
	l.mu.Unlock()
	if err != nil {
		a.logger.Error("configuration rejected, keeping the last good one", "revision", rev, "err", err)
	} else {
		a.logger.Info("configuration applied", "revision", rev)
	}
	a.putStatus(ctx, status, w, true)
}

// applyConfig checks the rendering ac against this host and swaps it in.
// On error nothing changed.
func (a *Agent) applyConfig(ac agentconfig.Agent, w *watch.Watcher) error {
	rev := ac.Revision
	var err error
	var roots []Root
	for _, r := range ac.Watch {
		root := Root{Path: filepath.Clean(r.Path), Recursive: r.Recursive, Include: r.Include, Exclude: r.Exclude}
		for _, t := range r.Events {
			root.Events = append(root.Events, event.Type(t))
		}
		if err := root.Validate(); err != nil {
			return fmt.Errorf("%s: %w", r.Field, err)
		}
		if err := checkAllowed(root.Path, a.cfg.AllowRoots); err != nil {
			return fmt.Errorf("%s: %w", r.Field, err)
		}
		fi, err := os.Stat(root.Path)
		if err != nil {
			return fmt.Errorf("%s: %s: no such directory on this agent", r.Field, root.Path)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s: %s is not a directory", r.Field, root.Path)
		}
		roots = append(roots, root)
	}
	var deb time.Duration
	if ac.Debounce != "" {
		if deb, err = time.ParseDuration(ac.Debounce); err != nil {
			return fmt.Errorf("debounce: %w", err)
		}
	}
	a.swapRoots(roots, w)
	a.live.hashLimit.Store(ac.HashLimit)
	a.live.debounce.Store(int64(deb))
	a.live.rateLimit.Store(math.Float64bits(ac.RateLimit))
	a.live.mu.Lock()
	a.live.applied, a.live.sha = rev, ac.DocSHA256
	// What the document leaves unset keeps the local flag's value.
	a.live.important, a.live.nodiff = ac.Important, ac.NoDiff
	if ac.Important == nil {
		a.live.important = a.cfg.Important
	}
	if ac.NoDiff == nil {
		a.live.nodiff = a.cfg.NoDiff
	}
	a.live.mu.Unlock()
	return nil
}

// swapRoots makes roots the watched roots. A root whose path, recursion
// and directory excludes are unchanged keeps its watches; only its filter
// is replaced. An empty list keeps the local --watch roots.
func (a *Agent) swapRoots(roots []Root, w *watch.Watcher) {
	if len(roots) == 0 {
		roots = a.cfg.Roots
	}
	a.mu.Lock()
	old := map[string]*rootState{}
	for _, r := range a.roots {
		old[r.Path] = r
	}
	var next []*rootState
	var remove []string
	for _, r := range roots {
		st := &rootState{Root: r, f: newFilter(r)}
		if o := old[r.Path]; o != nil {
			delete(old, r.Path)
			if o.watching && o.Recursive == r.Recursive && slices.Equal(o.f.excludeDirs, st.f.excludeDirs) {
				st.watching = true
			} else if o.watching {
				remove = append(remove, r.Path) // re-armed with the new directory filter
			}
			if !st.watching {
				st.err = o.err
			}
		}
		next = append(next, st)
	}
	for p, o := range old {
		if o.watching {
			remove = append(remove, p)
		}
	}
	a.roots = next
	a.mu.Unlock()
	for _, p := range remove {
		if err := w.Remove(p); err != nil && !errors.Is(err, watch.ErrNoRoot) {
			a.logger.Warn("stop watching", "root", p, "err", err)
		}
	}
	for p := range old {
		a.logger.Info("root removed by configuration", "root", p)
	}
	a.armRoots(w)
}
