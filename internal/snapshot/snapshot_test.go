package snapshot_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fso-project/fso/internal/snapshot"
)

func open(t *testing.T, dir string, validBelow uint64) *snapshot.Store {
	t.Helper()
	s, err := snapshot.Open(dir, validBelow)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestPutGet(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1)
	const p = "/etc/a\nb.conf"
	if got, err := s.Get(p); err != nil || got.State != snapshot.Unknown {
		t.Fatalf("empty store: have %+v, %v", got, err)
	}
	for seq, c := range []string{"one\r\n", "", "three"} {
		if err := s.Put(snapshot.Snapshot{Path: p, Seq: uint64(10 + seq), State: snapshot.Text, Content: []byte(c)}); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(p)
		if err != nil || got.State != snapshot.Text || string(got.Content) != c || got.Seq != uint64(10+seq) {
			t.Fatalf("have %+v, %v; want %q", got, err, c)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("%d files, want 2 (the latest version and the one before)", len(ents))
	}
	for _, e := range ents {
		if fi, _ := e.Info(); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", e.Name(), fi.Mode())
		}
	}
}

// TestOpenDropsUnspooled: a version whose seq the spool never took (a crash
// between Put and the spool append) is dropped; the previous one is used.
func TestOpenDropsUnspooled(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1)
	s.Put(snapshot.Snapshot{Path: "/f", Seq: 5, State: snapshot.Text, Content: []byte("recorded\n")})
	s.Put(snapshot.Snapshot{Path: "/f", Seq: 9, State: snapshot.Text, Content: []byte("never spooled\n")})
	s2 := open(t, dir, 9)
	got, err := s2.Get("/f")
	if err != nil || string(got.Content) != "recorded\n" {
		t.Errorf("have %+v, %v", got, err)
	}
	s3 := open(t, dir, 100)
	if got, _ := s3.Get("/f"); string(got.Content) != "recorded\n" {
		t.Errorf("the dropped version came back: %+v", got)
	}
}

// TestDamagedIsUnknown: a damaged latest version is Unknown, never an
// older one.
func TestDamagedIsUnknown(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1)
	s.Put(snapshot.Snapshot{Path: "/f", Seq: 1, State: snapshot.Text, Content: []byte("old\n")})
	s.Put(snapshot.Snapshot{Path: "/f", Seq: 2, State: snapshot.Text, Content: []byte("new\n")})
	m, _ := filepath.Glob(filepath.Join(dir, "*.2.snap"))
	if len(m) != 1 {
		t.Fatal(m)
	}
	os.WriteFile(m[0], []byte("garbage"), 0o600)
	s2 := open(t, dir, 3)
	got, err := s2.Get("/f")
	if err == nil || got.State != snapshot.Unknown {
		t.Errorf("have %+v, %v; want Unknown and an error", got, err)
	}
}

func TestOpaqueAndAbsent(t *testing.T) {
	s := open(t, t.TempDir(), 1)
	s.Put(snapshot.Snapshot{Path: "/k", Seq: 1, State: snapshot.Opaque, SHA256: "ab", Size: 3})
	if got, err := s.Get("/k"); err != nil || got.State != snapshot.Opaque || got.SHA256 != "ab" || got.Size != 3 || got.Content != nil {
		t.Errorf("have %+v, %v", got, err)
	}
	s.Put(snapshot.Snapshot{Path: "/k", Seq: 2, State: snapshot.Absent})
	if got, _ := s.Get("/k"); got.State != snapshot.Absent {
		t.Errorf("have %+v", got)
	}
}
