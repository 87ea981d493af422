package agent

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/fso-project/fso/internal/event"
	"github.com/fso-project/fso/internal/watch"
)

// change is one reportable change, before filtering and enrichment.
type change struct {
	typ      event.Type
	path     string
	oldPath  string
	isDir    bool
	at       time.Time // when the first kernel event of it reached the agent
	scan     bool      // found by listing, not by a kernel event
	overflow bool      // the kernel dropped events: not a change of one path
	rootGone bool
	since    time.Time // scan: when the path's state was last known
}

// pend is a create or modify held until the writer closes the file, so one
// write(2) loop is one change and its hash is of the finished content.
type pend struct {
	typ      event.Type
	path     string
	at       time.Time
	deadline time.Time
}

// coalescer folds the kernel's per-write events into changes. A new regular
// file is reported when its writer closes it (IN_CLOSE_WRITE) or after the
// debounce window, whichever comes first; repeated IN_MODIFY likewise. Any
// other event on a held path reports the held change first, so the order of
// changes to one path is kept. It is not safe for concurrent use.
type coalescer struct {
	debounce time.Duration
	pending  map[string]*pend
}

func newCoalescer(debounce time.Duration) *coalescer {
	return &coalescer{debounce: debounce, pending: map[string]*pend{}}
}

func (c *coalescer) hold(typ event.Type, ev watch.Event) {
	c.pending[ev.Path] = &pend{typ: typ, path: ev.Path, at: ev.Time, deadline: ev.Time.Add(c.debounce)}
}

func (c *coalescer) flush(path string, out []change) []change {
	if p, ok := c.pending[path]; ok {
		delete(c.pending, path)
		out = append(out, change{typ: p.typ, path: p.path, at: p.at})
	}
	return out
}

// flushTree reports the held changes of dir and everything below it.
func (c *coalescer) flushTree(dir string, out []change) []change {
	out = c.flush(dir, out)
	if len(c.pending) == 0 {
		return out
	}
	prefix := dir + "/"
	for p := range c.pending {
		if strings.HasPrefix(p, prefix) {
			out = c.flush(p, out)
		}
	}
	return out
}

// add folds ev in and appends what is now reportable to out.
func (c *coalescer) add(ev watch.Event, out []change) []change {
	switch ev.Op {
	case watch.Create:
		if ev.IsDir || ev.Scan || ev.Moved || c.debounce <= 0 {
			out = c.flush(ev.Path, out)
			return append(out, change{typ: event.Create, path: ev.Path, isDir: ev.IsDir, at: ev.Time, scan: ev.Scan})
		}
		out = c.flush(ev.Path, out)
		c.hold(event.Create, ev)
	case watch.Write:
		if ev.IsDir {
			return out
		}
		if _, ok := c.pending[ev.Path]; !ok {
			if c.debounce <= 0 {
				return append(out, change{typ: event.Modify, path: ev.Path, at: ev.Time})
			}
			c.hold(event.Modify, ev)
		}
	case watch.CloseWrite:
		out = c.flush(ev.Path, out)
	case watch.Attrib:
		if p, ok := c.pending[ev.Path]; ok && p.typ == event.Create {
			return out // the create reports the mode it ends with
		}
		out = c.flush(ev.Path, out)
		out = append(out, change{typ: event.Attrib, path: ev.Path, isDir: ev.IsDir, at: ev.Time})
	case watch.Remove:
		out = c.flushTree(ev.Path, out)
		out = append(out, change{typ: event.Delete, path: ev.Path, isDir: ev.IsDir, at: ev.Time})
	case watch.Rename:
		out = c.flushTree(ev.OldPath, out)
		out = c.flushTree(ev.Path, out)
		out = append(out, change{typ: event.Rename, path: ev.Path, oldPath: ev.OldPath, isDir: ev.IsDir, at: ev.Time})
	case watch.Overflow:
		out = c.flushAll(out)
		out = append(out, change{overflow: true, at: ev.Time})
	case watch.RootGone:
		out = c.flushTree(ev.Path, out)
		out = append(out, change{typ: event.Delete, path: ev.Path, isDir: true, at: ev.Time, rootGone: true})
	}
	return out
}

// due appends the held changes whose window ended by now.
func (c *coalescer) due(now time.Time, out []change) []change {
	var ready []*pend
	for _, h := range c.pending {
		if !h.deadline.After(now) {
			ready = append(ready, h)
		}
	}
	return c.report(ready, out)
}

func (c *coalescer) flushAll(out []change) []change {
	return c.report(slices.Collect(maps.Values(c.pending)), out)
}

// report flushes held changes in the order they were first seen.
func (c *coalescer) report(ps []*pend, out []change) []change {
	slices.SortFunc(ps, func(a, b *pend) int { return a.at.Compare(b.at) })
	for _, h := range ps {
		out = c.flush(h.path, out)
	}
	return out
}

// next is the earliest deadline of a held change.
func (c *coalescer) next() (time.Time, bool) {
	var t time.Time
	for _, h := range c.pending {
		if t.IsZero() || h.deadline.Before(t) {
			t = h.deadline
		}
	}
	return t, !t.IsZero()
}
