package auditlog_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/fso-project/fso/internal/auditlog"
	"github.com/fso-project/fso/internal/event"
)

func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "audit")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	w, err := auditlog.Open(dir, auditlog.Options{Now: func() time.Time { return now }})
	if err != nil {
		log.Fatal(err)
	}
	for seq, p := range []string{"/etc/hosts", "/etc/nginx/nginx.conf"} {
		rec, _ := event.Event{
			ID: event.ID("web-1", uint64(seq+1)), Agent: "web-1", Host: "web", Seq: uint64(seq + 1),
			Type: event.Modify, Path: p, ObservedAt: now, EmittedAt: now, Source: event.SourceWatch,
		}.Marshal()
		if err := w.Append(rec); err != nil {
			log.Fatal(err)
		}
	}
	// Acknowledge the records only once Sync has returned nil.
	if err := w.Sync(); err != nil {
		log.Fatal(err)
	}
	w.Close()

	rep, err := auditlog.Verify(ctx, dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("records:", rep.Records, "problem:", rep.Problem)
	err = auditlog.Query(ctx, dir, auditlog.Filter{Paths: []string{"**/*.conf"}}, func(r auditlog.Record) error {
		fmt.Println(auditlog.FormatText(r))
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// records: 2 problem: <nil>
	// 2026-03-01T12:00:00.000000000Z web-1 event/modify /etc/nginx/nginx.conf
}
