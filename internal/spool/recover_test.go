package spool_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fso-project/fso/internal/spool"
)

// The spools in these tests hold seqs 1-10, four to a segment, in segments
// 1 (seqs 1-4), 5 (5-8) and 9 (9-10, the newest), each entry recN bytes of data.
const recN = 50

var recSize = entrySize(recN)

func recOptions(t *testing.T) spool.Options {
	return spool.Options{SegmentBytes: spool.SegHeaderSize + 4*recSize, Logger: testLogger(t)}
}

func fillRec(t *testing.T, dir string) {
	t.Helper()
	s := open(t, dir, recOptions(t))
	for seq := uint64(1); seq <= 10; seq++ {
		mustAppend(t, s, batch(seq, 1, recN))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if have := len(segFiles(t, dir)); have != 3 {
		t.Fatalf("%d segments, want 3", have)
	}
}

// segPath returns the segment file whose first seq is base.
func segPath(dir string, base int) string {
	return filepath.Join(dir, fmt.Sprintf("%020d.seg", base))
}

// frameOff returns the offset of seq's frame in its segment.
func frameOff(seq int) int64 {
	base := (seq-1)/4*4 + 1
	return spool.SegHeaderSize + int64(seq-base)*recSize
}

func segOf(dir string, seq int) string { return segPath(dir, (seq-1)/4*4+1) }

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x40
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func truncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func garbage(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// checkRecovered checks the spool has want and takes the next append, and
// that a second Open finds nothing wrong.
func checkRecovered(t *testing.T, dir string, s *spool.Spool, want []uint64, next uint64) {
	t.Helper()
	checkEntries(t, readAll(t, s), want, recN)
	if have := s.NextSeq(); have != next {
		t.Fatalf("NextSeq: have %d, want %d", have, next)
	}
	if st := s.Stats(); st.Entries != len(want) || st.Bytes != int64(len(want))*recSize {
		t.Fatalf("Stats: %+v; want %d entries", st, len(want))
	}
	mustAppend(t, s, batch(next, 2, recN))
	s.Close()
	s = open(t, dir, recOptions(t)) // fails the test on a CorruptError
	checkEntries(t, readAll(t, s), append(slices.Clone(want), next, next+1), recN)
	mustAppend(t, s, batch(next+2, 1, recN))
}

func TestTornTail(t *testing.T) {
	newest := func(dir string) string { return segPath(dir, 9) }
	end := spool.SegHeaderSize + 2*recSize // of the newest segment
	tests := []struct {
		name   string
		damage func(t *testing.T, path string)
		next   uint64 // NextSeq after repair
	}{
		{"truncated mid-frame", func(t *testing.T, p string) { truncate(t, p, end-recSize/2) }, 10},
		{"truncated in the frame header", func(t *testing.T, p string) { truncate(t, p, end-recSize+10) }, 10},
		{"truncated to the segment header", func(t *testing.T, p string) { truncate(t, p, spool.SegHeaderSize+5) }, 9},
		{"garbage appended", func(t *testing.T, p string) { appendBytes(t, p, garbage(1000)) }, 11},
		{"partial frame, then zeros", func(t *testing.T, p string) {
			truncate(t, p, end-recSize/2)
			appendBytes(t, p, make([]byte, 4096))
		}, 10},
		{"bad checksum in the last frame", func(t *testing.T, p string) { flipByte(t, p, end-3) }, 10},
		{"bad header checksum in the last frame", func(t *testing.T, p string) { flipByte(t, p, frameOff(10)+5) }, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fillRec(t, dir)
			tc.damage(t, newest(dir))
			s := open(t, dir, recOptions(t))
			want := spool.SegHeaderSize + int64(tc.next-9)*recSize
			if have := fileSize(t, newest(dir)); have != want {
				t.Errorf("newest segment: %d bytes, want %d", have, want)
			}
			checkRecovered(t, dir, s, seqRange(1, tc.next-1), tc.next)
		})
	}
}

// Zeros after the last frame are preallocation, not damage: the newest
// segment keeps them for its next appends, an older one (a crash came
// before they were released) gives them back.
func TestZeroTail(t *testing.T) {
	dir := t.TempDir()
	fillRec(t, dir)
	appendBytes(t, segPath(dir, 5), make([]byte, 4096))
	appendBytes(t, segPath(dir, 9), make([]byte, 4096))
	newest := fileSize(t, segPath(dir, 9))
	s := open(t, dir, recOptions(t)) // fails the test on a CorruptError
	if have, want := fileSize(t, segPath(dir, 5)), int64(spool.SegHeaderSize+4*recSize); have != want {
		t.Errorf("older segment: %d bytes, want %d", have, want)
	}
	if have := fileSize(t, segPath(dir, 9)); have != newest {
		t.Errorf("newest segment: %d bytes, want %d, its preallocation kept", have, newest)
	}
	checkRecovered(t, dir, s, seqRange(1, 10), 11)
}

func TestCorrupt(t *testing.T) {
	tests := []struct {
		name        string
		damage      func(t *testing.T, dir string)
		lost        [][2]uint64 // CorruptError.Lost
		lostFrom    uint64      // CorruptError.LostFrom
		quarantined int         // files
		seqs        []uint64    // what is left
		next        uint64
	}{{
		name:        "bad frame in the middle of an old segment",
		damage:      func(t *testing.T, dir string) { flipByte(t, segOf(dir, 2), frameOff(2)+40) },
		lost:        [][2]uint64{{2, 2}},
		quarantined: 1,
		seqs:        append([]uint64{1}, seqRange(3, 10)...),
		next:        11,
	}, {
		name:        "bad frame after two good ones",
		damage:      func(t *testing.T, dir string) { flipByte(t, segOf(dir, 3), frameOff(3)+40) },
		lost:        [][2]uint64{{3, 3}},
		quarantined: 1,
		seqs:        append(seqRange(1, 2), seqRange(4, 10)...),
		next:        11,
	}, {
		name: "two bad frames in an old segment",
		damage: func(t *testing.T, dir string) {
			flipByte(t, segOf(dir, 6), frameOff(6)+1)
			flipByte(t, segOf(dir, 7), frameOff(7)+45)
		},
		lost:        [][2]uint64{{6, 7}},
		quarantined: 1,
		seqs:        append(seqRange(1, 5), seqRange(8, 10)...),
		next:        11,
	}, {
		name:        "bad last frame of an old segment",
		damage:      func(t *testing.T, dir string) { flipByte(t, segOf(dir, 4), frameOff(4)+60) },
		lost:        [][2]uint64{{4, 4}},
		quarantined: 1,
		seqs:        append(seqRange(1, 3), seqRange(5, 10)...),
		next:        11,
	}, {
		name:        "old segment truncated",
		damage:      func(t *testing.T, dir string) { truncate(t, segOf(dir, 5), frameOff(7)+3) },
		lost:        [][2]uint64{{7, 8}},
		quarantined: 1,
		seqs:        append(seqRange(1, 6), seqRange(9, 10)...),
		next:        11,
	}, {
		name:        "bad header of an old segment",
		damage:      func(t *testing.T, dir string) { flipByte(t, segPath(dir, 5), 14) },
		quarantined: 1,
		seqs:        seqRange(1, 10),
		next:        11,
	}, {
		name: "old segment overwritten",
		damage: func(t *testing.T, dir string) {
			if err := os.WriteFile(segPath(dir, 5), garbage(int(4*recSize)), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		lost:        [][2]uint64{{5, 8}},
		quarantined: 1,
		seqs:        append(seqRange(1, 4), 9, 10),
		next:        11,
	}, {
		name:   "old segment deleted",
		damage: func(t *testing.T, dir string) { os.Remove(segPath(dir, 5)) },
		lost:   [][2]uint64{{5, 8}},
		seqs:   append(seqRange(1, 4), 9, 10),
		next:   11,
	}, {
		name: "frames out of order",
		damage: func(t *testing.T, dir string) {
			p := segOf(dir, 2)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			f2 := slices.Clone(b[frameOff(2) : frameOff(2)+recSize])
			copy(b[frameOff(2):], b[frameOff(3):frameOff(3)+recSize])
			copy(b[frameOff(3):], f2)
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		lost:        [][2]uint64{{2, 2}},
		quarantined: 1,
		seqs:        append([]uint64{1}, seqRange(3, 10)...),
		next:        11,
	}, {
		name:        "bad frame followed by a good one in the newest segment",
		damage:      func(t *testing.T, dir string) { flipByte(t, segOf(dir, 9), frameOff(9)+50) },
		lost:        [][2]uint64{{9, 9}},
		quarantined: 1,
		seqs:        append(seqRange(1, 8), 10),
		next:        11,
	}, {
		name:        "bad header of the newest segment",
		damage:      func(t *testing.T, dir string) { flipByte(t, segPath(dir, 9), 3) },
		quarantined: 1,
		seqs:        seqRange(1, 10),
		next:        11,
	}, {
		name: "newest segment overwritten",
		damage: func(t *testing.T, dir string) {
			if err := os.WriteFile(segPath(dir, 9), garbage(int(2*recSize)), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		lostFrom:    9,
		quarantined: 1,
		seqs:        seqRange(1, 8),
		next:        9,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fillRec(t, dir)
			tc.damage(t, dir)
			s, err := spool.Open(dir, recOptions(t))
			if s == nil {
				t.Fatalf("Open: no spool; error %v", err)
			}
			t.Cleanup(func() { s.Close() })
			t.Log(err)
			var ce *spool.CorruptError
			if !errors.As(err, &ce) || !errors.Is(err, spool.ErrCorrupt) {
				t.Fatalf("Open: have %v, want a CorruptError", err)
			}
			if !slices.Equal(ce.Lost, tc.lost) || ce.LostFrom != tc.lostFrom {
				t.Errorf("lost: have %v from %d, want %v from %d", ce.Lost, ce.LostFrom, tc.lost, tc.lostFrom)
			}
			if len(ce.Quarantined) != tc.quarantined {
				t.Errorf("quarantined: have %v, want %d files", ce.Quarantined, tc.quarantined)
			}
			for _, q := range ce.Quarantined {
				if _, err := os.Stat(q); err != nil || !strings.Contains(filepath.Base(q), ".seg.corrupt-") {
					t.Errorf("quarantined file %s: %v", q, err)
				}
			}
			checkRecovered(t, dir, s, tc.seqs, tc.next)
		})
	}
}

func TestLeftoverTempFile(t *testing.T) {
	dir := t.TempDir()
	fillRec(t, dir)
	// A crash while creating segment 11 leaves its temporary file.
	tmp := segPath(dir, 9) + ".tmp"
	if err := os.WriteFile(tmp, []byte("FSOSP"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir, recOptions(t))
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left: %v", err)
	}
	checkRecovered(t, dir, s, seqRange(1, 10), 11)
}

// A crash during an append may write some of the batch's pages and not
// others: good frames after a bad one in the same batch are a torn tail.
func TestTornBatch(t *testing.T) {
	for _, tc := range []struct {
		name    string
		zero    int // seq whose frame is zeroed
		corrupt bool
	}{
		{"first entry of the last batch", 5, false},
		{"middle entry of the last batch", 6, false},
		{"entry of an earlier batch", 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, spool.Options{})
			for seq := uint64(1); seq <= 4; seq++ {
				mustAppend(t, s, batch(seq, 1, recN))
			}
			mustAppend(t, s, batch(5, 4, recN))
			s.Close()
			p := segPath(dir, 1)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			off := spool.SegHeaderSize + int64(tc.zero-1)*recSize
			clear(b[off : off+recSize])
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err = spool.Open(dir, spool.Options{Logger: testLogger(t)})
			if s == nil {
				t.Fatal(err)
			}
			defer s.Close()
			if have := errors.Is(err, spool.ErrCorrupt); have != tc.corrupt {
				t.Fatalf("Open: have %v, want corrupt %v", err, tc.corrupt)
			}
			var want []uint64
			if tc.corrupt {
				want = append(seqRange(1, uint64(tc.zero)-1), seqRange(uint64(tc.zero)+1, 8)...)
			} else {
				want = seqRange(1, uint64(tc.zero)-1)
			}
			checkEntries(t, readAll(t, s), want, recN)
		})
	}
}

// FuzzOpen damages a spool of seqs 1-10 (three segments) as the input says,
// four bytes an operation: which file, offset (two bytes), what to do. Open
// must give a usable spool that never returns an entry with the wrong
// contents, reports every seq below NextSeq it lost, reports it once, and
// takes appends.
func FuzzOpen(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 100, 0})              // flip a byte in a frame of segment 1
	f.Add([]byte{1, 0, 10, 0})               // flip a byte in the header of segment 5
	f.Add([]byte{2, 0, 130, 6})              // truncate segment 9 in its second frame
	f.Add([]byte{1, 0, 0, 7, 2, 0, 50, 4})   // delete segment 5, zero bytes in segment 9
	f.Add([]byte{0, 0, 200, 5, 1, 1, 20, 1}) // zero bytes, flip a byte
	f.Add([]byte{2, 0, 0, 7, 1, 0, 0, 7})    // delete segments 9 and 5
	f.Add([]byte{0, 0, 32, 4, 0, 0, 40, 4, 0, 0, 48, 4})
	f.Fuzz(func(t *testing.T, ops []byte) {
		dir := t.TempDir()
		opts := spool.Options{SegmentBytes: spool.SegHeaderSize + 4*recSize, Logger: slog.New(slog.DiscardHandler)}
		s, err := spool.Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		for seq := uint64(1); seq <= 10; seq++ {
			if err := s.Append(batch(seq, 1, recN)); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
		var deleted [3]bool
		for i := 0; i+4 <= len(ops) && i < 16; i += 4 {
			k := int(ops[i]) % 3
			p := segPath(dir, []int{1, 5, 9}[k])
			b, err := os.ReadFile(p)
			if err != nil || len(b) == 0 {
				continue
			}
			off := (int(ops[i+1])<<8 | int(ops[i+2])) % len(b)
			switch op := ops[i+3] % 8; op {
			case 0, 1, 2, 3:
				b[off] ^= 1 << op
			case 4:
				clear(b[off:min(off+16, len(b))])
			case 5: // zeros to the end, which Open takes for preallocation
				clear(b[off:])
			case 6:
				b = b[:off]
			case 7:
				os.Remove(p)
				deleted[k] = true
				continue
			}
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}

		s, err = spool.Open(dir, opts)
		if s == nil {
			t.Fatalf("Open: %v", err)
		}
		var ce *spool.CorruptError
		if err != nil && !errors.As(err, &ce) {
			t.Fatalf("Open: %v", err)
		}
		es, rerr := s.Read(0, 0, 0)
		if rerr != nil {
			t.Fatalf("Read: %v", rerr)
		}
		next := s.NextSeq()
		have := map[uint64]bool{}
		for _, e := range es {
			if w := mk(e.Seq, recN); e.Seq >= next || e.Subject != w.Subject || !bytes.Equal(e.Data, w.Data) {
				t.Fatalf("entry %d is not what was appended (next seq %d)", e.Seq, next)
			}
			have[e.Seq] = true
		}
		// Deleting the oldest segments looks like trimming them.
		trimmed := uint64(0)
		for k := 0; k < 3 && deleted[k]; k++ {
			trimmed = uint64(4*k + 4)
		}
		for seq := trimmed + 1; seq < min(next, 11); seq++ {
			if have[seq] {
				continue
			}
			reported := ce != nil && (ce.LostFrom != 0 && seq >= ce.LostFrom ||
				slices.ContainsFunc(ce.Lost, func(r [2]uint64) bool { return r[0] <= seq && seq <= r[1] }))
			if !reported {
				t.Fatalf("seq %d lost without a report; next seq %d; error %v", seq, next, err)
			}
		}
		if err := s.Append(batch(next, 1, recN)); err != nil {
			t.Fatalf("Append: %v", err)
		}
		before := s.Stats()
		s.Close()
		s, err = spool.Open(dir, opts)
		if err != nil {
			t.Fatalf("second Open: %v", err)
		}
		defer s.Close()
		if after := s.Stats(); after != before {
			t.Fatalf("Stats: after reopening %+v, before %+v", after, before)
		}
	})
}

func TestReadDamagedSinceOpen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, recOptions(t))
	mustAppend(t, s, batch(1, 4, recN))
	flipByte(t, segOf(dir, 3), frameOff(3)+50)
	es, err := s.Read(1, 0, 0)
	var ce *spool.CorruptError
	if !errors.As(err, &ce) || !slices.Equal(ce.Lost, [][2]uint64{{3, 3}}) {
		t.Fatalf("Read: have %v, want a CorruptError for seq 3", err)
	}
	checkEntries(t, es, []uint64{1, 2}, recN)
	checkEntries(t, mustRead(t, s, 4), []uint64{4}, recN)
}

func mustRead(t *testing.T, s *spool.Spool, from uint64) []spool.Entry {
	t.Helper()
	es, err := s.Read(from, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return es
}
