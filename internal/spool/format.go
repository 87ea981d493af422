package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// The on-disk format; see the package documentation.
const (
	segMagic        = "FSOSPOOL"
	segVersion      = 1
	segHeaderSize   = 32
	frameMagic      = "\xf5SPF"
	frameHeaderSize = 32

	maxSubject = 255     // subject length fits in one byte
	maxData    = 8 << 20 // bytes of Data in one entry
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Reasons a frame or header does not decode.
var (
	errShort      = errors.New("truncated")
	errMagic      = errors.New("bad magic")
	errHeaderCRC  = errors.New("header checksum mismatch")
	errBodyCRC    = errors.New("checksum mismatch")
	errFrameField = errors.New("bad field")
	errSeq        = errors.New("seq out of order")
)

// segHeader is the decoded header of a segment file.
type segHeader struct {
	prev uint64 // the spool's NextSeq when the segment was created
	base uint64 // seq of the first frame
}

func appendSegHeader(b []byte, h segHeader) []byte {
	start := len(b)
	b = append(b, segMagic...)
	b = binary.LittleEndian.AppendUint16(b, segVersion)
	b = binary.LittleEndian.AppendUint16(b, 0)
	b = binary.LittleEndian.AppendUint64(b, h.prev)
	b = binary.LittleEndian.AppendUint64(b, h.base)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

func parseSegHeader(b []byte) (segHeader, error) {
	if len(b) < segHeaderSize {
		return segHeader{}, fmt.Errorf("header: %w", errShort)
	}
	if string(b[:8]) != segMagic {
		return segHeader{}, fmt.Errorf("header: %w", errMagic)
	}
	if crc32.Checksum(b[:28], castagnoli) != binary.LittleEndian.Uint32(b[28:]) {
		return segHeader{}, fmt.Errorf("header: %w", errHeaderCRC)
	}
	if v := binary.LittleEndian.Uint16(b[8:]); v != segVersion {
		return segHeader{}, fmt.Errorf("header: unsupported version %d", v)
	}
	h := segHeader{prev: binary.LittleEndian.Uint64(b[12:]), base: binary.LittleEndian.Uint64(b[20:])}
	if binary.LittleEndian.Uint16(b[10:]) != 0 || h.prev == 0 || h.prev > h.base {
		return segHeader{}, fmt.Errorf("header: %w", errFrameField)
	}
	return h, nil
}

func frameSize(e *Entry) int { return frameHeaderSize + len(e.Subject) + len(e.Data) }

// appendFrame encodes e, the idx-th entry of its batch.
func appendFrame(b []byte, e *Entry, idx uint32) []byte {
	start := len(b)
	b = append(b, frameMagic...)
	b = binary.LittleEndian.AppendUint64(b, e.Seq)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(e.Data)))
	b = append(b, byte(len(e.Subject)), 0, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, idx)
	crc := crc32.Update(crc32.Checksum([]byte(e.Subject), castagnoli), castagnoli, e.Data)
	b = binary.LittleEndian.AppendUint32(b, crc)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
	b = append(b, e.Subject...)
	return append(b, e.Data...)
}

// frame locates a checked frame in a buffer.
type frame struct {
	off  int // of the frame header
	size int // header, subject and data
	seq  uint64
	slen int    // subject length
	idx  uint32 // position in its Append batch
}

// batchStart is the seq of the first entry of the frame's batch.
func (f frame) batchStart() uint64 { return f.seq - uint64(f.idx) }

func (f frame) end() int { return f.off + f.size }

// subject and data return the frame's payload within b.
func (f frame) subject(b []byte) []byte {
	return b[f.off+frameHeaderSize : f.off+frameHeaderSize+f.slen]
}
func (f frame) data(b []byte) []byte {
	return b[f.off+frameHeaderSize+f.slen : f.end() : f.end()]
}

// parseFrame checks the frame at b[off:]: magic, header checksum, fields,
// length within b, body checksum.
func parseFrame(b []byte, off int) (frame, error) {
	if off < 0 || len(b)-off < frameHeaderSize {
		return frame{}, errShort
	}
	h := b[off : off+frameHeaderSize]
	if string(h[:4]) != frameMagic {
		return frame{}, errMagic
	}
	if crc32.Checksum(h[:28], castagnoli) != binary.LittleEndian.Uint32(h[28:]) {
		return frame{}, errHeaderCRC
	}
	dlen := binary.LittleEndian.Uint32(h[12:])
	f := frame{off: off, seq: binary.LittleEndian.Uint64(h[4:]), slen: int(h[16]), idx: binary.LittleEndian.Uint32(h[20:])}
	if dlen > maxData || h[17] != 0 || h[18] != 0 || h[19] != 0 || uint64(f.idx) >= f.seq {
		return frame{}, errFrameField
	}
	f.size = frameHeaderSize + f.slen + int(dlen)
	if f.size > len(b)-off {
		return frame{}, errShort
	}
	if crc32.Checksum(b[off+frameHeaderSize:f.end()], castagnoli) != binary.LittleEndian.Uint32(h[24:]) {
		return frame{}, errBodyCRC
	}
	return f, nil
}

// findFrame returns the first good frame at or after from whose seq is at
// least minSeq.
func findFrame(b []byte, from int, minSeq uint64) (frame, bool) {
	for from >= 0 && from < len(b) {
		i := bytes.Index(b[from:], []byte(frameMagic))
		if i < 0 {
			return frame{}, false
		}
		if f, err := parseFrame(b, from+i); err == nil && f.seq >= minSeq {
			return f, true
		}
		from += i + 1
	}
	return frame{}, false
}

// segScan is what decodeSegment found in a segment file.
type segScan struct {
	hdr    segHeader
	hdrErr error   // nil when the header is good; then the rest is meaningful
	frames []frame // the good prefix: seqs base, base+1, …
	end    int     // just past the good prefix
	stop   error   // why decoding stopped before len(b); nil when it did not
}

// next is the seq after the good prefix.
func (sc *segScan) next() uint64 { return sc.hdr.base + uint64(len(sc.frames)) }

// decodeSegment decodes a segment file's contents up to the first frame that
// is bad or out of seq order.
func decodeSegment(b []byte) segScan {
	var sc segScan
	sc.hdr, sc.hdrErr = parseSegHeader(b)
	if sc.hdrErr != nil {
		return sc
	}
	off := segHeaderSize
	for off < len(b) {
		f, err := parseFrame(b, off)
		if err == nil && f.seq != sc.next() {
			err = fmt.Errorf("%w: have %d, want %d", errSeq, f.seq, sc.next())
		}
		if n := len(sc.frames); err == nil && f.idx != 0 && n > 0 && sc.frames[n-1].idx != f.idx-1 {
			err = fmt.Errorf("%w: seq %d is entry %d of its batch after entry %d", errSeq, f.seq, f.idx, sc.frames[n-1].idx)
		}
		if err != nil {
			sc.stop = err
			break
		}
		sc.frames = append(sc.frames, f)
		off = f.end()
	}
	sc.end = off
	return sc
}

// salvageFrames collects, in file order, the good frames at or after from
// whose seqs are in [lo, hi) (hi == 0: no upper bound) and strictly
// increasing. It finds frames after damage by their magic.
func salvageFrames(b []byte, from int, lo, hi uint64) []frame {
	var out []frame
	next := lo
	for {
		f, ok := findFrame(b, from, next)
		if !ok || (hi != 0 && f.seq >= hi) {
			// A frame past hi is not ours; later ones, being
			// larger still, would not be either.
			return out
		}
		out = append(out, f)
		if f.seq == ^uint64(0) {
			return out
		}
		next, from = f.seq+1, f.end()
	}
}
