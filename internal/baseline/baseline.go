// Package baseline is the agent's record of what its watched trees held:
// path → inode, size, mtime, ctime, mode, owner. Compared with a fresh walk
// it yields what changed while nobody was watching: agent downtime, a
// kernel queue overflow, directories the watch limit left unwatched.
//
// A baseline is saved whole (temp file, fsync, rename), so a crash leaves
// the previous one intact. The comparison needs no content hash: any
// change to a file's content or metadata moves its ctime, which no user
// can set.
package baseline

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"iter"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/fso-project/fso/internal/atomicfile"
	"github.com/fso-project/fso/internal/event"
)

// Entry is what the baseline knows of one path.
type Entry struct {
	Ino   uint64
	Size  int64
	Mtime int64  // ns
	Ctime int64  // ns
	Mode  uint32 // st_mode, with the file type
	UID   uint32
	GID   uint32
}

// IsDir reports whether e is a directory.
func (e Entry) IsDir() bool { return e.Mode&unix.S_IFMT == unix.S_IFDIR }

// FromStat builds an Entry from lstat(2).
func FromStat(st *unix.Stat_t) Entry {
	return Entry{Ino: st.Ino, Size: st.Size, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(), Mode: st.Mode, UID: st.Uid, GID: st.Gid}
}

// Baseline maps absolute paths to entries.
type Baseline map[string]Entry

// ErrCorrupt is wrapped when a saved baseline cannot be read back.
var ErrCorrupt = errors.New("baseline: corrupt")

const magic = "FSOBASE1"

// Save writes b to path atomically.
func Save(path string, b Baseline) error {
	return save(path, len(b), func(yield func(string, Entry) bool) {
		for _, p := range slices.Sorted(maps.Keys(b)) {
			if !yield(p, b[p]) {
				return
			}
		}
	})
}

// Save writes p to path atomically, as Save does a Baseline.
func (p *Packed) Save(path string) error {
	if len(p.over) > 0 {
		p.repack()
	}
	return save(path, p.n, p.All)
}

// save writes count entries, in path order, to path atomically.
func save(path string, count int, entries iter.Seq2[string, Entry]) error {
	var out bytes.Buffer
	w := bufio.NewWriterSize(&out, 1<<20)
	w.WriteString(magic)
	var buf [binary.MaxVarintLen64 * 8]byte
	n := binary.PutUvarint(buf[:], uint64(count))
	w.Write(buf[:n])
	for p, e := range entries {
		n := binary.PutUvarint(buf[:], uint64(len(p)))
		w.Write(buf[:n])
		w.WriteString(p)
		n = 0
		for _, v := range []uint64{e.Ino, uint64(e.Size), uint64(e.Mtime), uint64(e.Ctime), uint64(e.Mode), uint64(e.UID), uint64(e.GID)} {
			n += binary.PutUvarint(buf[n:], v)
		}
		w.Write(buf[:n])
	}
	w.Flush()
	data := binary.LittleEndian.AppendUint32(out.Bytes(), crc32.Checksum(out.Bytes(), crc32.MakeTable(crc32.Castagnoli)))
	if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("baseline: save: %w", err)
	}
	return nil
}

// Load reads a baseline saved by Save. A missing file is an empty baseline
// and os.ErrNotExist; a damaged one wraps ErrCorrupt.
func Load(path string) (Baseline, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Baseline{}, err
	}
	if len(data) < len(magic)+4 || string(data[:len(magic)]) != magic {
		return Baseline{}, fmt.Errorf("%w: %s: bad header", ErrCorrupt, path)
	}
	body, sum := data[:len(data)-4], binary.LittleEndian.Uint32(data[len(data)-4:])
	if crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)) != sum {
		return Baseline{}, fmt.Errorf("%w: %s: checksum mismatch", ErrCorrupt, path)
	}
	r := body[len(magic):]
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(r)
		if n <= 0 {
			return 0, false
		}
		r = r[n:]
		return v, true
	}
	count, ok := next()
	if !ok || count > uint64(len(r)) {
		return Baseline{}, fmt.Errorf("%w: %s: bad count", ErrCorrupt, path)
	}
	b := make(Baseline, count)
	for range count {
		l, ok := next()
		if !ok || l > uint64(len(r)) {
			return Baseline{}, fmt.Errorf("%w: %s: bad path length", ErrCorrupt, path)
		}
		p := string(r[:l])
		r = r[l:]
		var v [7]uint64
		for i := range v {
			if v[i], ok = next(); !ok {
				return Baseline{}, fmt.Errorf("%w: %s: truncated entry", ErrCorrupt, path)
			}
		}
		b[p] = Entry{Ino: v[0], Size: int64(v[1]), Mtime: int64(v[2]), Ctime: int64(v[3]), Mode: uint32(v[4]), UID: uint32(v[5]), GID: uint32(v[6])}
	}
	return b, nil
}

// Tree is one subtree to walk.
type Tree struct {
	Path      string
	Recursive bool
	SkipDir   func(path string) bool // nil: none
}

// Walk lists every path below the trees (not the roots themselves) with
// lstat(2), never following symbolic links. Paths that vanish during the
// walk are left out; other errors are returned joined, with the walk going
// on, and the directories that could not be read are listed in failed, so a
// caller does not take their missing contents for deletions.
func Walk(trees []Tree) (b Baseline, failed []string, err error) {
	b = Baseline{}
	var errs []error
	for _, t := range trees {
		err := filepath.WalkDir(t.Path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				errs = append(errs, err)
				failed = append(failed, p)
				if d != nil && d.IsDir() && p != t.Path {
					return fs.SkipDir
				}
				return nil
			}
			if p == t.Path {
				return nil
			}
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				if !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("lstat %s: %w", p, err))
				}
				return nil
			}
			b[p] = FromStat(&st)
			if d.IsDir() && (!t.Recursive || (t.SkipDir != nil && t.SkipDir(p))) {
				return fs.SkipDir
			}
			return nil
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	return b, failed, errors.Join(errs...)
}

// Change is one difference between two baselines.
type Change struct {
	Type    event.Type
	Path    string
	OldPath string // Rename
	IsDir   bool
}

// Diff returns what changed from old to cur, within the trees (old entries
// outside them are not reported deleted). A path that disappeared while a
// new one appeared with its inode is a rename. Order: deletes of paths
// that now hold another file (children first), renames, creates (parents
// first), modifies and attribute changes, deletes (children first).
func Diff(old, cur Baseline, trees []Tree) []Change {
	inTrees := func(p string) bool {
		for _, t := range trees {
			if strings.HasPrefix(p, strings.TrimSuffix(t.Path, "/")+"/") {
				return true
			}
		}
		return false
	}
	var created, deleted, replaced []string
	var changed []Change
	for p, e := range cur {
		o, ok := old[p]
		switch {
		case !ok:
			created = append(created, p)
		case o.Ino != e.Ino || o.Mode&unix.S_IFMT != e.Mode&unix.S_IFMT:
			// Replaced by another file: gone, then new (or renamed here).
			replaced = append(replaced, p)
			created = append(created, p)
		case e.IsDir():
			if o.Mode != e.Mode || o.UID != e.UID || o.GID != e.GID {
				changed = append(changed, Change{Type: event.Attrib, Path: p, IsDir: true})
			}
		case o.Size != e.Size || o.Mtime != e.Mtime:
			changed = append(changed, Change{Type: event.Modify, Path: p})
		case o.Ctime != e.Ctime || o.Mode != e.Mode || o.UID != e.UID || o.GID != e.GID:
			changed = append(changed, Change{Type: event.Attrib, Path: p})
		}
	}
	for p := range old {
		if _, ok := cur[p]; !ok && inTrees(p) {
			deleted = append(deleted, p)
		}
	}
	// Pair renames by inode.
	byIno := map[uint64]string{}
	for _, p := range deleted {
		byIno[old[p].Ino] = p
	}
	var renames []Change
	renamedFrom := map[string]bool{}
	keepCreated := created[:0]
	slices.Sort(created)
	for _, p := range created {
		e := cur[p]
		// The kernel reuses a deleted file's inode at once; a rename keeps
		// the mtime, a new file does not have its predecessor's.
		if from, ok := byIno[e.Ino]; ok && old[from].Mode&unix.S_IFMT == e.Mode&unix.S_IFMT && old[from].Mtime == e.Mtime {
			delete(byIno, e.Ino)
			renamedFrom[from] = true
			renames = append(renames, Change{Type: event.Rename, Path: p, OldPath: from, IsDir: e.IsDir()})
			continue
		}
		keepCreated = append(keepCreated, p)
	}
	// A replaced path's delete comes before what took its place, so that
	// the records end with the path present.
	slices.Sort(replaced)
	var out []Change
	for i := len(replaced) - 1; i >= 0; i-- {
		out = append(out, Change{Type: event.Delete, Path: replaced[i], IsDir: old[replaced[i]].IsDir()})
	}
	out = append(out, renames...)
	for _, p := range keepCreated {
		out = append(out, Change{Type: event.Create, Path: p, IsDir: cur[p].IsDir()})
	}
	slices.SortFunc(changed, func(a, b Change) int { return strings.Compare(a.Path, b.Path) })
	out = append(out, changed...)
	slices.Sort(deleted)
	for i := len(deleted) - 1; i >= 0; i-- {
		p := deleted[i]
		if !renamedFrom[p] {
			out = append(out, Change{Type: event.Delete, Path: p, IsDir: old[p].IsDir()})
		}
	}
	return out
}
