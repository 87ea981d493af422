package auditlog_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/fso-project/fso/internal/auditlog"
)

// benchRecords returns n records of about 400 bytes.
func benchRecords(n int) [][]byte {
	recs := make([][]byte, n)
	for i := range recs {
		recs[i] = fmt.Appendf(nil, `{"kind":"event","id":"web-1:%d","agent":"web-1","host":"web-1.example","seq":%d,"type":"modify","path":"/srv/www/%s/index.html","is_dir":false,"observed_at":"2026-03-01T12:00:00.123456789Z","emitted_at":"2026-03-01T12:00:00.223456789Z","source":"watch","size":1234,"mode":420,"uid":33,"gid":33,"sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}`,
			i+1, i+1, strings.Repeat("d", 40))
	}
	return recs
}

// BenchmarkAppendSync appends batches of 100 lines of about 400 bytes and
// syncs each batch to disk.
func BenchmarkAppendSync(b *testing.B) {
	w := open(b, b.TempDir(), auditlog.Options{})
	recs := benchRecords(100)
	b.SetBytes(int64(len(recs) * (len(recs[0]) + 170)))
	n := 0
	for b.Loop() {
		if err := w.Append(recs...); err != nil {
			b.Fatal(err)
		}
		if err := w.Sync(); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n*len(recs))/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkVerify verifies a log of 64 MiB in 8 segments.
func BenchmarkVerify(b *testing.B) {
	dir := b.TempDir()
	w := open(b, dir, auditlog.Options{SegmentBytes: 8 << 20})
	recs := benchRecords(1000)
	var size int64
	for size < 64<<20 {
		write(b, w, 1000, recs...)
		size += int64(len(recs)) * int64(len(recs[0])+172)
	}
	w.Close()
	rep, err := auditlog.Verify(b.Context(), dir, nil)
	if err != nil || rep.Problem != nil {
		b.Fatalf("verify: %+v %v", rep, err)
	}
	b.SetBytes(rep.Bytes)
	for b.Loop() {
		if _, err := auditlog.Verify(b.Context(), dir, nil); err != nil {
			b.Fatal(err)
		}
	}
}
