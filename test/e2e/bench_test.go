package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// BenchmarkPipeline measures the whole pipeline, fso up on a temp tree:
// file operation → inotify → agent → spool fsync → JetStream → recorder →
// audit line. Latency is the record's recorded_at (stamped as the batch is
// appended, right before its fsync) minus the start of the operation.
//
//	go test -run '^$' -bench Pipeline -benchtime 1x -count 5 ./test/e2e
func BenchmarkPipeline(b *testing.B) {
	for _, tc := range []struct {
		name string
		ops  int
		rate int // ops/s; 0 = as fast as possible
	}{
		{"paced-1000", 3000, 1000},
		{"full-speed", 20000, 0},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				runPipeline(b, tc.ops, tc.rate)
			}
		})
	}
}

func runPipeline(b *testing.B, ops, rate int) {
	b.StopTimer()
	s := startUp(b)
	dir := filepath.Join(s.root, "w")
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	waitLog(b, s.audit, 10*time.Second, has(nil, "create "+dir))
	starts := make(map[string]time.Time, ops)
	b.StartTimer()
	t0 := time.Now()
	for i := range ops {
		if rate > 0 {
			if d := time.Until(t0.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
				time.Sleep(d)
			}
		}
		p := filepath.Join(dir, fmt.Sprintf("f%06d", i))
		starts[p] = time.Now()
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	var lat []time.Duration
	var last time.Time
	// Let the pipeline drain before reading the log: polling it while it
	// runs would compete with it for the two cores.
	time.Sleep(time.Duration(ops/10000+1) * time.Second)
	waitLog(b, s.audit, 120*time.Second, func(recs []rec) bool {
		lat, last = lat[:0], time.Time{}
		for _, r := range recs {
			if st, ok := starts[r.path]; ok && r.Kind == "event" && r.Type == "create" {
				lat = append(lat, r.RecordedAt.Sub(st))
				if r.RecordedAt.After(last) {
					last = r.RecordedAt
				}
			}
		}
		return len(lat) >= ops
	})
	b.StopTimer()
	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(ops)/last.Sub(t0).Seconds(), "events/s")
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
	s.p.stop(b)
}
