package baseline

import (
	"bytes"
	"encoding/binary"
	"maps"
	"slices"
	"sort"
	"strings"
	"unsafe"
)

// Packed is a Baseline kept small for the agent's whole life. As a map a
// path costs its own copy of every directory above it plus a map slot:
// ~120 bytes for each directory of a 100,000-directory tree, more than the
// agent's watch of it. Packed keeps the entries sorted by path in one byte
// slice, each path stored as the number of bytes it shares with the one
// before plus the rest, and the entries as varints: ~40 bytes each. The
// changes since the last repack sit in a small map on top.
//
// The zero value is an empty baseline. A Packed is not safe for concurrent
// use.
type Packed struct {
	blob     []byte
	restarts []restart // every restartEvery-th record of blob: where it starts, its path
	n        int       // records in blob
	over     map[string]over
}

// restartEvery bounds a lookup's linear decode; a restart costs a full
// path, so 32 records share it.
const restartEvery = 32

type restart struct {
	off  int
	path string
}

// over is a change on top of blob: an entry, or its removal.
type over struct {
	e    Entry
	gone bool
}

// Pack builds a Packed holding b's entries.
func Pack(b Baseline) *Packed {
	p := &Packed{}
	var w packer
	for _, path := range slices.Sorted(maps.Keys(b)) {
		w.add([]byte(path), b[path])
	}
	p.blob, p.restarts, p.n = w.blob, w.restarts, w.n
	return p
}

// packer appends records in path order. A record is: the bytes its path
// shares with the previous one, the length and bytes of the rest, then
// the entry as varints, most as differences (zigzag) from the previous
// record's, since a tree's files were often made together: inode, mtime
// and mode from the previous record's, ctime from its own mtime. A
// record that shares no byte of its path (a restart
// shares none) shares nothing else either.
type packer struct {
	blob     []byte
	restarts []restart
	n        int
	last     []byte
	prev     Entry
}

func (w *packer) add(path []byte, e Entry) {
	shared := 0
	if w.n%restartEvery == 0 {
		w.restarts = append(w.restarts, restart{off: len(w.blob), path: string(path)})
	} else {
		for shared < len(path) && shared < len(w.last) && path[shared] == w.last[shared] {
			shared++
		}
	}
	if shared == 0 {
		w.prev = Entry{} // what a cursor starting here knows
	}
	w.blob = binary.AppendUvarint(w.blob, uint64(shared))
	w.blob = binary.AppendUvarint(w.blob, uint64(len(path)-shared))
	w.blob = append(w.blob, path[shared:]...)
	w.blob = binary.AppendVarint(w.blob, int64(e.Ino-w.prev.Ino))
	w.blob = binary.AppendUvarint(w.blob, uint64(e.Size))
	w.blob = binary.AppendVarint(w.blob, e.Mtime-w.prev.Mtime)
	w.blob = binary.AppendVarint(w.blob, e.Ctime-e.Mtime)
	w.blob = binary.AppendVarint(w.blob, int64(e.Mode)-int64(w.prev.Mode))
	w.blob = binary.AppendUvarint(w.blob, uint64(e.UID))
	w.blob = binary.AppendUvarint(w.blob, uint64(e.GID))
	w.last, w.prev = append(w.last[:0], path...), e
	w.n++
}

// cursor decodes blob's records in order from a restart.
type cursor struct {
	blob []byte
	off  int
	path []byte // the current record's path; reused, so copy to keep
	e    Entry
}

func (c *cursor) next() bool {
	if c.off >= len(c.blob) {
		return false
	}
	uv := func() uint64 {
		v, n := binary.Uvarint(c.blob[c.off:])
		c.off += n
		return v
	}
	sv := func() int64 {
		v, n := binary.Varint(c.blob[c.off:])
		c.off += n
		return v
	}
	shared, rest := int(uv()), int(uv())
	if shared == 0 {
		c.e = Entry{} // as the packer did
	}
	c.path = append(c.path[:shared], c.blob[c.off:c.off+rest]...)
	c.off += rest
	prev := c.e
	c.e.Ino = prev.Ino + uint64(sv())
	c.e.Size = int64(uv())
	c.e.Mtime = prev.Mtime + sv()
	c.e.Ctime = c.e.Mtime + sv()
	c.e.Mode = uint32(int64(prev.Mode) + sv())
	c.e.UID = uint32(uv())
	c.e.GID = uint32(uv())
	return true
}

// seek puts c on the first record whose path is not below from, and
// returns false if there is none.
func (p *Packed) seek(from string, c *cursor) bool {
	// Start at the last restart at or before from: records before it are smaller.
	i := sort.Search(len(p.restarts), func(i int) bool { return p.restarts[i].path > from })
	c.blob, c.off = p.blob, 0
	if i > 0 {
		c.off = p.restarts[i-1].off
	}
	for c.next() {
		if string(c.path) >= from {
			return true
		}
	}
	return false
}

// Get returns path's entry.
func (p *Packed) Get(path string) (Entry, bool) {
	if o, ok := p.over[path]; ok {
		return o.e, !o.gone
	}
	var buf [256]byte
	c := cursor{path: buf[:0]}
	if p.seek(path, &c) && string(c.path) == path {
		return c.e, true
	}
	return Entry{}, false
}

// Set makes path's entry e.
func (p *Packed) Set(path string, e Entry) {
	p.put(path, over{e: e})
}

// Delete forgets path, and with tree everything below it.
func (p *Packed) Delete(path string, tree bool) {
	p.put(path, over{gone: true})
	if tree {
		for q := range p.below(path) {
			p.put(q, over{gone: true})
		}
	}
}

// Rename moves old, and everything below it, to to.
func (p *Packed) Rename(old, to string) {
	moved := map[string]Entry{}
	for q, e := range p.below(old) {
		moved[to+q[len(old):]] = e
		p.put(q, over{gone: true})
	}
	if e, ok := p.Get(old); ok {
		moved[to] = e
	}
	p.put(old, over{gone: true})
	for q, e := range moved {
		p.put(q, over{e: e})
	}
}

// below returns the entries strictly below dir, collected first so the
// caller may change p while it goes through them.
func (p *Packed) below(dir string) map[string]Entry {
	prefix := strings.TrimSuffix(dir, "/") + "/"
	out := map[string]Entry{}
	var c cursor
	for ok := p.seek(prefix, &c); ok && bytes.HasPrefix(c.path, []byte(prefix)); ok = c.next() {
		out[string(c.path)] = c.e
	}
	for q, o := range p.over {
		if strings.HasPrefix(q, prefix) {
			if o.gone {
				delete(out, q)
			} else {
				out[q] = o.e
			}
		}
	}
	return out
}

func (p *Packed) put(path string, o over) {
	if p.over == nil {
		p.over = map[string]over{}
	}
	p.over[path] = o
	// Repacking costs a pass over blob: done when an eighth of it changed,
	// each change pays for eight records' worth, and the map on top stays
	// small next to blob.
	if len(p.over) > max(1024, p.n/8) {
		p.repack()
	}
}

// All calls yield with every entry, in path order.
func (p *Packed) All(yield func(path string, e Entry) bool) {
	p.each(func(path []byte, e Entry) bool { return yield(string(path), e) })
}

// each is All with the path in a buffer reused from one call to the next.
func (p *Packed) each(yield func(path []byte, e Entry) bool) {
	keys := slices.Sorted(maps.Keys(p.over))
	c := cursor{blob: p.blob}
	more := c.next()
	var buf []byte
	for more || len(keys) > 0 {
		if len(keys) > 0 && (!more || keys[0] <= string(c.path)) {
			o := p.over[keys[0]]
			if more && keys[0] == string(c.path) {
				more = c.next() // overridden
			}
			buf = append(buf[:0], keys[0]...)
			keys = keys[1:]
			if !o.gone && !yield(buf, o.e) {
				return
			}
			continue
		}
		if !yield(c.path, c.e) { // before next, which reuses c.path
			return
		}
		more = c.next()
	}
}

// Len returns the number of entries.
func (p *Packed) Len() int {
	n := 0
	for range p.All {
		n++
	}
	return n
}

// Unpack returns the entries as a Baseline.
func (p *Packed) Unpack() Baseline {
	b := make(Baseline, p.n)
	for path, e := range p.All {
		b[path] = e
	}
	return b
}

// repack folds the changes into blob.
func (p *Packed) repack() {
	w := packer{blob: make([]byte, 0, len(p.blob)+len(p.blob)/8)}
	for path, e := range p.each {
		w.add(path, e)
	}
	p.blob, p.restarts, p.n, p.over = w.blob, w.restarts, w.n, nil
}

// Bytes is about what p's packed part holds in memory; the changes on top
// are not counted.
func (p *Packed) Bytes() int {
	n := cap(p.blob) + cap(p.restarts)*int(unsafe.Sizeof(restart{}))
	for _, r := range p.restarts {
		n += len(r.path)
	}
	return n
}
