package watch

import (
	"golang.org/x/sys/unix"
)

// process turns the records of one read into a batch. recs may start with
// the IN_MOVED_FROM carried over from the previous read. An IN_MOVED_FROM
// that ends recs without its pair, and was not carried already, is returned
// in b.carry instead of being reported.
func (w *Watcher) process(recs []rawEvent) *batch {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := &batch{}
	if len(recs) == 0 {
		return b
	}
	w.sweep(recs[len(recs)-1].time)
	var (
		movedTo  map[uint32]int // cookie → index of its IN_MOVED_TO in recs
		paired   map[int]bool   // indexes of IN_MOVED_TO already reported in a Rename
		overflow bool
	)
	for i := range recs {
		r := &recs[i]
		if paired[i] {
			continue
		}
		if r.mask&unix.IN_Q_OVERFLOW != 0 {
			w.overflows++
			overflow = true
			w.log.Warn("inotify queue overflow: events lost")
			b.add(Event{Op: Overflow, Time: r.time}, nil)
			continue
		}
		d := w.wds[r.wd]
		if d == nil {
			continue // removed or forgotten: its remaining records are stale
		}
		if r.mask&unix.IN_IGNORED != 0 {
			if d.root.dir == d {
				w.rootGone(d.root, r.time, b) // its watch went away without IN_DELETE_SELF
			} else {
				w.forget(d)
			}
			continue
		}
		if r.mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_UNMOUNT) != 0 {
			if d.root.dir == d {
				w.rootGone(d.root, r.time, b)
			}
			continue // below a root, the parent reports it
		}
		if r.name == "" && d.root.dir != d {
			continue // an event on a directory itself: its parent reports it too
		}
		isDir := r.mask&unix.IN_ISDIR != 0
		ev := Event{Path: d.pathTo(r.name), IsDir: isDir, Time: r.time}
		switch {
		case r.mask&unix.IN_CREATE != 0:
			if w.seen(d, r.name, r.time) {
				continue
			}
			ev.Op = Create
			b.add(ev, d.root)
			if isDir {
				w.armTree(d, r.name, b)
			}
		case r.mask&unix.IN_MODIFY != 0:
			ev.Op = Write
			b.add(ev, d.root)
		case r.mask&unix.IN_CLOSE_WRITE != 0:
			ev.Op = CloseWrite
			b.add(ev, d.root)
		case r.mask&unix.IN_ATTRIB != 0:
			ev.Op = Attrib
			b.add(ev, d.root)
		case r.mask&unix.IN_DELETE != 0:
			w.unsee(d, r.name)
			ev.Op = Remove
			b.add(ev, d.root)
			if c := d.child(r.name); isDir && c != nil {
				w.drop(c, true)
			}
		case r.mask&unix.IN_MOVED_FROM != 0:
			w.unsee(d, r.name)
			if movedTo == nil {
				movedTo = map[uint32]int{}
				for j := range recs {
					if recs[j].mask&unix.IN_MOVED_TO != 0 {
						movedTo[recs[j].cookie] = j
					}
				}
			}
			if j, ok := movedTo[r.cookie]; ok && j > i {
				if paired == nil {
					paired = map[int]bool{}
				}
				paired[j] = true
				if to := w.wds[recs[j].wd]; to != nil {
					w.renamed(d, r, to, recs[j].name, b)
					continue
				}
			}
			if i == len(recs)-1 && !r.carried {
				c := *r
				c.carried = true
				b.carry = &c
				continue
			}
			ev.Op, ev.Moved = Remove, true
			b.add(ev, d.root)
			if c := d.child(r.name); isDir && c != nil {
				w.drop(c, true)
			}
		case r.mask&unix.IN_MOVED_TO != 0:
			if w.seen(d, r.name, r.time) {
				continue
			}
			ev.Op, ev.Moved = Create, true
			b.add(ev, d.root)
			if isDir {
				w.armTree(d, r.name, b)
			}
		}
	}
	if overflow {
		w.resync(recs[len(recs)-1].time, b)
	}
	return b
}

// renamed reports the rename of from (in fromDir) to toName in toDir, and,
// for a directory, moves its watches, or arms or drops them when the filter
// of the new place says otherwise.
func (w *Watcher) renamed(fromDir *dir, from *rawEvent, toDir *dir, toName string, b *batch) {
	isDir := from.mask&unix.IN_ISDIR != 0
	newPath := toDir.pathTo(toName)
	b.add(Event{Op: Rename, Path: newPath, OldPath: fromDir.pathTo(from.name), IsDir: isDir, Time: from.time}, toDir.root)
	if !isDir {
		return
	}
	c := fromDir.child(from.name)
	switch {
	case !wanted(toDir.root, newPath):
		if c != nil {
			w.drop(c, true)
		}
	case c != nil:
		w.attach(c, toDir, toName, toDir.root)
	default:
		w.armTree(toDir, toName, b) // not watched where it was: arm and list it now
	}
}
