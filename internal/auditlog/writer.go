package auditlog

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrCorrupt is wrapped by the errors of [Open] and [Scan] when a segment
// holds a bad line that is not a torn tail.
var ErrCorrupt = errors.New("auditlog: corrupt")

// ErrInvalidRecord is wrapped by [Writer.Append] when a record cannot become
// a line.
var ErrInvalidRecord = errors.New("auditlog: invalid record")

// ErrClosed is returned by the methods of a closed [Writer].
var ErrClosed = errors.New("auditlog: writer closed")

// DefaultSegmentBytes is the segment size used when Options.SegmentBytes is 0.
const DefaultSegmentBytes = 64 << 20

// Options tune a [Writer]. The zero value is usable.
type Options struct {
	// SegmentBytes: start a new segment once the current one reaches this
	// size (checked at Sync). Default DefaultSegmentBytes.
	SegmentBytes int64
	// Now gives recorded_at; default time.Now.
	Now func() time.Time
	// Logger receives the repair of a torn tail; nil discards.
	Logger *slog.Logger
}

// Writer appends records to the audit log in a directory. Its methods may
// be called from several goroutines. Only one Writer may have a directory
// open at a time, in any process.
type Writer struct {
	mu   sync.Mutex
	dir  string
	dirf *os.File // holds the lock; synced after a segment is created
	opts Options
	log  *slog.Logger

	f           *os.File // current segment; nil: the next Sync creates segment seg
	seg         uint64
	size        int64 // durable bytes of f
	lines       int64 // durable lines of f
	dirty       bool  // f may hold bytes past size
	needDirSync bool  // f was created and the directory not yet synced

	head     [hexLen]byte // hash of the last durable line
	headSeg  string
	headLine int64
	empty    bool // no durable line yet

	buf      []byte // lines appended since the last Sync
	bufLines int64
	bufHead  [hexLen]byte // hash of the last line in buf (or head)
	closed   bool

	noFallocate bool  // tests: reach the partial-write path
	reserved    int64 // the segment's space is allocated up to here
}

// Open opens the audit log in dir for appending, creating dir (0750) if
// needed. It validates the last segment from its start, including its link
// to the previous segment's last line. A torn tail (an incomplete last
// line, or trailing lines that are not validly sealed, with no validly
// sealed line after them) is left by a crash during Sync and is truncated
// away and logged. Any other bad line is an error wrapping [ErrCorrupt]
// that names the segment and line; nothing is changed then. Open fails if
// another Writer has dir open.
func Open(dir string, opts Options) (*Writer, error) {
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	dirf, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	if err := unix.Flock(int(dirf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		dirf.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("open audit log %s: in use by another writer", dir)
		}
		return nil, fmt.Errorf("open audit log %s: lock: %w", dir, err)
	}
	w := &Writer{dir: dir, dirf: dirf, opts: opts, log: opts.Logger}
	if err := w.recover(); err != nil {
		if w.f != nil {
			w.f.Close()
		}
		dirf.Close()
		return nil, err
	}
	w.bufHead = w.head
	return w, nil
}

// recover finds the chain head and repairs a torn tail.
func (w *Writer) recover() error {
	segs, err := listSegments(w.dir)
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	w.head, w.empty, w.seg = zeroHash, true, 1
	if len(segs) == 0 {
		return nil
	}
	last := segs[len(segs)-1]
	w.seg = last.n

	// The chain head before the last segment: the last line of the
	// nearest non-empty segment before it.
	checkFirst := last.n == 1
	for i := len(segs) - 2; i >= 0; i-- {
		h, ok, err := segmentTailHash(segPath(w.dir, segs[i].n), segs[i].size)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrCorrupt, segs[i].name, err)
		}
		checkFirst = true
		if ok {
			w.head, w.headSeg, w.empty = h, segs[i].name, false
			break
		}
	}

	path := segPath(w.dir, last.n)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	// A crashed writer may have created this segment without syncing the
	// directory: the first Sync does it.
	w.f, w.needDirSync = f, true
	lr := newLineReader(f)
	var (
		off, good       int64
		lineNo, badLine int64
		badReason       string
		chain           = w.head
	)
	for {
		line, n, complete, err := lr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("open audit log: read %s: %w", path, err)
		}
		lineNo++
		var p lineParts
		var perr error
		isSealed := false
		if complete && line != nil {
			p, perr = splitLine(line[:len(line)-1])
			isSealed = perr == nil && p.sealed()
		}
		switch {
		case badLine > 0:
			if isSealed {
				return fmt.Errorf("%w: %s line %d: %s, followed by a valid line %d", ErrCorrupt, last.name, badLine, badReason, lineNo)
			}
		case !isSealed:
			badLine, badReason = lineNo, lineProblem(line, complete, perr)
		case (lineNo > 1 || checkFirst) && string(p.prev) != string(chain[:]):
			return fmt.Errorf("%w: %s line %d: chain broken", ErrCorrupt, last.name, lineNo)
		default:
			copy(chain[:], p.hash)
			good = off + n
			w.lines = lineNo
		}
		off += n
	}
	if badLine > 0 {
		if err := f.Truncate(good); err != nil {
			return fmt.Errorf("open audit log: repair torn tail: %w", err)
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return fmt.Errorf("open audit log: repair torn tail: sync %s: %w", path, err)
		}
		w.log.Warn("torn tail repaired", "segment", last.name, "line", badLine, "reason", badReason, "bytes_removed", off-good)
	}
	w.size = good
	if w.lines > 0 {
		w.head, w.headSeg, w.headLine, w.empty = chain, last.name, w.lines, false
	} else if !w.empty {
		// The last segment is empty: the head is in an earlier one.
		if w.headLine, err = countLines(segPath(w.dir, mustSegNum(w.headSeg))); err != nil {
			return fmt.Errorf("open audit log: %w", err)
		}
	}
	if w.size >= w.opts.SegmentBytes {
		w.rotate()
	}
	return nil
}

func mustSegNum(name string) uint64 {
	n, _ := parseSegName(name)
	return n
}

// lineProblem says why a line that is not validly sealed is bad.
func lineProblem(line []byte, complete bool, perr error) string {
	switch {
	case !complete:
		return "incomplete line"
	case line == nil:
		return "line too long"
	case perr != nil:
		return "unparsable"
	}
	return "hash mismatch"
}

// segmentTailHash returns the hash of the last line of a segment; ok is
// false when the segment is empty.
func segmentTailHash(path string, size int64) (h [hexLen]byte, ok bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return h, false, err
	}
	defer f.Close()
	line, err := lastLine(f, size)
	if err != nil || line == nil {
		return h, false, err
	}
	p, err := splitLine(line)
	if err == nil && !p.wellFormed() {
		err = errors.New("hash is not hex")
	}
	if err != nil {
		return h, false, fmt.Errorf("last line: %w", err)
	}
	copy(h[:], p.hash)
	return h, true, nil
}

// Append validates records and buffers their lines; nothing is durable
// until [Writer.Sync]. Each record must be one compact JSON object on one
// line without the members recorded_at, prev and hash. If any record is
// invalid, Append buffers none and returns an error wrapping
// [ErrInvalidRecord] that gives its index.
func (w *Writer) Append(records ...[]byte) error {
	for i, rec := range records {
		if err := validateRecord(rec); err != nil {
			return fmt.Errorf("append record %d: %w", i, err)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	for _, rec := range records {
		w.buf, w.bufHead = appendLine(w.buf, rec, w.opts.Now(), &w.bufHead)
		w.bufLines++
	}
	return nil
}

// Sync writes the buffered lines to the current segment and syncs it to
// disk (and the directory, when it created the segment); the lines are
// durable when it returns nil. Past Options.SegmentBytes the next Sync
// starts a new segment.
//
// On a write or sync error (ENOSPC, say) Sync truncates the segment back to
// its last durable size, drops the buffered lines and returns the error,
// naming the file. The chain head stays at the last durable line and the
// Writer stays usable: Append the records again and Sync later.
func (w *Writer) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if len(w.buf) == 0 {
		return nil
	}
	if err := w.write(); err != nil {
		w.drop()
		return err
	}
	w.size += int64(len(w.buf))
	w.lines += w.bufLines
	w.head, w.headSeg, w.headLine, w.empty = w.bufHead, segName(w.seg), w.lines, false
	w.drop()
	if w.size >= w.opts.SegmentBytes {
		w.rotate()
	}
	return nil
}

// drop forgets the buffered lines.
func (w *Writer) drop() {
	if cap(w.buf) > 4<<20 {
		w.buf = nil
	}
	w.buf, w.bufLines, w.bufHead = w.buf[:0], 0, w.head
}

// rotate closes the current segment; the next Sync creates the next one.
func (w *Writer) rotate() {
	if w.f != nil {
		w.release()
		if err := w.f.Close(); err != nil {
			w.log.Warn("close segment", "segment", segName(w.seg), "err", err)
		}
	}
	w.f, w.seg, w.size, w.lines, w.reserved = nil, w.seg+1, 0, 0, 0
}

// reserveStep is how much space past the end of the segment Sync reserves
// at a time.
const reserveStep = 1 << 20

// release gives back the space reserved past the end of the segment:
// truncating to the size frees the blocks beyond it. Always, not only when
// Sync reserved more than it wrote: a partly failed fallocate, or a run
// that crashed, may have left blocks there too.
func (w *Writer) release() {
	if !w.noFallocate {
		if err := w.f.Truncate(w.size); err != nil {
			w.log.Warn("release reserved space", "segment", segName(w.seg), "err", err)
		}
	}
	w.reserved = 0
}

// write makes the buffered lines durable or leaves the segment at its
// durable size (or marked dirty when even that failed).
func (w *Writer) write() error {
	path := segPath(w.dir, w.seg)
	if w.f == nil {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
		if err != nil {
			return fmt.Errorf("create segment %s: %w", path, unwrapPath(err))
		}
		w.f, w.size, w.lines, w.needDirSync = f, 0, 0, true
	}
	if w.dirty {
		if err := w.truncate(); err != nil {
			return fmt.Errorf("truncate %s: %w", path, err)
		}
	}
	fd := int(w.f.Fd())
	if end := w.size + int64(len(w.buf)); !w.noFallocate && end > w.reserved {
		// Reserve the space first, so that a full disk refuses the whole
		// batch instead of taking part of it. Ahead, reserveStep at a time:
		// an fallocate per batch cost more CPU than its fdatasync's
		// journal work otherwise does. Near a full disk, just the batch.
		err := unix.Fallocate(fd, unix.FALLOC_FL_KEEP_SIZE, w.size, max(int64(len(w.buf)), reserveStep))
		w.reserved = w.size + max(int64(len(w.buf)), reserveStep)
		if (errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)) && int64(len(w.buf)) < reserveStep {
			err = unix.Fallocate(fd, unix.FALLOC_FL_KEEP_SIZE, w.size, int64(len(w.buf)))
			w.reserved = end
		}
		if err != nil {
			w.reserved = 0
			if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("allocate %s: %w", path, err)
			}
		}
	}
	if _, err := w.f.WriteAt(w.buf, w.size); err != nil {
		return w.undo(fmt.Errorf("write %s: %w", path, unwrapPath(err)))
	}
	if err := unix.Fdatasync(fd); err != nil {
		return w.undo(fmt.Errorf("sync %s: %w", path, err))
	}
	if w.needDirSync {
		if err := w.dirf.Sync(); err != nil {
			return w.undo(fmt.Errorf("sync %s: %w", w.dir, unwrapPath(err)))
		}
		w.needDirSync = false
	}
	return nil
}

// undo truncates the segment back to its durable size after err.
func (w *Writer) undo(err error) error {
	w.dirty = true
	if terr := w.truncate(); terr != nil {
		return errors.Join(err, fmt.Errorf("truncate %s: %w", w.f.Name(), terr))
	}
	return err
}

func (w *Writer) truncate() error {
	w.reserved = 0 // the truncate frees it
	if err := w.f.Truncate(w.size); err != nil {
		return unwrapPath(err)
	}
	if err := unix.Fdatasync(int(w.f.Fd())); err != nil {
		return err
	}
	w.dirty = false
	return nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Head returns the last durable line: its segment's file name, its line
// number within the segment and its hash. For an empty log it returns "",
// 0, "".
func (w *Writer) Head() (segment string, line int64, hash string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.empty {
		return "", 0, ""
	}
	return w.headSeg, w.headLine, string(w.head[:])
}

// Close releases the log. Lines appended since the last successful Sync
// are discarded.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	w.buf = nil
	var errs []error
	if w.f != nil {
		w.release()
		errs = append(errs, w.f.Close())
	}
	errs = append(errs, w.dirf.Close())
	return errors.Join(errs...)
}
