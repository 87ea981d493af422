package auditlog

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fso-project/fso/internal/testdisk"
)

// record returns a record of about 400 bytes.
func record(seq int) []byte {
	return fmt.Appendf(nil, `{"kind":"event","agent":"a","seq":%d,"type":"modify","path":"/srv/%s"}`, seq, strings.Repeat("p", 300))
}

func TestSyncOnFullDisk(t *testing.T) {
	tests := []struct {
		name string
		// noFallocate makes the write itself hit ENOSPC part way, so that
		// Sync must truncate a partial line away.
		noFallocate bool
		// wantOp is the operation the error names.
		wantOp string
	}{
		{name: "space reserved first", wantOp: "allocate"},
		{name: "partial write", noFallocate: true, wantOp: "write"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mnt := testdisk.Small(t, fmt.Sprint(64<<10))
			dir := filepath.Join(mnt, "audit")
			now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
			w, err := Open(dir, Options{Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			w.noFallocate = tc.noFallocate
			seq := 0
			batch := func(n int) [][]byte {
				var recs [][]byte
				for range n {
					seq++
					recs = append(recs, record(seq))
				}
				return recs
			}
			if err := w.Append(batch(5)...); err != nil {
				t.Fatal(err)
			}
			if err := w.Sync(); err != nil {
				t.Fatal(err)
			}
			segPath := filepath.Join(dir, "00000001.jsonl")
			before, _ := os.ReadFile(segPath)
			headSeg, headLine, headHash := w.Head()

			testdisk.Fill(t, filepath.Join(mnt, "filler"))
			if err := w.Append(batch(50)...); err != nil {
				t.Fatal(err)
			}
			err = w.Sync()
			if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), segPath) || !strings.Contains(err.Error(), tc.wantOp) {
				t.Fatalf("sync on a full disk: have %v, want ENOSPC from %s naming %s", err, tc.wantOp, segPath)
			}
			after, _ := os.ReadFile(segPath)
			if !bytes.Equal(before, after) {
				t.Fatalf("after the failed sync the segment has %d bytes, want the %d it had", len(after), len(before))
			}
			if s, l, h := w.Head(); s != headSeg || l != headLine || h != headHash {
				t.Errorf("Head moved on a failed sync: %s %d", s, l)
			}
			// Retrying on a full disk fails the same way and leaves no trace.
			if err := w.Append(batch(50)...); err != nil {
				t.Fatal(err)
			}
			if err := w.Sync(); !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("second sync on a full disk: have %v, want ENOSPC", err)
			}

			if err := os.Remove(filepath.Join(mnt, "filler")); err != nil {
				t.Fatal(err)
			}
			seq = 5 // the failed batches are sent again
			if err := w.Append(batch(50)...); err != nil {
				t.Fatal(err)
			}
			if err := w.Sync(); err != nil {
				t.Fatalf("sync after freeing space: %v", err)
			}
			rep, err := Verify(t.Context(), dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Problem != nil || rep.Records != 55 || rep.Agents["a"].MissingCount != 0 || rep.Agents["a"].LastSeq != 55 {
				t.Errorf("verify after recovery: %+v, problem %v", rep, rep.Problem)
			}
		})
	}
}

func TestSyncFailsCreatingSegment(t *testing.T) {
	mnt := testdisk.Small(t, fmt.Sprint(64<<10))
	dir := filepath.Join(mnt, "audit")
	w, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.noFallocate = true
	testdisk.Fill(t, filepath.Join(mnt, "filler"))
	if err := w.Append(record(1)); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("sync: have %v, want ENOSPC", err)
	}
	os.Remove(filepath.Join(mnt, "filler"))
	if err := w.Append(record(1)); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatalf("sync after freeing space: %v", err)
	}
	if rep, err := Verify(t.Context(), dir, nil); err != nil || rep.Problem != nil || rep.Records != 1 {
		t.Errorf("verify: %+v, %v", rep, err)
	}
}

// TestReserveAhead: Sync reserves space well past the batch, so that most
// batches need no allocation of their own, and gives what is left back when
// the segment is done; a disk too full for the step still takes a batch
// that fits.
func TestReserveAhead(t *testing.T) {
	blocks := func(path string) int64 {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		return st.Blocks * 512
	}
	dir := t.TempDir()
	w, err := Open(dir, Options{Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), SegmentBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append(record(1)); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	first := segPath(dir, 1)
	if b := blocks(first); b < reserveStep {
		t.Fatalf("after one small batch, %d bytes allocated, want the %d-byte step reserved", b, reserveStep)
	}
	for seq := 2; w.seg == 1; seq++ { // past SegmentBytes: the next segment
		if err := w.Append(record(seq)); err != nil {
			t.Fatal(err)
		}
		if err := w.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(first)
	if err != nil {
		t.Fatal(err)
	}
	if b := blocks(first); b >= reserveStep || b < fi.Size() {
		t.Errorf("finished segment of %d bytes holds %d bytes of disk, want its size rounded to blocks", fi.Size(), b)
	}
	w.Close()

	// Less room than a step, enough for a batch.
	mnt := testdisk.Small(t, fmt.Sprint(512<<10))
	w, err = Open(filepath.Join(mnt, "audit"), Options{Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Append(record(1)); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatalf("a batch that fits the disk: %v", err)
	}
}
