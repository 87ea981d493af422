package spool_test

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/fso-project/fso/internal/spool"
	"github.com/fso-project/fso/internal/testdisk"
)

// TestDiskFull fills a small tmpfs: the append that does not fit fails with
// ENOSPC and leaves no partial frame, and appends work again once Trim has
// freed space.
func TestDiskFull(t *testing.T) {
	dir := testdisk.Small(t, "256k")
	const n = 3000
	es := entrySize(n)
	opts := spool.Options{SegmentBytes: 40 << 10}
	s := open(t, dir, opts)

	next := uint64(1)
	var err error
	for range 200 {
		if err = s.Append(batch(next, 4, n)); err != nil {
			break
		}
		next += 4
	}
	if err == nil || errors.Is(err, spool.ErrFull) || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Append on a full disk: have %v, want ENOSPC naming the file", err)
	}
	t.Logf("after %d entries: %v", next-1, err)
	if have := s.NextSeq(); have != next {
		t.Fatalf("NextSeq after the failed append: have %d, want %d", have, next)
	}
	// No partial frame anywhere: every segment holds whole frames, as many
	// as the spool says, and after them only preallocated zeros.
	frames := int64(0)
	for _, p := range segFiles(t, dir) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		off := int64(spool.SegHeaderSize)
		for off+es <= int64(len(b)) && string(b[off:off+4]) == "\xf5SPF" {
			off += es
			frames++
		}
		if i := bytes.IndexFunc(b[off:], func(r rune) bool { return r != 0 }); i >= 0 {
			t.Fatalf("%s: byte %d after the last whole frame is not zero", p, off+int64(i))
		}
	}
	if st := s.Stats(); frames != int64(st.Entries) {
		t.Fatalf("%d frames on disk, want %d", frames, st.Entries)
	}
	// Still full: the error repeats and nothing changes.
	if err := s.Append(batch(next, 4, n)); err == nil {
		t.Fatal("second Append on a full disk: no error")
	}

	if err := s.Trim(next - 1); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, batch(next, 4, n))
	mustAppend(t, s, batch(next+4, 4, n))
	checkEntries(t, readAll(t, s)[len(readAll(t, s))-8:], seqRange(next, next+7), n)

	s.Close()
	s = open(t, dir, opts)
	if have := s.NextSeq(); have != next+8 {
		t.Fatalf("NextSeq after reopening: have %d, want %d", have, next+8)
	}
}

// TestPreallocationDiskFull: a disk too full for the preallocation still
// takes a batch that fits; the file then holds just the frames.
func TestPreallocationDiskFull(t *testing.T) {
	dir := testdisk.Small(t, "64k")
	opts := spool.Options{SegmentBytes: 4 << 20} // preallocates 1 MiB, more than the disk
	s := open(t, dir, opts)
	mustAppend(t, s, batch(1, 2, 1000))
	mustAppend(t, s, batch(3, 2, 1000))
	if have, want := fileSize(t, segPath(dir, 1)), int64(spool.SegHeaderSize)+4*entrySize(1000); have != want {
		t.Fatalf("segment: %d bytes, want %d, the frames alone", have, want)
	}
	s.Close()
	s = open(t, dir, opts)
	checkEntries(t, readAll(t, s), seqRange(1, 4), 1000)
}
