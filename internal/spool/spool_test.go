package spool_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fso-project/fso/internal/spool"
)

const testSubject = "fso.events.t" // 12 bytes

// entrySize is the encoded size of an entry made by mk with n bytes of data.
func entrySize(n int) int64 { return int64(spool.FrameHeaderSize + len(testSubject) + n) }

// mk returns the entry with seq and n bytes of data derived from seq.
func mk(seq uint64, n int) spool.Entry {
	d := make([]byte, n)
	for i := range d {
		d[i] = byte(seq*31 + uint64(i)*7)
	}
	return spool.Entry{Seq: seq, Subject: testSubject, Data: d}
}

// batch returns count entries from seq first, each with n bytes of data.
func batch(first uint64, count, n int) []spool.Entry {
	out := make([]spool.Entry, count)
	for i := range out {
		out[i] = mk(first+uint64(i), n)
	}
	return out
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// open opens the spool in dir, failing the test on any error, and closes it
// at the end of the test.
func open(t *testing.T, dir string, opts spool.Options) *spool.Spool {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s, err := spool.Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustAppend(t *testing.T, s *spool.Spool, es []spool.Entry) {
	t.Helper()
	if err := s.Append(es); err != nil {
		t.Fatalf("Append(seq %d, %d entries): %v", es[0].Seq, len(es), err)
	}
}

// readAll reads everything from seq 0 in chunks.
func readAll(t *testing.T, s *spool.Spool) []spool.Entry {
	t.Helper()
	var out []spool.Entry
	from := uint64(0)
	for {
		es, err := s.Read(from, 7, 0)
		if err != nil {
			t.Fatalf("Read(%d): %v", from, err)
		}
		if len(es) == 0 {
			return out
		}
		out = append(out, es...)
		from = es[len(es)-1].Seq + 1
	}
}

func seqs(es []spool.Entry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}

func seqRange(first, last uint64) []uint64 {
	var out []uint64
	for s := first; s <= last; s++ {
		out = append(out, s)
	}
	return out
}

// checkEntries checks that es are the entries mk made for want, with n bytes of data.
func checkEntries(t *testing.T, es []spool.Entry, want []uint64, n int) {
	t.Helper()
	if have := seqs(es); !slices.Equal(have, want) {
		t.Fatalf("seqs:\nhave %v\nwant %v", have, want)
	}
	for _, e := range es {
		w := mk(e.Seq, n)
		if e.Subject != w.Subject || !bytes.Equal(e.Data, w.Data) {
			t.Fatalf("entry %d: have %q/%x, want %q/%x", e.Seq, e.Subject, e.Data, w.Subject, w.Data)
		}
	}
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, spool.Options{})
	if have := s.NextSeq(); have != 1 {
		t.Fatalf("NextSeq of a new spool: have %d, want 1", have)
	}
	es := []spool.Entry{
		{Seq: 1, Subject: "fso.events.a.create", Data: []byte(`{"path":"/etc/x"}`)},
		{Seq: 2, Subject: "", Data: nil},
		{Seq: 3, Subject: string(bytes.Repeat([]byte("s"), 255)), Data: bytes.Repeat([]byte{0xf5, 'S', 'P', 'F'}, 1000)},
	}
	mustAppend(t, s, es[:1])
	mustAppend(t, s, es[1:])
	check := func(s *spool.Spool) {
		t.Helper()
		have, err := s.Read(1, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(have) != len(es) {
			t.Fatalf("Read: have %d entries, want %d", len(have), len(es))
		}
		for i := range es {
			if have[i].Seq != es[i].Seq || have[i].Subject != es[i].Subject || !bytes.Equal(have[i].Data, es[i].Data) {
				t.Errorf("entry %d: have %+v, want %+v", i, have[i], es[i])
			}
		}
		st := s.Stats()
		want := spool.Stats{Entries: 3, Segments: 1, FirstSeq: 1, NextSeq: 4,
			Bytes: int64(3*spool.FrameHeaderSize + len(es[0].Subject) + len(es[0].Data) + 255 + 4000)}
		if st != want {
			t.Errorf("Stats: have %+v, want %+v", st, want)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(1, 0, 0); err == nil {
		t.Error("Read after Close: no error")
	}
	check(open(t, dir, spool.Options{}))

	fi, err := os.Stat(segFiles(t, dir)[0])
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("segment mode: have %v, want 0600", fi.Mode().Perm())
	}
}

func TestOpenCreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "spool")
	open(t, dir, spool.Options{})
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode: have %v, want 0700", fi.Mode().Perm())
	}
}

func TestOptions(t *testing.T) {
	for _, opts := range []spool.Options{{SegmentBytes: -1}, {SegmentBytes: 2 << 30}, {MaxBytes: -1}} {
		if s, err := spool.Open(t.TempDir(), opts); err == nil || s != nil {
			t.Errorf("Open(%+v): have %v, %v; want an error", opts, s, err)
		}
	}
}

func TestNextSeqPersists(t *testing.T) {
	dir := t.TempDir()
	opts := spool.Options{SegmentBytes: 1024}
	s := open(t, dir, opts)
	for seq := uint64(1); seq <= 40; seq += 4 {
		mustAppend(t, s, batch(seq, 4, 100))
	}
	if n := len(segFiles(t, dir)); n < 4 {
		t.Fatalf("%d segments; want several", n)
	}
	if err := s.Trim(40); err != nil {
		t.Fatal(err)
	}
	want := spool.Stats{Entries: 0, Bytes: 0, Segments: 1, FirstSeq: 41, NextSeq: 41}
	if st := s.Stats(); st != want {
		t.Fatalf("Stats after trimming everything: have %+v, want %+v", st, want)
	}
	s.Close()

	s = open(t, dir, opts)
	if have := s.NextSeq(); have != 41 {
		t.Fatalf("NextSeq after reopen: have %d, want 41", have)
	}

	// Jump forward, durably, also when the spool is empty.
	if err := s.SetNextSeq(30); err == nil {
		t.Error("SetNextSeq below NextSeq: no error")
	}
	if err := s.SetNextSeq(41); err != nil {
		t.Errorf("SetNextSeq(NextSeq): %v", err)
	}
	if err := s.SetNextSeq(1000); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir, opts)
	if have := s.NextSeq(); have != 1000 {
		t.Fatalf("NextSeq after SetNextSeq and reopen: have %d, want 1000", have)
	}
	if err := s.Append(batch(41, 1, 10)); err == nil {
		t.Error("Append at the old seq after SetNextSeq: no error")
	}
	mustAppend(t, s, batch(1000, 3, 10))
	if err := s.SetNextSeq(5000); err != nil {
		t.Fatal(err)
	}
	if err := s.Trim(1001); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir, opts)
	want = spool.Stats{Entries: 3, Bytes: 3 * entrySize(10), Segments: 2, FirstSeq: 1000, NextSeq: 5000}
	if st := s.Stats(); st != want {
		t.Fatalf("Stats: have %+v, want %+v", st, want)
	}
	checkEntries(t, readAll(t, s), []uint64{1000, 1001, 1002}, 10)
	if err := s.Trim(6000); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir, opts)
	want = spool.Stats{Segments: 1, FirstSeq: 5000, NextSeq: 5000}
	if st := s.Stats(); st != want {
		t.Fatalf("Stats: have %+v, want %+v", st, want)
	}
}

func TestAppendRejects(t *testing.T) {
	tests := []struct {
		name    string
		entries []spool.Entry // appended after seqs 1-3
	}{
		{"seq repeats", batch(3, 2, 10)},
		{"seq skips", batch(5, 2, 10)},
		{"gap inside the batch", append(batch(4, 2, 10), mk(7, 10))},
		{"zero seq", batch(0, 1, 10)},
		{"subject too long", []spool.Entry{{Seq: 4, Subject: string(make([]byte, 256))}}},
		{"data too long", []spool.Entry{mk(4, 10), {Seq: 5, Data: make([]byte, 8<<20+1)}}},
	}
	s := open(t, t.TempDir(), spool.Options{})
	mustAppend(t, s, batch(1, 3, 10))
	before := s.Stats()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Append(tc.entries)
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			if st := s.Stats(); st != before {
				t.Errorf("Stats: have %+v, want %+v", st, before)
			}
		})
	}
	if err := s.Append(nil); err != nil {
		t.Errorf("Append(nil): %v", err)
	}
	mustAppend(t, s, []spool.Entry{mk(4, 10), {Seq: 5, Data: make([]byte, 8<<20)}})
}

func TestReadLimits(t *testing.T) {
	s := open(t, t.TempDir(), spool.Options{SegmentBytes: 2000})
	// Seqs 1-20, entry i with 10*i bytes of data, over several segments.
	for seq := uint64(1); seq <= 20; seq++ {
		mustAppend(t, s, []spool.Entry{mk(seq, 10*int(seq))})
	}
	if err := s.Trim(4); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		from       uint64
		maxEntries int
		maxBytes   int
		want       []uint64
	}{
		{"all", 0, 0, 0, seqRange(5, 20)},
		{"from before First", 2, 3, 0, seqRange(5, 7)},
		{"from inside", 9, 0, 0, seqRange(9, 20)},
		{"maxEntries", 9, 4, 0, seqRange(9, 12)},
		{"maxEntries 1", 20, 1, 0, []uint64{20}},
		{"maxBytes exact", 5, 0, 50 + 60 + 70, seqRange(5, 7)},
		{"maxBytes short by one", 5, 0, 50 + 60 + 70 - 1, seqRange(5, 6)},
		{"first entry past maxBytes", 10, 0, 1, []uint64{10}},
		{"both, entries bind", 5, 2, 1000, seqRange(5, 6)},
		{"both, bytes bind", 5, 10, 200, seqRange(5, 7)},
		{"across segments", 10, 8, 0, seqRange(10, 17)},
		{"from the last", 20, 0, 0, []uint64{20}},
		{"from NextSeq", 21, 0, 0, nil},
		{"from far beyond", 1 << 60, 0, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			have, err := s.Read(tc.from, tc.maxEntries, tc.maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			if have == nil {
				t.Error("Read returned a nil slice")
			}
			if !slices.Equal(seqs(have), tc.want) && !(len(have) == 0 && len(tc.want) == 0) {
				t.Fatalf("seqs: have %v, want %v", seqs(have), tc.want)
			}
			for _, e := range have {
				if w := mk(e.Seq, 10*int(e.Seq)); !bytes.Equal(e.Data, w.Data) || cap(e.Data) != len(e.Data) {
					t.Errorf("entry %d: bad data (len %d, cap %d)", e.Seq, len(e.Data), cap(e.Data))
				}
			}
		})
	}
}

func TestSegmentsRollAndTrim(t *testing.T) {
	dir := t.TempDir()
	const n = 300
	es := entrySize(n)
	opts := spool.Options{SegmentBytes: spool.SegHeaderSize + 4*es} // four entries a segment
	s := open(t, dir, opts)
	for seq := uint64(1); seq <= 40; seq += 2 {
		mustAppend(t, s, batch(seq, 2, n))
	}
	files := segFiles(t, dir)
	if len(files) != 10 {
		t.Fatalf("%d segments, want 10: %v", len(files), files)
	}
	for i, f := range files {
		if want := fmt.Sprintf("%020d.seg", 1+4*i); filepath.Base(f) != want {
			t.Errorf("segment %d: have %s, want %s", i, filepath.Base(f), want)
		}
	}
	// A batch never straddles two segments.
	mustAppend(t, s, batch(41, 3, n))
	mustAppend(t, s, batch(44, 3, n))
	if have := len(segFiles(t, dir)); have != 12 {
		t.Fatalf("%d segments after two batches of 3, want 12", have)
	}

	tests := []struct {
		upTo      uint64
		first     uint64
		segments  int
		firstFile string
	}{
		{0, 1, 12, "00000000000000000001.seg"},
		{3, 4, 12, "00000000000000000001.seg"},
		{4, 5, 11, "00000000000000000005.seg"},
		{4, 5, 11, "00000000000000000005.seg"}, // idempotent
		{2, 5, 11, "00000000000000000005.seg"}, // backwards is a no-op
		{13, 14, 9, "00000000000000000013.seg"},
		{43, 44, 1, "00000000000000000044.seg"},
		{46, 47, 1, "00000000000000000044.seg"},
		{1000, 47, 1, "00000000000000000044.seg"},
	}
	for _, tc := range tests {
		if err := s.Trim(tc.upTo); err != nil {
			t.Fatalf("Trim(%d): %v", tc.upTo, err)
		}
		files := segFiles(t, dir)
		st := s.Stats()
		if s.First() != tc.first || st.FirstSeq != tc.first || st.Segments != tc.segments || len(files) != tc.segments ||
			filepath.Base(files[0]) != tc.firstFile {
			t.Fatalf("after Trim(%d): First %d, Stats %+v, files %d from %s; want First %d, %d segments from %s",
				tc.upTo, s.First(), st, len(files), filepath.Base(files[0]), tc.first, tc.segments, tc.firstFile)
		}
		wantEntries := 46 - int(tc.first) + 1
		if st.Entries != wantEntries || st.Bytes != int64(wantEntries)*es {
			t.Fatalf("after Trim(%d): Stats %+v; want %d entries", tc.upTo, st, wantEntries)
		}
		checkEntries(t, readAll(t, s), seqRange(tc.first, 46), n)
	}
	// Trimmed entries come back after a restart as long as their segment
	// is there, and appends continue after them.
	s.Close()
	s = open(t, dir, opts)
	checkEntries(t, readAll(t, s), seqRange(44, 46), n)
	mustAppend(t, s, batch(47, 2, n))
	checkEntries(t, readAll(t, s), seqRange(44, 48), n)
	if have := len(segFiles(t, dir)); have != 2 {
		t.Fatalf("%d segments, want 2", have)
	}
}

func TestFull(t *testing.T) {
	const n = 100
	opts := spool.Options{SegmentBytes: 3 * entrySize(n), MaxBytes: 10 * entrySize(n)}
	s := open(t, t.TempDir(), opts)
	mustAppend(t, s, batch(1, 8, n))
	err := s.Append(batch(9, 3, n))
	if !errors.Is(err, spool.ErrFull) {
		t.Fatalf("Append past MaxBytes: have %v, want ErrFull", err)
	}
	if st := s.Stats(); st.Entries != 8 || st.NextSeq != 9 {
		t.Fatalf("Stats after ErrFull: %+v", st)
	}
	mustAppend(t, s, batch(9, 2, n)) // exactly MaxBytes
	if err := s.Append(batch(11, 1, 0)); !errors.Is(err, spool.ErrFull) {
		t.Fatalf("Append at MaxBytes: have %v, want ErrFull", err)
	}
	if err := s.Trim(3); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, batch(11, 3, n))
	if err := s.Append(batch(14, 1, n)); !errors.Is(err, spool.ErrFull) {
		t.Fatalf("have %v, want ErrFull", err)
	}
	if err := s.Trim(100); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, batch(14, 10, n))
	checkEntries(t, readAll(t, s), seqRange(14, 23), n)
}

func TestConcurrent(t *testing.T) {
	s := open(t, t.TempDir(), spool.Options{SegmentBytes: 8 << 10, Logger: slog.New(slog.DiscardHandler)})
	const total = 3000
	var read atomic.Uint64 // highest seq the reader has checked
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Go(func() { // appender
		for seq := uint64(1); seq <= total; {
			k := min(int(seq%13)+1, total-int(seq)+1)
			es := make([]spool.Entry, k)
			for i := range es {
				es[i] = mk(seq+uint64(i), int((seq+uint64(i))%200))
			}
			if err := s.Append(es); err != nil {
				errc <- err
				return
			}
			seq += uint64(k)
		}
	})
	wg.Go(func() { // reader, checking order and contents
		from := uint64(1)
		for from <= total {
			es, err := s.Read(from, 50, 4000)
			if err != nil {
				errc <- err
				return
			}
			for _, e := range es {
				if e.Seq != from {
					errc <- fmt.Errorf("read seq %d, want %d", e.Seq, from)
					return
				}
				if w := mk(e.Seq, len(e.Data)); !bytes.Equal(w.Data, e.Data) || len(e.Data) != int(e.Seq%200) {
					errc <- fmt.Errorf("seq %d: bad data", e.Seq)
					return
				}
				from++
			}
			read.Store(from - 1)
			_ = s.Stats()
		}
	})
	wg.Go(func() { // trimmer, behind the reader
		for read.Load() < total {
			r := read.Load()
			if err := s.Trim(r); err != nil {
				errc <- err
				return
			}
			if f := s.First(); f <= r {
				errc <- fmt.Errorf("First %d after Trim(%d)", f, r)
				return
			}
			runtime.Gosched()
		}
		if err := s.Trim(total); err != nil {
			errc <- err
		}
	})
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if st := s.Stats(); st.Entries != 0 || st.NextSeq != total+1 || st.Segments != 1 {
		t.Errorf("Stats at the end: %+v", st)
	}
}

func TestFsyncsPerAppend(t *testing.T) {
	s := open(t, t.TempDir(), spool.Options{SegmentBytes: 10 * entrySize(300)})
	before := spool.Fsyncs(s)
	mustAppend(t, s, batch(1, 9, 300))
	if have := spool.Fsyncs(s) - before; have != 1 {
		t.Errorf("fsyncs for one append: have %d, want 1", have)
	}
	before = spool.Fsyncs(s)
	mustAppend(t, s, batch(10, 9, 300)) // starts a segment: its file and the directory
	if have := spool.Fsyncs(s) - before; have != 3 {
		t.Errorf("fsyncs for an append that starts a segment: have %d, want 3", have)
	}
}

// The newest segment is filled with zeros ahead of its frames, up to
// SegmentBytes, so that appends need only fdatasync; a segment done with,
// by a roll or Close, keeps only its frames.
func TestPreallocation(t *testing.T) {
	dir := t.TempDir()
	const segBytes = 64 << 10
	s := open(t, dir, spool.Options{SegmentBytes: segBytes})
	es := entrySize(100)
	frames := func(n int64) int64 { return spool.SegHeaderSize + n*es }
	mustAppend(t, s, batch(1, 3, 100))
	if have := fileSize(t, segPath(dir, 1)); have != segBytes {
		t.Fatalf("newest segment after an append: %d bytes, want %d (preallocated)", have, segBytes)
	}
	syncs, data := spool.Fsyncs(s), spool.Datasyncs(s)
	mustAppend(t, s, batch(4, 2, 100))
	if have, haveData := spool.Fsyncs(s)-syncs, spool.Datasyncs(s)-data; have != 1 || haveData != 1 {
		t.Fatalf("an append into the preallocation: %d syncs, %d of them fdatasync; want 1 fdatasync", have, haveData)
	}
	n := (segBytes - frames(5)) / es // what still fits
	mustAppend(t, s, batch(6, int(n), 100))
	mustAppend(t, s, batch(6+uint64(n), 1, 100)) // rolls
	if have, want := fileSize(t, segPath(dir, 1)), frames(5+n); have != want {
		t.Fatalf("rolled segment: %d bytes, want %d", have, want)
	}
	if have := fileSize(t, segPath(dir, 6+int(n))); have != segBytes {
		t.Fatalf("new segment: %d bytes, want %d", have, segBytes)
	}
	s.Close()
	if have, want := fileSize(t, segPath(dir, 6+int(n))), frames(1); have != want {
		t.Fatalf("newest segment after Close: %d bytes, want %d", have, want)
	}
	s = open(t, dir, spool.Options{SegmentBytes: segBytes})
	checkEntries(t, readAll(t, s), seqRange(1, 6+uint64(n)), 100)
}

// TestAppendDeferred: deferred batches are readable at once and cost no
// fsync; one fsync makes all of them durable, whether it comes from Sync,
// a durable Append, a roll or Close; trimming takes a batch off Unsynced.
func TestAppendDeferred(t *testing.T) {
	dir := t.TempDir()
	const segBytes = 64 << 10
	s := open(t, dir, spool.Options{SegmentBytes: segBytes})
	defer0 := func(es []spool.Entry) {
		t.Helper()
		if err := s.AppendDeferred(es); err != nil {
			t.Fatalf("AppendDeferred(seq %d): %v", es[0].Seq, err)
		}
	}
	syncs := func() uint64 { return spool.Fsyncs(s) }
	if !s.Unsynced().IsZero() {
		t.Fatalf("new spool: Unsynced %v, want zero", s.Unsynced())
	}
	start, data := syncs(), spool.Datasyncs(s)
	before := time.Now()
	defer0(batch(1, 3, 100)) // grows the file: the sync must be an fsync
	first := s.Unsynced()
	defer0(batch(4, 2, 100))
	if n := syncs() - start; n != 0 {
		t.Fatalf("two deferred appends: %d fsyncs, want 0", n)
	}
	if first.Before(before) || !s.Unsynced().Equal(first) {
		t.Fatalf("Unsynced %v after two batches, want the first's time %v (after %v)", s.Unsynced(), first, before)
	}
	checkEntries(t, readAll(t, s), seqRange(1, 5), 100)

	// The recorder has the first batch: the second is the oldest waiting.
	if err := s.Trim(3); err != nil {
		t.Fatal(err)
	}
	if !s.Unsynced().After(first) {
		t.Fatalf("Unsynced %v after trimming the first batch, want the second's, after %v", s.Unsynced(), first)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := syncs() - start; n != 1 || !s.Unsynced().IsZero() {
		t.Fatalf("Sync: %d fsyncs, Unsynced %v; want 1 and zero", n, s.Unsynced())
	}
	if n := spool.Datasyncs(s) - data; n != 0 {
		t.Fatalf("Sync after deferred appends that grew the file: %d fdatasyncs, want an fsync", n)
	}
	if err := s.Sync(); err != nil || syncs()-start != 1 {
		t.Fatalf("Sync with nothing waiting: err %v, %d fsyncs, want none more", err, syncs()-start-1)
	}

	// A durable append syncs the deferred batch before it with its one fsync.
	defer0(batch(6, 1, 100))
	mustAppend(t, s, batch(7, 1, 100))
	if n := syncs() - start; n != 2 || !s.Unsynced().IsZero() {
		t.Fatalf("deferred then durable append: %d fsyncs in all, Unsynced %v; want 2 and zero", n, s.Unsynced())
	}

	// A roll syncs the segment it leaves, then creates the next one (a
	// file and a directory fsync).
	defer0(batch(8, 1, 100))
	fill := int((segBytes-fileSizeOfFrames(s))/entrySize(100)) + 1
	defer0(batch(9, fill, 100)) // one more than fits: rolls
	if n := syncs() - start; n != 2+1+2 {
		t.Fatalf("roll after a deferred batch: %d fsyncs in all, want 5 (the old segment synced, the new one created)", n)
	}
	if s.Unsynced().IsZero() {
		t.Fatal("the batch in the new segment is not reported waiting")
	}
	n := syncs()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if spool.Fsyncs(s) == n {
		t.Fatal("Close did not sync a deferred batch")
	}
	s = open(t, dir, spool.Options{SegmentBytes: segBytes})
	// Trimmed entries of a segment still there are back after Open.
	checkEntries(t, readAll(t, s), seqRange(1, 8+uint64(fill)), 100)

	// A killed process's deferred writes may not be on the disk yet: the
	// first Sync after Open makes sure, once.
	n = spool.Fsyncs(s)
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if have := spool.Fsyncs(s) - n; have != 1 {
		t.Fatalf("Sync, twice, after Open: %d fsyncs, want 1", have)
	}
}

// fileSizeOfFrames is the size of the frames of s, a spool with one
// segment whose entries all have 100 bytes of data, plus its header.
func fileSizeOfFrames(s *spool.Spool) int64 {
	st := s.Stats()
	return spool.SegHeaderSize + int64(st.NextSeq-1)*entrySize(100)
}
