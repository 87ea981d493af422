package agent

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fso-project/fso/internal/event"
)

// TestEnrichStaysInRoot swaps a parent directory, and then the file
// itself, for symlinks to a secret outside the watched root: enrich must
// neither stat nor hash the secret.
func TestEnrichStaysInRoot(t *testing.T) {
	if !openat2Works() {
		t.Log("openat2 is refused here: both runs go through os.Root")
	}
	for _, fallback := range []bool{false, true} {
		name := "openat2"
		if fallback {
			name = "os.Root"
		}
		t.Run(name, func(t *testing.T) {
			noOpenat2.Store(fallback)
			defer noOpenat2.Store(false)
			enrichStaysInRoot(t)
		})
	}
}

func enrichStaysInRoot(t *testing.T) {
	root, secret := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(secret, "app.conf"), []byte("SECRET-MARKER\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	inside := filepath.Join(root, "conf", "app.conf")
	os.MkdirAll(filepath.Dir(inside), 0o755)
	os.WriteFile(inside, []byte("ok\n"), 0o644)

	e := event.Event{Type: event.Modify, Path: inside}
	if _, ok := enrich(&e, 1<<20, root); !ok || e.SHA256 == "" {
		t.Fatalf("file inside the root: have ok=%v sha256=%q, want both", ok, e.SHA256)
	}

	// The parent directory becomes a link to the secret's directory.
	os.Rename(filepath.Join(root, "conf"), filepath.Join(root, "conf.old"))
	if err := os.Symlink(secret, filepath.Join(root, "conf")); err != nil {
		t.Fatal(err)
	}
	e = event.Event{Type: event.Modify, Path: inside}
	if _, ok := enrich(&e, 1<<20, root); ok || e.SHA256 != "" || e.Size != nil {
		t.Errorf("through a symlinked parent: have ok=%v sha256=%q size=%v, want nothing", ok, e.SHA256, e.Size)
	}

	// The file itself becomes a link to the secret.
	link := filepath.Join(root, "conf.old", "app.conf")
	os.Remove(link)
	os.Symlink(filepath.Join(secret, "app.conf"), link)
	e = event.Event{Type: event.Modify, Path: link}
	if _, ok := enrich(&e, 1<<20, root); !ok || e.SHA256 != "" || *e.Mode&0o777 == 0o600 {
		t.Errorf("symlink in place of the file: have ok=%v sha256=%q, want the link's own stat and no hash", ok, e.SHA256)
	}

	// A path outside the root is not described at all.
	e = event.Event{Type: event.Modify, Path: filepath.Join(secret, "app.conf")}
	if _, ok := enrich(&e, 1<<20, root); ok {
		t.Errorf("path outside the root: enrich described it")
	}
}

// TestEnrichDescribes: both implementations describe the same files the
// same way, at every depth, including the root itself, a directory, an
// empty file, a FIFO (no hash, no hang) and a relative symlink that stays
// inside the root.
func TestEnrichDescribes(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "a", "b"), 0o755)
	os.WriteFile(filepath.Join(root, "top"), []byte("top\n"), 0o640)
	os.WriteFile(filepath.Join(root, "a", "b", "deep"), []byte("deep\n"), 0o600)
	os.WriteFile(filepath.Join(root, "a", "empty"), nil, 0o644)
	if err := syscall.Mkfifo(filepath.Join(root, "a", "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Symlink("b", filepath.Join(root, "a", "inner"))
	paths := []string{root, filepath.Join(root, "top"), filepath.Join(root, "a"), filepath.Join(root, "a", "b", "deep"),
		filepath.Join(root, "a", "empty"), filepath.Join(root, "a", "fifo"), filepath.Join(root, "a", "inner"),
		filepath.Join(root, "a", "inner", "deep"), filepath.Join(root, "gone")}
	for _, p := range paths {
		var got [2]event.Event
		var oks [2]bool
		for i, fallback := range []bool{false, true} {
			noOpenat2.Store(fallback)
			got[i] = event.Event{Type: event.Modify, Path: p}
			_, oks[i] = enrich(&got[i], 1<<20, root)
		}
		noOpenat2.Store(false)
		desc := func(e event.Event) string {
			if e.Size == nil {
				return fmt.Sprintf("no stat, hash %q", e.SHA256)
			}
			return fmt.Sprintf("size %d mode %o uid %d gid %d mtime %v dir %v hash %q", *e.Size, *e.Mode, *e.UID, *e.GID, *e.MTime, e.IsDir, e.SHA256)
		}
		if a, b := desc(got[0]), desc(got[1]); oks[0] != oks[1] || a != b {
			t.Errorf("%s: openat2 %v %s, os.Root %v %s", p, oks[0], a, oks[1], b)
		}
		a := got[0]
		if p == filepath.Join(root, "a", "b", "deep") && a.SHA256 == "" {
			t.Errorf("%s: no hash", p)
		}
	}
}

// TestEnrichHashSizes: the hash is the content's whatever its size against
// the read buffer.
func TestEnrichHashSizes(t *testing.T) {
	root := t.TempDir()
	n := len(*hashBufs.Get().(*[]byte))
	for _, size := range []int{0, 1, n - 1, n, n + 1, 3*n + 7} {
		p := filepath.Join(root, fmt.Sprint(size))
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(i*7 + size)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		e := event.Event{Type: event.Modify, Path: p}
		if _, ok := enrich(&e, 1<<20, root); !ok {
			t.Fatalf("%d bytes: not described", size)
		}
		if want := fmt.Sprintf("%x", sha256.Sum256(b)); e.SHA256 != want {
			t.Errorf("%d bytes: hash %s, want %s", size, e.SHA256, want)
		}
	}
}

// TestHashReadsToEnd: a file whose size fstat gives as 0 may still hold
// content (procfs, sysfs, FUSE with direct_io), returned in short reads.
// The hash is of all of it: reading stops at a read of 0, not at a short
// read nor at the size fstat gave (an optimization tried once, and
// dropped for this).
func TestHashReadsToEnd(t *testing.T) {
	const name = "kallsyms" // megabytes, stable while no module loads
	want, err := os.ReadFile("/proc/" + name)
	if err != nil || len(want) < 1<<20 {
		t.Skipf("/proc/%s: %d bytes, %v", name, len(want), err)
	}
	rootFD, err := unix.Open("/proc", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rootFD)
	var st unix.Stat_t
	if err := lstatBeneath(rootFD, name, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != 0 {
		t.Skipf("/proc/%s: size %d, not the case tested", name, st.Size)
	}
	sum, err := hashBeneath(rootFD, name, 64<<20, &st)
	if err != nil {
		t.Fatal(err)
	}
	if w := fmt.Sprintf("%x", sha256.Sum256(want)); sum != w {
		t.Errorf("hash of /proc/%s (%d bytes): %s, want %s", name, len(want), sum, w)
	}
}
