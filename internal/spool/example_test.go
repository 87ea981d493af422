package spool_test

import (
	"fmt"
	"log"
	"os"

	"github.com/fso-project/fso/internal/spool"
)

func Example() {
	dir, err := os.MkdirTemp("", "spool")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	s, err := spool.Open(dir, spool.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	// Sequence, spool (fsynced), then publish.
	next := s.NextSeq()
	err = s.Append([]spool.Entry{
		{Seq: next, Subject: "fso.events.web-1.create", Data: []byte(`{"path":"/etc/app.conf"}`)},
		{Seq: next + 1, Subject: "fso.events.web-1.modify", Data: []byte(`{"path":"/etc/app.conf"}`)},
	})
	if err != nil {
		log.Fatal(err)
	}
	es, err := s.Read(s.First(), 100, 1<<20)
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range es {
		fmt.Println(e.Seq, e.Subject, string(e.Data))
	}

	// The recorder's watermark reached seq 1.
	if err := s.Trim(1); err != nil {
		log.Fatal(err)
	}
	fmt.Println("first", s.First(), "next", s.NextSeq())
	// Output:
	// 1 fso.events.web-1.create {"path":"/etc/app.conf"}
	// 2 fso.events.web-1.modify {"path":"/etc/app.conf"}
	// first 2 next 3
}
