package watch

import (
	"errors"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// The methods in this file keep the trees of armed directories. They are
// called with w.mu held.

// wanted reports whether the directory path, under r, should be armed.
func wanted(r *root, path string) bool {
	if path == r.path {
		return true
	}
	return r.filter.Recursive && (r.filter.SkipDir == nil || !r.filter.SkipDir(path))
}

// armTree arms the directory name in parent, if its root wants it, then lists
// it and arms its subdirectories the same way, depth first. With b not nil
// (a directory new to the tree), every entry listed is reported to b as a
// Create with Scan set and remembered to drop the kernel's duplicate; with b
// nil (Add, resync), nothing is reported.
func (w *Watcher) armTree(parent *dir, name string, b *batch) {
	path := parent.pathTo(name)
	if !wanted(parent.root, path) {
		return
	}
	wd, err := unix.InotifyAddWatch(w.fd, path, mask)
	if err != nil {
		w.armFailed(parent.root, path, err)
		return
	}
	d := w.place(int32(wd), parent, name, parent.root, path)
	w.walk(d, path, b)
}

// walk lists d, at path, and arms its subdirectories (see armTree).
func (w *Watcher) walk(d *dir, path string, b *batch) {
	ents, err := os.ReadDir(path) // sorted, so listings are deterministic
	gone := errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR)
	if err != nil && !gone {
		w.report(&PathError{Op: "list", Path: path, Err: errors.Unwrap(err)})
	}
	if w.onList != nil && !gone {
		w.onList(path, ents, err)
	}
	if b != nil && len(ents) > 0 {
		now := time.Now()
		l := w.listed[d.wd]
		if l == nil {
			l = &listing{names: make(map[string]struct{}, len(ents))}
			w.listed[d.wd] = l
		}
		l.expires = now.Add(listedMemory)
		for _, e := range ents {
			l.names[e.Name()] = struct{}{}
			b.add(Event{Op: Create, Path: join(path, e.Name()), IsDir: e.IsDir(), Time: now, Scan: true}, d.root)
			if e.IsDir() {
				w.armTree(d, e.Name(), b)
			}
		}
		return
	}
	// Room for the subdirectories at once: growing the slice one by one
	// leaves up to half of it empty, and garbage as large behind.
	subdirs := 0
	for _, e := range ents {
		if e.IsDir() { // from d_type: a symbolic link is not a directory
			subdirs++
		}
	}
	if kids := d.children(); cap(kids) < subdirs {
		d.setChildren(slices.Grow(kids, subdirs-len(kids)))
	}
	for _, e := range ents {
		if e.IsDir() {
			w.armTree(d, e.Name(), nil)
		}
	}
}

// place records that wd watches the directory name in parent (or the root of
// r when parent is nil), at path. The kernel returns the same wd for a
// directory it already watches: then the known dir moves there, with its
// subtree.
func (w *Watcher) place(wd int32, parent *dir, name string, r *root, path string) *dir {
	w.armed(r, path)
	d := w.wds[wd]
	if d == nil {
		d = &dir{wd: wd}
		w.wds[wd] = d
	}
	d.gen = w.gen
	w.attach(d, parent, name, r)
	return d
}

// attach puts d at name in parent (or as the root of r), replacing what was
// there, and updates the root of its subtree.
func (w *Watcher) attach(d, parent *dir, name string, r *root) {
	w.detach(d)
	if parent == nil {
		r.dir = d
	} else {
		if old := parent.child(name); old != nil && old != d {
			w.drop(old, true)
		}
		d.name = name
		parent.setChild(d)
	}
	d.parent, d.name = parent, name
	relocate(d, r)
}

// relocate sets the root of d and of its subtree (a subtree always shares
// its root, so an unchanged root is the end of it).
func relocate(d *dir, r *root) {
	if d.root == r {
		return
	}
	d.root = r
	for _, c := range d.children() {
		relocate(c, r)
	}
}

// detach unlinks d from its parent, or from its root.
func (w *Watcher) detach(d *dir) {
	if p := d.parent; p != nil {
		p.removeChild(d)
	}
	if d.root != nil && d.root.dir == d {
		d.root.dir = nil
	}
	d.parent = nil
}

// drop forgets d and its subtree; with rm it also removes their watches
// (errors are ignored: a watch may already be gone).
func (w *Watcher) drop(d *dir, rm bool) {
	kids := d.children()
	d.sub = nil // so that the children's detach need not search it
	for _, c := range kids {
		w.drop(c, rm)
	}
	if rm {
		unix.InotifyRmWatch(w.fd, uint32(d.wd))
	}
	w.forget(d)
}

// forget forgets d alone: its wd, its listing, its place in the tree.
func (w *Watcher) forget(d *dir) {
	if w.wds[d.wd] == d {
		delete(w.wds, d.wd)
	}
	delete(w.listed, d.wd)
	w.detach(d)
}

// seen reports whether a listing of d already reported name, and forgets the
// name if so: the kernel's IN_CREATE for it is a duplicate.
func (w *Watcher) seen(d *dir, name string, now time.Time) bool {
	l := w.listed[d.wd]
	if l == nil {
		return false
	}
	if now.After(l.expires) {
		delete(w.listed, d.wd)
		return false
	}
	if _, ok := l.names[name]; !ok {
		return false
	}
	delete(l.names, name)
	if len(l.names) == 0 {
		delete(w.listed, d.wd)
	}
	return true
}

// unsee forgets name in d's listing: it was deleted or moved away, so a
// later IN_CREATE of the same name is new.
func (w *Watcher) unsee(d *dir, name string) {
	if l := w.listed[d.wd]; l != nil {
		delete(l.names, name)
	}
}

// sweep forgets expired listings, at most once a second.
func (w *Watcher) sweep(now time.Time) {
	if now.Before(w.sweepAt) {
		return
	}
	w.sweepAt = now.Add(time.Second)
	for wd, l := range w.listed {
		if now.After(l.expires) {
			delete(w.listed, wd)
		}
	}
}

// armFailed reports a directory that could not be armed. ENOENT and ENOTDIR
// are ignored: the directory was deleted or replaced since it was seen.
func (w *Watcher) armFailed(r *root, path string, err error) {
	if err == unix.ENOENT || err == unix.ENOTDIR {
		return
	}
	err = watchErr(err)
	r.unwatched++
	w.unwatchedCount++
	if len(w.unwatched) < maxUnwatched {
		w.unwatched = append(w.unwatched, path)
	}
	w.log.Warn("directory not watched", "path", path, "err", err)
	w.report(&PathError{Op: "watch", Path: path, Err: err})
}

// armed takes path off the unwatched list, if it is there.
func (w *Watcher) armed(r *root, path string) {
	if r.unwatched == 0 {
		return
	}
	if i := slices.Index(w.unwatched, path); i >= 0 {
		w.unwatched = slices.Delete(w.unwatched, i, i+1)
		r.unwatched--
		w.unwatchedCount--
	}
}

// clearUnwatched forgets the unwatched directories of r.
func (w *Watcher) clearUnwatched(r *root) {
	w.unwatchedCount -= r.unwatched
	r.unwatched = 0
	w.unwatched = slices.DeleteFunc(w.unwatched, func(p string) bool { return within(p, r.path) })
}

// report sends err on Errors without blocking; when full, it counts a drop.
func (w *Watcher) report(err error) {
	select {
	case w.errs <- err:
	default:
		w.droppedErrors++
	}
}

// resync re-walks every root after an overflow: it arms directories whose
// creation was lost, moves those whose rename was lost, and drops those
// whose removal was lost. Nothing is reported: the caller must rescan anyway.
func (w *Watcher) resync(now time.Time, b *batch) {
	for _, r := range w.roots {
		if r.dir == nil {
			continue
		}
		w.clearUnwatched(r)
		w.gen++
		wd, err := unix.InotifyAddWatch(w.fd, r.path, mask)
		if err != nil || int32(wd) != r.dir.wd {
			if err == nil {
				unix.InotifyRmWatch(w.fd, uint32(wd))
			}
			w.rootGone(r, now, b)
			continue
		}
		w.place(int32(wd), nil, "", r, r.path)
		w.walk(r.dir, r.path, nil)
		for _, d := range w.wds {
			if d.root == r && d.gen != w.gen {
				w.drop(d, true)
			}
		}
	}
}

// rootGone reports that r was deleted or moved away, and drops its watches.
// r stays a root, unwatched, until Remove.
func (w *Watcher) rootGone(r *root, now time.Time, b *batch) {
	if r.dir == nil {
		return
	}
	for _, d := range w.wds {
		if d.root == r {
			w.drop(d, true)
		}
	}
	r.dir = nil
	b.add(Event{Op: RootGone, Path: r.path, IsDir: true, Time: now}, r)
	w.log.Warn("root gone", "path", r.path)
	w.report(&PathError{Op: "watch", Path: r.path, Err: ErrRootGone})
}
