package spool_test

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/fso-project/fso/internal/spool"
)

// BenchmarkAppend appends batches of 300-byte entries, each batch fsynced.
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s, err := spool.Open(b.TempDir(), spool.Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			data := make([]byte, 300)
			es := make([]spool.Entry, size)
			next := uint64(1)
			fsyncs := spool.Fsyncs(s)
			b.SetBytes(int64(size * len(data)))
			for b.Loop() {
				for i := range es {
					es[i] = spool.Entry{Seq: next + uint64(i), Subject: "fso.events.agent-1.modify", Data: data}
				}
				if err := s.Append(es); err != nil {
					b.Fatal(err)
				}
				next += uint64(size)
				if err := s.Trim(next - 1); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(next-1)/b.Elapsed().Seconds(), "entries/s")
			b.ReportMetric(float64(spool.Fsyncs(s)-fsyncs)/float64(b.N), "fsyncs/op")
		})
	}
}

// BenchmarkRead reads a spool of 100,000 300-byte entries from start to end,
// 512 entries or 4 MiB at a time, as the agent's publisher does.
func BenchmarkRead(b *testing.B) {
	s, err := spool.Open(b.TempDir(), spool.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const total = 100_000
	data := make([]byte, 300)
	for seq := uint64(1); seq <= total; seq += 1000 {
		es := make([]spool.Entry, 1000)
		for i := range es {
			es[i] = spool.Entry{Seq: seq + uint64(i), Subject: "fso.events.agent-1.modify", Data: data}
		}
		if err := s.Append(es); err != nil {
			b.Fatal(err)
		}
	}
	from := uint64(1)
	read := 0
	for b.Loop() {
		es, err := s.Read(from, 512, 4<<20)
		if err != nil {
			b.Fatal(err)
		}
		read += len(es)
		if from = es[len(es)-1].Seq + 1; from > total {
			from = 1
		}
	}
	b.SetBytes(int64(read / b.N * len(data)))
	b.ReportMetric(float64(read)/b.Elapsed().Seconds(), "entries/s")
}
