package bench

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/fso-project/fso/internal/auditlog"
	"github.com/fso-project/fso/internal/event"
)

// seenEvent is one event record read back from the audit log.
type seenEvent struct {
	typ      event.Type
	recorded time.Time
	scan     bool
}

// collector follows the audit log and indexes its event records by path
// (and old path).
type collector struct {
	mu       sync.Mutex
	byPath   map[string][]seenEvent
	ids      map[string]struct{}
	dupIDs   int
	dupTold  int // dupIDs already counted by a check
	ovfTold  int
	records  int
	overflow int
	last     time.Time // when the last record was read
	err      error
	done     chan struct{}
}

func startCollector(ctx context.Context, dir string) *collector {
	c := &collector{byPath: map[string][]seenEvent{}, ids: map[string]struct{}{}, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		err := auditlog.Tail(ctx, dir, auditlog.Filter{}, c.add)
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
	}()
	return c
}

func (c *collector) add(r auditlog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records++
	c.last = time.Now()
	switch r.Kind {
	case event.KindOverflow:
		c.overflow++
		return nil
	case event.KindEvent:
	default:
		return nil
	}
	if _, dup := c.ids[r.ID]; dup {
		c.dupIDs++
		return nil
	}
	c.ids[r.ID] = struct{}{}
	e := seenEvent{typ: event.Type(r.Type), recorded: r.RecordedAt, scan: bytes.Contains(r.Raw, []byte(`"source":"scan"`))}
	c.byPath[r.Path] = append(c.byPath[r.Path], e)
	if r.OldPath != "" {
		c.byPath[r.OldPath] = append(c.byPath[r.OldPath], e)
	}
	return nil
}

// has reports whether any event names p.
func (c *collector) has(p string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byPath[p]) > 0
}

// wait returns when every op has an event, or when the log has been quiet
// for quiet, or at max; it returns when the last record was read.
func (c *collector) wait(ctx context.Context, ops []op, quiet, max time.Duration) time.Time {
	deadline := time.Now().Add(max)
	i := 0
	for {
		c.mu.Lock()
		for i < len(ops) && len(c.byPath[ops[i].path]) > 0 {
			i++
		}
		last, err := c.last, c.err
		c.mu.Unlock()
		now := time.Now()
		if i == len(ops) || err != nil || ctx.Err() != nil || now.After(deadline) ||
			(!last.IsZero() && now.Sub(last) > quiet && now.Sub(ops[len(ops)-1].start) > quiet) {
			// One more look for stragglers written with the last ones.
			time.Sleep(50 * time.Millisecond)
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.last
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Check is what the audit log says about one workload's ops.
type Check struct {
	Ops        int     `json:"ops"`
	Seen       int     `json:"seen"`
	SeenPct    float64 `json:"seen_pct"`
	Lost       int     `json:"lost"`
	Duplicates int     `json:"duplicates"`
	RightType  float64 `json:"right_type_pct"`
	Synthetic  int     `json:"synthetic"` // events with source "scan"
	Overflows  int     `json:"overflows"`
	LatencyP50 float64 `json:"latency_p50_ms"`
	LatencyP99 float64 `json:"latency_p99_ms"`
	LatencyMax float64 `json:"latency_max_ms"`
	latencies  []time.Duration
	lastSeen   time.Time
}

// check compares ops with what the collector has read.
func (c *collector) check(ops []op) Check {
	c.mu.Lock()
	defer c.mu.Unlock()
	ck := Check{Ops: len(ops), Duplicates: c.dupIDs - c.dupTold, Overflows: c.overflow - c.ovfTold}
	c.dupTold, c.ovfTold = c.dupIDs, c.overflow
	right := 0
	for _, o := range ops {
		evs := c.byPath[o.path]
		if len(evs) == 0 {
			ck.Lost++
			ck.latencies = append(ck.latencies, -1)
			continue
		}
		ck.Seen++
		first := evs[0].recorded
		want, n := o.kind.want(), 0
		for _, e := range evs {
			if e.recorded.Before(first) {
				first = e.recorded
			}
			if e.recorded.After(ck.lastSeen) {
				ck.lastSeen = e.recorded
			}
			if e.typ == want {
				n++
			}
			if e.scan {
				ck.Synthetic++
			}
		}
		if n > 0 {
			right++
		}
		if n > 1 {
			ck.Duplicates += n - 1
		}
		ck.latencies = append(ck.latencies, first.Sub(o.start))
	}
	if ck.Ops > 0 {
		ck.SeenPct = 100 * float64(ck.Seen) / float64(ck.Ops)
		ck.RightType = 100 * float64(right) / float64(ck.Ops)
	}
	var lat []time.Duration
	for _, l := range ck.latencies {
		if l >= 0 {
			lat = append(lat, l)
		}
	}
	slices.Sort(lat)
	ck.LatencyP50, ck.LatencyP99, ck.LatencyMax = ms(quantile(lat, 0.5)), ms(quantile(lat, 0.99)), ms(quantile(lat, 1))
	return ck
}

func quantile(s []time.Duration, q float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// growingLag reports whether the latencies of the last quarter of ops are
// over 100 ms above those of the first quarter (10th percentiles): a
// backlog that grows delays every op, a transient stall only some.
func growingLag(lat []time.Duration) bool {
	q := len(lat) / 4
	if q < 4 {
		return false
	}
	p10 := func(s []time.Duration) time.Duration {
		s = slices.Clone(s)
		slices.Sort(s)
		return quantile(s, 0.1)
	}
	return p10(lat[len(lat)-q:])-p10(lat[:q]) > 100*time.Millisecond
}
