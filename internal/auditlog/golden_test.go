package auditlog_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fso-project/fso/internal/auditlog"
	"github.com/fso-project/fso/internal/event"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// TestGoldenLines pins the exact bytes of the line format.
func TestGoldenLines(t *testing.T) {
	size, mode, uid := int64(1234), uint32(0o644), uint32(0)
	mtime := t0.Add(-time.Hour)
	create, err := event.Event{
		ID: "web-1:1", Agent: "web-1", Host: "web-1.example", Seq: 1, Type: event.Create, Path: "/etc/nginx/nginx.conf",
		ObservedAt: t0, EmittedAt: t0.Add(time.Millisecond), Source: event.SourceWatch,
		Size: &size, Mode: &mode, UID: &uid, GID: &uid, MTime: &mtime, SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
	}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	diff, _ := event.Diff{
		Agent: "web-1", Seq: 2, EventID: "web-1:1", Path: "/etc/nginx/nginx.conf",
		Diff: "--- a\n+++ b\n@@ -1 +1 @@\n-a \"quoted\"\n+b\n", EmittedAt: t0,
	}.Marshal()
	rename := ev(t, "web-1", 3, event.Rename, "/srv/caf\xe9 menu.txt") // Latin-1: not UTF-8
	g := gap(t, "web-1", 6, 4, 5)
	overflow, _ := event.Overflow{Agent: "web-1", Seq: 7, Root: "/srv", Reason: "inotify queue overflow", ObservedAt: t0, EmittedAt: t0}.Marshal()

	dir := t.TempDir()
	write(t, open(t, dir, auditlog.Options{}), 10, create, diff, rename, g, overflow)
	have, err := os.ReadFile(seg(dir, 1))
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "lines.golden")
	if *update {
		if err := os.WriteFile(golden, have, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(have, want) {
		t.Errorf("lines differ from %s (go test -update rewrites it)\nhave:\n%s\nwant:\n%s", golden, have, want)
	}
	rs := scanAll(t, dir)
	if rs[2].Path != "/srv/caf\xe9 menu.txt" || rs[2].OldPath != "/srv/caf\xe9 menu.txt.old" {
		t.Errorf("non-UTF-8 paths read back as %q, %q", rs[2].Path, rs[2].OldPath)
	}
	if rs[4].Path != "/srv" || rs[4].Kind != "overflow" {
		t.Errorf("overflow read back as %+v", rs[4])
	}
	verifyOK(t, dir)
}
