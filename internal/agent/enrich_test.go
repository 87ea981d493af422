package agent

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fso-project/fso/internal/event"
)

// TestEnrichStaysInRoot swaps a parent directory, and then the file
// itself, for symlinks to a secret outside the watched root: enrich must
// neither stat nor hash the secret.
func TestEnrichStaysInRoot(t *testing.T) {
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
