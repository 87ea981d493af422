package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Open opens the spool in dir, creating dir (0700) and a first segment if
// needed, and rebuilds the index from the segment files, checking every
// frame.
//
// A torn tail of the newest segment is truncated away and logged. Other
// damage is quarantined (see the package documentation): Open then returns
// the usable spool together with a [*CorruptError] listing the lost seqs.
// Open returns a nil *Spool only with an error that prevents opening at all:
// bad options, or an I/O error.
func Open(dir string, opts Options) (*Spool, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{dir: dir, opts: opts, log: opts.Logger}
	cerr, err := s.load()
	// What a killed process wrote with AppendDeferred is in the kernel but
	// maybe not on the disk: the first Sync, Append or Close fsyncs it.
	s.needSync = len(s.segs) > 0
	s.needFull = s.needSync
	if err == nil && len(s.segs) == 0 {
		var g *segment
		if g, err = s.createSegment(segHeader{prev: 1, base: 1}); err == nil {
			s.segs = append(s.segs, g)
		}
	}
	if err != nil {
		for _, g := range s.segs {
			g.f.Close()
		}
		return nil, err
	}
	for _, g := range s.segs {
		s.bytes += g.liveBytes()
		s.entries += g.count()
	}
	if cerr != nil {
		return s, cerr
	}
	return s, nil
}

// segFile is a segment file found in the directory.
type segFile struct {
	name string
	base uint64 // from the name
}

// listSegments returns the directory's segment files in seq order, and
// removes temporary files left by a crash.
func (s *Spool) listSegments() ([]segFile, error) {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	var out []segFile
	for _, de := range des {
		name := de.Name()
		if strings.HasSuffix(name, ".seg.tmp") && de.Type().IsRegular() {
			if err := os.Remove(filepath.Join(s.dir, name)); err != nil {
				return nil, fmt.Errorf("spool: %w", err)
			}
			continue
		}
		digits, ok := strings.CutSuffix(name, ".seg")
		if !ok || len(digits) != 20 || !de.Type().IsRegular() {
			continue
		}
		base, err := strconv.ParseUint(digits, 10, 64)
		if err != nil || base == 0 {
			continue
		}
		out = append(out, segFile{name, base})
	}
	slices.SortFunc(out, func(a, b segFile) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// load reads every segment into s.segs, repairing and quarantining as it
// goes. It returns the damage found, and an error only when it cannot go on.
func (s *Spool) load() (*CorruptError, error) {
	files, err := s.listSegments()
	if err != nil {
		return nil, err
	}
	var cerr *CorruptError
	report := func(lost [][2]uint64, err error) {
		if cerr == nil {
			cerr = &CorruptError{}
		}
		cerr.add(lost, err)
	}
	var covered uint64 // losses before this seq are reported
	for i, sf := range files {
		path := filepath.Join(s.dir, sf.name)
		newest := i == len(files)-1
		var upper uint64 // seqs of this segment must be below upper; 0: unknown
		if !newest {
			upper = s.peekPrev(files[i+1])
		}
		f, b, err := readAll(path)
		if err != nil {
			return nil, err
		}
		var prevNext uint64 // seq after the previous segment's last frame; 0: none
		if len(s.segs) > 0 {
			prevNext = s.segs[len(s.segs)-1].next()
		}

		sc := decodeSegment(b)
		damage := sc.hdrErr
		if damage == nil && sc.hdr.base != sf.base {
			damage = fmt.Errorf("header: base %d does not match the name", sc.hdr.base)
		}
		headerOK := damage == nil
		// Zeros after the last frame are what Append preallocates.
		zeroTail := damage == nil && sc.stop != nil && allZero(b[sc.end:])
		if zeroTail {
			sc.stop = nil
		}
		if damage == nil && sc.stop != nil {
			if newest && !errors.Is(sc.stop, errSeq) && !laterBatch(b, sc.end+1, sc.next()) {
				if err := s.truncateTail(f, path, b, sc); err != nil {
					f.Close()
					return nil, err
				}
			} else {
				damage = fmt.Errorf("frame at offset %d: %w", sc.end, sc.stop)
			}
		}
		if damage == nil && prevNext != 0 && sc.hdr.prev != prevNext {
			if sc.hdr.prev < prevNext {
				damage = fmt.Errorf("starts at seq %d, before its predecessor ends (%d)", sc.hdr.prev, prevNext)
			} else {
				// Seqs missing between two good segments: a file was
				// deleted, or a damaged one was lost entirely.
				if sc.hdr.prev > covered {
					lost := [2]uint64{max(prevNext, covered), sc.hdr.prev - 1}
					err := fmt.Errorf("%s: seqs %s missing before it", path, formatRanges([][2]uint64{lost}, 0))
					s.log.Error("spool seqs missing before segment", "file", path, "lost", formatRanges([][2]uint64{lost}, 0))
					report([][2]uint64{lost}, err)
				}
				// Declare the hole so that the next Open does not report it again.
				sc.hdr.prev = prevNext
				if werr := s.rewriteHeader(f, sc.hdr); werr != nil {
					s.log.Warn("spool segment header not updated; the loss will be reported again", "file", path, "err", werr)
				}
			}
		}
		if damage != nil {
			f.Close()
			to, lost, lostFrom, err := s.quarantine(path, sf.base, b, sc, headerOK, prevNext, upper, damage)
			if err != nil {
				return nil, err
			}
			report(lost, fmt.Errorf("%s: %w", path, damage))
			covered = upper
			cerr.Quarantined = append(cerr.Quarantined, to)
			if lostFrom != 0 {
				cerr.LostFrom = lostFrom
			}
			continue
		}
		g := newSegment(path, f, sc.hdr)
		for _, fr := range sc.frames {
			g.add(uint32(fr.end()), fr.slen)
		}
		if zeroTail {
			g.alloc = int64(len(b))
			if !newest {
				s.release(g) // a crash came between a new segment and this
			}
		}
		s.segs = append(s.segs, g)
	}
	return cerr, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// laterBatch reports whether, at or after from, a good frame belongs to an
// Append batch that started after seq: what tells damage followed by good
// frames from a torn tail. A crash during an append may leave any of the
// batch's pages on disk and not others; good frames of that same batch after
// a bad one are still a torn tail. Its appender never saw it succeed, and no
// batch was written after it.
func laterBatch(b []byte, from int, seq uint64) bool {
	for {
		f, ok := findFrame(b, from, seq)
		if !ok {
			return false
		}
		if f.batchStart() > seq {
			return true
		}
		from = f.end()
	}
}

// peekPrev returns the prev field of a segment's header, or, if the header
// does not check out, the base in its name.
func (s *Spool) peekPrev(sf segFile) uint64 {
	f, err := os.Open(filepath.Join(s.dir, sf.name))
	if err != nil {
		return sf.base
	}
	defer f.Close()
	b := make([]byte, segHeaderSize)
	if _, err := io.ReadFull(f, b); err != nil {
		return sf.base
	}
	h, err := parseSegHeader(b)
	if err != nil || h.base != sf.base {
		return sf.base
	}
	return h.prev
}

func readAll(path string) (*os.File, []byte, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("spool: %w", err)
	}
	b, err := io.ReadAll(f)
	if err == nil && len(b) > math.MaxUint32 {
		err = fmt.Errorf("%d bytes: a spool never writes segments that large", len(b))
	}
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("spool: read %s: %w", path, err)
	}
	return f, b, nil
}

// truncateTail cuts a torn append off the newest segment.
func (s *Spool) truncateTail(f *os.File, path string, b []byte, sc segScan) error {
	err := f.Truncate(int64(sc.end))
	if err == nil {
		err = s.sync(f)
	}
	if err != nil {
		return fmt.Errorf("spool: truncate torn tail of %s: %w", path, err)
	}
	// Zeros after the torn bytes are preallocation, not part of the damage.
	torn := len(bytes.TrimRight(b[sc.end:], "\x00"))
	s.log.Warn("spool torn tail truncated", "file", path, "offset", sc.end, "bytes", torn,
		"next_seq", sc.next(), "reason", sc.stop.Error())
	return nil
}

// rewriteHeader overwrites a segment's header in place: 32 bytes within the
// first sector.
func (s *Spool) rewriteHeader(f *os.File, h segHeader) error {
	if _, err := f.WriteAt(appendSegHeader(nil, h), 0); err != nil {
		return err
	}
	return s.sync(f)
}

// quarantine renames a damaged segment to <name>.corrupt-<unix time>, copies
// the frames that check out into fresh segments (one per run of consecutive
// seqs), and returns the new name and the seqs lost: up to the next
// segment's prev, or for the newest segment up to its last good frame (what
// came after is unknown; lostFrom covers a newest segment with nothing
// readable).
//
// prevNext is the seq after the previous segment (0: none), upper the next
// segment's prev (0: this is the newest).
func (s *Spool) quarantine(path string, nameBase uint64, b []byte, sc segScan, headerOK bool,
	prevNext, upper uint64, damage error) (to string, lost [][2]uint64, lostFrom uint64, err error) {
	newest := upper == 0
	start := 0
	if headerOK {
		start = segHeaderSize
	}
	frames := salvageFrames(b, start, max(nameBase, prevNext), upper)

	// Runs of consecutive seqs, and what is missing before each: from the
	// end of the previous segment (or this one's base), less a jump the
	// header declared.
	cursor := nameBase
	if prevNext != 0 {
		cursor = prevNext
	}
	var runs [][]frame
	for _, fr := range frames {
		if n := len(runs); n > 0 && fr.seq == cursor {
			runs[n-1] = append(runs[n-1], fr)
		} else {
			lost = append(lost, subtractDeclared(cursor, fr.seq, sc.hdr, headerOK)...)
			runs = append(runs, []frame{fr})
		}
		cursor = fr.seq + 1
	}
	if len(frames) == 0 {
		if headerOK {
			lost = append(lost, subtractDeclared(cursor, nameBase, sc.hdr, headerOK)...)
			cursor = max(cursor, nameBase)
		}
		// Records may have been there, and a bad header hides a jump.
		if newest && (len(b) > segHeaderSize || !headerOK) {
			lostFrom = cursor
		}
	}
	if !newest {
		// Up to the next segment, whose prev check then finds the
		// hole covered.
		lost = append(lost, subtractDeclared(cursor, upper, sc.hdr, headerOK)...)
	}

	to = fmt.Sprintf("%s.corrupt-%d", path, time.Now().Unix())
	for n := 1; ; n++ {
		if _, err := os.Lstat(to); errors.Is(err, os.ErrNotExist) {
			break
		}
		to = fmt.Sprintf("%s.corrupt-%d.%d", path, time.Now().Unix(), n)
	}
	if err := os.Rename(path, to); err != nil {
		return "", nil, 0, fmt.Errorf("spool: quarantine %s: %w", path, err)
	}
	s.log.Error("spool segment damaged, quarantined", "file", path, "to", to, "reason", damage.Error(),
		"salvaged", len(frames), "lost", formatRanges(lost, lostFrom))

	// The fresh segments. With no good frame, an empty one keeps what the
	// header said, or the newest segment's place.
	type fresh struct {
		h    segHeader
		body []byte
	}
	var out []fresh
	prev := prevNext
	for _, r := range runs {
		if prev == 0 {
			prev = r[0].seq
		}
		var body []byte
		for _, fr := range r {
			body = append(body, b[fr.off:fr.end()]...)
		}
		out = append(out, fresh{segHeader{prev: prev, base: r[0].seq}, body})
		prev = r[len(r)-1].seq + 1
	}
	if len(runs) == 0 && (headerOK || newest) {
		base := max(nameBase, prevNext)
		if prev == 0 {
			prev = base
			if headerOK {
				prev = sc.hdr.prev
			}
		}
		out = append(out, fresh{segHeader{prev: prev, base: base}, nil})
	}
	for _, fs := range out {
		p := filepath.Join(s.dir, segName(fs.h.base))
		f, err := s.writeSegment(p, fs.h, fs.body)
		if err != nil {
			return "", nil, 0, fmt.Errorf("spool: salvage %s: %w", path, err)
		}
		g := newSegment(p, f, fs.h)
		for off := 0; off < len(fs.body); {
			fr, _ := parseFrame(fs.body, off) // checked by salvageFrames
			off = fr.end()
			g.add(uint32(segHeaderSize+off), fr.slen)
		}
		s.segs = append(s.segs, g)
	}
	if err := s.syncDir(); err != nil {
		return "", nil, 0, fmt.Errorf("spool: salvage %s: %w", path, err)
	}
	return to, lost, lostFrom, nil
}

// subtractDeclared returns [from, to) less the jump [h.prev, h.base) the
// header declares, as inclusive ranges.
func subtractDeclared(from, to uint64, h segHeader, ok bool) [][2]uint64 {
	if from >= to {
		return nil
	}
	if !ok || h.prev >= h.base || h.base <= from || h.prev >= to {
		return [][2]uint64{{from, to - 1}}
	}
	var out [][2]uint64
	if from < h.prev {
		out = append(out, [2]uint64{from, h.prev - 1})
	}
	if h.base < to {
		out = append(out, [2]uint64{h.base, to - 1})
	}
	return out
}
