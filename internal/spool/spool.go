package spool

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Entry is one record in the spool.
type Entry struct {
	Seq     uint64
	Subject string // NATS subject, < 256 bytes
	Data    []byte // payload, up to 8 MiB
}

// Options tunes a [Spool]. The zero value is usable.
type Options struct {
	SegmentBytes int64        // roll to a new segment file past this size; default 16 MiB, at most 1 GiB
	MaxBytes     int64        // bound on untrimmed bytes; Append returns ErrFull past it; default 1 GiB
	Logger       *slog.Logger // nil = discard
}

// Stats describes a spool's contents.
type Stats struct {
	Entries  int    // untrimmed entries
	Bytes    int64  // encoded size of the untrimmed entries
	Segments int    // segment files
	FirstSeq uint64 // as [Spool.First]
	NextSeq  uint64 // as [Spool.NextSeq]
}

const (
	defaultSegmentBytes = 16 << 20
	defaultMaxBytes     = 1 << 30
	maxSegmentBytes     = 1 << 30
	maxBatchBytes       = 1 << 30 // keeps every offset in a segment below 4 GiB
	maxKeptBuffer       = 16 << 20

	// preallocStep is how far ahead of its frames the newest segment is
	// filled with zeros. Appends then overwrite blocks the file already
	// has, and fdatasync need not commit the journal for a new size: on
	// ext4 it costs about half the CPU of an fsync after an extending
	// write (docs/performance.md).
	preallocStep = 1 << 20
)

// zeros is what preallocation writes. Never written to, it costs no memory.
var zeros [preallocStep]byte

func (o Options) withDefaults() (Options, error) {
	switch {
	case o.SegmentBytes == 0:
		o.SegmentBytes = defaultSegmentBytes
	case o.SegmentBytes < 0 || o.SegmentBytes > maxSegmentBytes:
		return o, fmt.Errorf("spool: SegmentBytes %d: want 1 to %d", o.SegmentBytes, int64(maxSegmentBytes))
	}
	switch {
	case o.MaxBytes == 0:
		o.MaxBytes = defaultMaxBytes
	case o.MaxBytes < 0:
		return o, fmt.Errorf("spool: MaxBytes %d: want a positive size", o.MaxBytes)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// Spool is an open spool directory. Its methods are safe for concurrent use;
// appends are serialized.
type Spool struct {
	dir  string
	opts Options
	log  *slog.Logger

	// appendMu serializes the writers (Append, SetNextSeq, Close) and
	// guards the fields below it. Writers do their I/O holding only
	// appendMu, so Read and Trim proceed during an fsync.
	appendMu sync.Mutex
	buf      []byte   // encoding scratch
	dirty    *segment // holds bytes past its last frame: a failed append could not truncate them
	// needSync: AppendDeferred wrote to the newest segment since its last
	// fsync; needFull: one of those writes grew the file, so the sync must
	// be an fsync, not an fdatasync.
	needSync, needFull bool

	// mu guards the index. The newest segment's offs only change under
	// appendMu and mu both.
	mu      sync.RWMutex
	segs    []*segment // in seq order; never empty while open
	bytes   int64      // encoded size of untrimmed frames
	entries int        // untrimmed frames
	closed  bool
	// unsynced are the deferred batches neither synced nor trimmed, oldest
	// first: what Unsynced reports.
	unsynced []mark

	fsyncs    atomic.Uint64 // file and directory fsyncs, see Syncs
	datasyncs atomic.Uint64 // of which fdatasyncs, for tests
}

// mark is a batch written by AppendDeferred: its last seq, and when.
type mark struct {
	last uint64
	at   time.Time
}

// segment is one segment file and the index of its frames.
type segment struct {
	path  string
	f     *os.File // read-write
	alloc int64    // file size: size() plus a zero-filled preallocation
	base  uint64
	offs  []uint32 // offs[i] is where frame i starts; the last element is where the last frame ends
	slen  []uint8  // subject length of frame i
	first int      // frames before first are trimmed
}

func (g *segment) count() int          { return len(g.slen) }
func (g *segment) next() uint64        { return g.base + uint64(len(g.slen)) }
func (g *segment) size() int64         { return int64(g.offs[len(g.offs)-1]) }
func (g *segment) frameSize(i int) int { return int(g.offs[i+1] - g.offs[i]) }
func (g *segment) dataLen(i int) int   { return g.frameSize(i) - frameHeaderSize - int(g.slen[i]) }
func (g *segment) liveBytes() int64    { return int64(g.offs[len(g.offs)-1] - g.offs[g.first]) }
func (g *segment) add(off uint32, s int) {
	g.offs = append(g.offs, off)
	g.slen = append(g.slen, uint8(s))
}

func newSegment(path string, f *os.File, h segHeader) *segment {
	return &segment{path: path, f: f, alloc: segHeaderSize, base: h.base, offs: []uint32{segHeaderSize}}
}

func segName(base uint64) string { return fmt.Sprintf("%020d.seg", base) }

// NextSeq returns the seq the next appended entry must have: one more than
// the last seq ever appended, or set by SetNextSeq; 1 for a new spool.
func (s *Spool) NextSeq() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.nextSeq()
}

func (s *Spool) nextSeq() uint64 { return s.segs[len(s.segs)-1].next() }

// First returns the lowest untrimmed seq, or NextSeq when the spool is empty.
func (s *Spool) First() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.firstSeq()
}

func (s *Spool) firstSeq() uint64 {
	for _, g := range s.segs {
		if g.first < g.count() {
			return g.base + uint64(g.first)
		}
	}
	return s.nextSeq()
}

// Stats returns the spool's current counts.
func (s *Spool) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return Stats{Entries: s.entries, Bytes: s.bytes, Segments: len(s.segs), FirstSeq: s.firstSeq(), NextSeq: s.nextSeq()}
}

// Syncs returns how many file and directory fsyncs s has done since Open:
// about one per Append and per Sync that had something to sync.
func (s *Spool) Syncs() uint64 { return s.fsyncs.Load() }

// SetNextSeq moves NextSeq forward to n, durably: it starts a new segment
// whose header records n. It fails if n is below NextSeq.
func (s *Spool) SetNextSeq(n uint64) error {
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	s.mu.RLock()
	closed, next := s.closed, s.nextSeq()
	s.mu.RUnlock()
	switch {
	case closed:
		return errClosed
	case n < next:
		return fmt.Errorf("spool: set next seq %d: below next seq %d", n, next)
	case n == next:
		return nil
	}
	if err := s.cleanTail(); err != nil {
		return err
	}
	// Released while still the newest, which Trim never closes.
	s.mu.RLock()
	old := s.segs[len(s.segs)-1]
	s.mu.RUnlock()
	if err := s.syncPending(old); err != nil {
		return err
	}
	s.release(old)
	g, err := s.createSegment(segHeader{prev: next, base: n})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.segs = append(s.segs, g)
	s.mu.Unlock()
	s.log.Info("spool seq moved forward", "from", next, "to", n)
	return nil
}

// Append writes entries durably: it returns once they are fsynced. entries[i].Seq
// must be NextSeq()+i. All frames go to one segment with one write and one
// fsync; starting a new segment first costs a file and a directory fsync more.
//
// Append returns [ErrFull] if the untrimmed entries would exceed
// [Options.MaxBytes], and another error if the seqs are wrong or an entry is
// too large; nothing is written then. When the write or the fsync fails (a
// full disk…), the segment is truncated back to its size before the call, and
// the error names the file; the spool stays usable.
//
// Append also makes durable what AppendDeferred wrote before it.
func (s *Spool) Append(entries []Entry) error { return s.append(entries, true) }

// AppendDeferred is Append without the fsync: the entries are written,
// readable and counted when it returns, and durable after the next Sync,
// Append, SetNextSeq, Close or roll to a new segment. A crash of the process
// loses none of them (the kernel holds the writes); a crash of the machine
// may, and then leaves a torn or zeroed tail that Open cuts off. [Spool.Unsynced]
// says how long the oldest has been waiting.
//
// The agent uses it when the recorder usually makes records durable in the
// audit log sooner than an fsync here would matter (docs/performance.md).
func (s *Spool) AppendDeferred(entries []Entry) error { return s.append(entries, false) }

func (s *Spool) append(entries []Entry, durable bool) error {
	if len(entries) == 0 {
		return nil
	}
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	s.mu.RLock()
	closed, g, used := s.closed, s.segs[len(s.segs)-1], s.bytes
	s.mu.RUnlock()
	if closed {
		return errClosed
	}
	next := g.next()
	var n int64
	for i := range entries {
		e := &entries[i]
		if e.Seq != next+uint64(i) {
			return fmt.Errorf("spool: append: entry %d has seq %d, want %d", i, e.Seq, next+uint64(i))
		}
		if len(e.Subject) > maxSubject || len(e.Data) > maxData {
			return fmt.Errorf("spool: append: entry %d (seq %d): subject of %d bytes or data of %d bytes: want at most %d and %d",
				i, e.Seq, len(e.Subject), len(e.Data), maxSubject, maxData)
		}
		n += int64(frameSize(e))
	}
	if n > maxBatchBytes {
		return fmt.Errorf("spool: append: batch of %d bytes: want at most %d", n, int64(maxBatchBytes))
	}
	if used+n > s.opts.MaxBytes {
		return fmt.Errorf("%w: %d bytes untrimmed, batch of %d, bound %d", ErrFull, used, n, s.opts.MaxBytes)
	}
	if err := s.cleanTail(); err != nil {
		return err
	}
	if g.count() > 0 && g.size()+n > s.opts.SegmentBytes {
		// Only the newest segment may hold unsynced frames.
		if err := s.syncPending(g); err != nil {
			return fmt.Errorf("spool: append: %w", err)
		}
		s.release(g) // while still the newest, which Trim never closes
		ng, err := s.createSegment(segHeader{prev: next, base: next})
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.segs = append(s.segs, ng)
		s.mu.Unlock()
		g = ng
	}

	buf := s.buf[:0]
	for i := range entries {
		buf = appendFrame(buf, &entries[i], uint32(i))
	}
	if cap(buf) <= maxKeptBuffer {
		s.buf = buf
	} else {
		s.buf = nil
	}
	off := g.size()
	grew := off+int64(len(buf)) > g.alloc
	_, err := g.f.WriteAt(buf, off)
	if err == nil && grew {
		s.preallocate(g, off+int64(len(buf)))
	}
	switch {
	case err != nil:
	case !durable:
		s.needSync = true
		s.needFull = s.needFull || grew
	case grew || s.needFull:
		err = s.sync(g.f)
	default:
		err = s.syncData(g.f)
	}
	if err != nil {
		g.alloc = off
		if terr := g.f.Truncate(off); terr != nil {
			s.dirty = g
			s.log.Error("spool segment not truncated after a failed append; will retry", "file", g.path, "err", terr)
		}
		return fmt.Errorf("spool: append: %w", err) // err names the file
	}

	s.mu.Lock()
	o := uint32(off)
	for i := range entries {
		o += uint32(frameSize(&entries[i]))
		g.add(o, len(entries[i].Subject))
	}
	s.bytes += n
	s.entries += len(entries)
	if durable {
		s.needSync, s.needFull = false, false
		s.unsynced = s.unsynced[:0]
	} else {
		s.unsynced = append(s.unsynced, mark{last: entries[len(entries)-1].Seq, at: time.Now()})
	}
	s.mu.Unlock()
	return nil
}

// Sync makes durable what AppendDeferred wrote: one fsync of the newest
// segment, or none if nothing is waiting for one.
func (s *Spool) Sync() error {
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	g, closed := s.newest()
	if closed {
		return errClosed
	}
	if err := s.syncPending(g); err != nil {
		return fmt.Errorf("spool: sync: %w", err)
	}
	return nil
}

// newest returns the segment appended to, and whether s is closed.
func (s *Spool) newest() (*segment, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.segs[len(s.segs)-1], s.closed
}

// syncPending fsyncs g, the newest segment, if AppendDeferred wrote to it
// since its last sync. appendMu held.
func (s *Spool) syncPending(g *segment) error {
	if !s.needSync {
		return nil
	}
	var err error
	if s.needFull {
		err = s.sync(g.f)
	} else {
		err = s.syncData(g.f)
	}
	if err != nil {
		return err // names the file
	}
	s.needSync, s.needFull = false, false
	s.mu.Lock()
	s.unsynced = s.unsynced[:0]
	s.mu.Unlock()
	return nil
}

// Unsynced returns when the oldest batch written by AppendDeferred that is
// neither synced nor trimmed was appended: the zero time if there is none.
// Trimming, which the agent does once the recorder has a record in the
// audit log, takes a batch off without a sync.
func (s *Spool) Unsynced() time.Time {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.unsynced) == 0 {
		return time.Time{}
	}
	return s.unsynced[0].at
}

// cleanTail truncates what a failed append left, if it could not then. No
// write may come before it succeeds: frames of the failed batch past the next
// one would look valid.
func (s *Spool) cleanTail() error {
	if g := s.dirty; g != nil {
		if err := g.f.Truncate(g.size()); err != nil {
			return fmt.Errorf("spool: truncate after a failed append: %w", err)
		}
		g.alloc = g.size()
		s.dirty = nil
	}
	return nil
}

// Read returns entries with Seq >= max(from, First()) in seq order: at most
// maxEntries of them, and at most maxBytes of Data, except that the first
// entry is returned whatever its size. maxEntries <= 0 or maxBytes <= 0 means
// no such limit. Read returns an empty slice when there is nothing to read.
//
// Contiguous entries are read with one pread per segment. The returned Data
// slices share buffers with each other but not with the spool.
//
// A frame damaged since Open yields the entries before it and a
// [*CorruptError] naming its seq.
func (s *Spool) Read(from uint64, maxEntries int, maxBytes int) ([]Entry, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errClosed
	}
	out := []Entry{}
	dataBytes := 0
	full := false
	i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].next() > from })
	for ; i < len(s.segs) && !full; i++ {
		g := s.segs[i]
		j := g.first
		if from > g.base {
			j = max(j, int(from-g.base))
		}
		k := j
		for ; k < g.count(); k++ {
			n := len(out) + k - j
			if maxEntries > 0 && n >= maxEntries {
				full = true
				break
			}
			d := g.dataLen(k)
			if maxBytes > 0 && n > 0 && dataBytes+d > maxBytes {
				full = true
				break
			}
			dataBytes += d
		}
		if k == j {
			continue
		}
		var err error
		if out, err = s.readRange(out, g, j, k); err != nil {
			return out, err
		}
	}
	return out, nil
}

// readRange appends frames j..k-1 of g to out, reading them with one pread.
func (s *Spool) readRange(out []Entry, g *segment, j, k int) ([]Entry, error) {
	start := int64(g.offs[j])
	buf := make([]byte, int64(g.offs[k])-start)
	if _, err := g.f.ReadAt(buf, start); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return out, fmt.Errorf("spool: read %s: %w", g.path, err)
	}
	off := 0
	for i := j; i < k; i++ {
		seq := g.base + uint64(i)
		f, err := parseFrame(buf, off)
		if err == nil && (f.seq != seq || f.size != g.frameSize(i)) {
			err = errSeq
		}
		if err != nil {
			err = fmt.Errorf("%s: frame at offset %d: %w", g.path, start+int64(off), err)
			s.log.Error("spool frame damaged", "file", g.path, "seq", seq, "err", err)
			return out, &CorruptError{Lost: [][2]uint64{{seq, seq}}, Err: err}
		}
		out = append(out, Entry{Seq: seq, Subject: string(f.subject(buf)), Data: f.data(buf)})
		off = f.end()
	}
	return out, nil
}

// Trim forgets the entries with Seq <= upTo and deletes the segment files
// all of whose entries are trimmed, oldest first, except the newest. It is
// idempotent; upTo may lie past the last entry. Entries appended later are
// not affected. An error means a file could not be deleted; it is forgotten
// all the same.
//
// Trimmed entries whose segment file is still there (or, after a crash, whose
// deletion did not reach the disk) are back after [Open]. Deletions are not
// fsynced: filesystems that journal metadata in order (ext4, XFS) never keep
// a later deletion and lose an earlier one, which would look like a gap.
func (s *Spool) Trim(upTo uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	for _, g := range s.segs {
		n := g.count()
		if g.first == n {
			continue
		}
		if upTo < g.base+uint64(g.first) {
			break
		}
		k := n
		if upTo-g.base < uint64(n) {
			k = int(upTo-g.base) + 1
		}
		s.bytes -= int64(g.offs[k] - g.offs[g.first])
		s.entries -= k - g.first
		g.first = k
		if k < n {
			break
		}
	}
	i := 0
	for i < len(s.unsynced) && s.unsynced[i].last <= upTo {
		i++
	}
	s.unsynced = append(s.unsynced[:0], s.unsynced[i:]...)
	var errs []error
	i = 0
	for ; i < len(s.segs)-1 && s.segs[i].first == s.segs[i].count(); i++ {
		g := s.segs[i]
		if err := errors.Join(g.f.Close(), os.Remove(g.path)); err != nil {
			errs = append(errs, fmt.Errorf("spool: trim: %w", err))
		}
		s.log.Debug("spool segment deleted", "file", g.path)
	}
	s.segs = append(s.segs[:0:0], s.segs[i:]...)
	return errors.Join(errs...)
}

// Close syncs what AppendDeferred wrote and closes the segment files. The
// spool is unusable afterwards.
func (s *Spool) Close() error {
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	g, closed := s.newest()
	if closed {
		return nil
	}
	var errs []error
	if err := s.syncPending(g); err != nil {
		errs = append(errs, fmt.Errorf("spool: close: %w", err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.release(g)
	for _, g := range s.segs {
		errs = append(errs, g.f.Close())
	}
	return errors.Join(errs...)
}

// createSegment creates an empty segment durably: header written to a
// temporary file, fsynced, renamed into place, directory fsynced.
func (s *Spool) createSegment(h segHeader) (*segment, error) {
	path := filepath.Join(s.dir, segName(h.base))
	f, err := s.writeSegment(path, h, nil)
	if err == nil {
		err = s.syncDir()
		if err != nil {
			f.Close()
			os.Remove(path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("spool: new segment: %w", err)
	}
	s.log.Debug("spool segment created", "file", path, "prev", h.prev, "base", h.base)
	return newSegment(path, f, h), nil
}

// writeSegment writes a segment file with header h and the given frames
// through a fsynced temporary file renamed into place, and returns it open.
// The caller fsyncs the directory.
func (s *Spool) writeSegment(path string, h segHeader, frames []byte) (*os.File, error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	b := appendSegHeader(make([]byte, 0, segHeaderSize+len(frames)), h)
	b = append(b, frames...)
	if _, err = f.Write(b); err == nil {
		if err = s.sync(f); err == nil {
			err = os.Rename(tmp, path)
		}
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, err
	}
	// Reopen under the final name, which errors will then carry.
	f.Close()
	return os.OpenFile(path, os.O_RDWR, 0)
}

// preallocate extends g past end, where its frames now end, with zeros:
// preallocStep, but not past SegmentBytes unless a batch already is. It is
// an optimization: on failure (a disk too full for the step) the zeros
// written are cut off again, and the append goes on without them.
func (s *Spool) preallocate(g *segment, end int64) {
	g.alloc = end
	n := min(int64(preallocStep), s.opts.SegmentBytes-end)
	if n <= 0 {
		return
	}
	if _, err := g.f.WriteAt(zeros[:n], end); err != nil {
		// What was written is zeros, harmless if the truncate fails too:
		// the next extension overwrites them, Open takes them for
		// preallocation.
		g.f.Truncate(end)
		s.log.Debug("spool preallocation failed", "file", g.path, "err", err)
		return
	}
	g.alloc = end + n
}

// release gives back the zeros past g's last frame: a segment no longer
// appended to keeps only its frames. Not fsynced: a crash that loses the
// truncation leaves a zero tail, which Open takes for what it is.
func (s *Spool) release(g *segment) {
	if g.alloc <= g.size() {
		return
	}
	if err := g.f.Truncate(g.size()); err != nil {
		s.log.Warn("spool preallocation not released", "file", g.path, "err", err)
		return
	}
	g.alloc = g.size()
}

func (s *Spool) sync(f *os.File) error {
	s.fsyncs.Add(1)
	return f.Sync()
}

// syncData is sync for a write that changed no metadata but the times.
func (s *Spool) syncData(f *os.File) error {
	s.fsyncs.Add(1)
	s.datasyncs.Add(1)
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
	}
	return nil
}

func (s *Spool) syncDir() error {
	d, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	err = s.sync(d)
	return errors.Join(err, d.Close())
}
