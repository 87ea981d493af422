package auth_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/fso-project/fso/internal/auth"
)

// TestIssueAndLoad: a seed is written 0600 and kept on a second Issue; a
// seed others can read and an auth file with a bad identity are refused.
func TestIssueAndLoad(t *testing.T) {
	dir := t.TempDir()
	id, err := auth.Issue(dir, auth.RoleAgent, "web-1")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, auth.SeedFile(auth.RoleAgent, "web-1"))
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("seed mode %v, want 0600", fi.Mode().Perm())
	}
	again, err := auth.Issue(dir, auth.RoleAgent, "web-1")
	if err != nil || again.Nkey != id.Nkey {
		t.Errorf("second Issue: have %v %v, want the same key %s", again.Nkey, err, id.Nkey)
	}
	os.Chmod(p, 0o644)
	if _, err := auth.ClientOptions(p); !errors.Is(err, auth.ErrInvalid) {
		t.Errorf("world-readable seed: have %v, want ErrInvalid", err)
	}
	for name, f := range map[string]auth.File{
		"bad role": {Identities: []auth.Identity{{Role: "admin", Name: "x", Nkey: id.Nkey}}},
		"bad name": {Identities: []auth.Identity{{Role: auth.RoleAgent, Name: "a.b", Nkey: id.Nkey}}},
		"bad key":  {Identities: []auth.Identity{{Role: auth.RoleAgent, Name: "a", Nkey: "UABC"}}},
		"twice":    {Identities: []auth.Identity{id, {Role: auth.RoleRecorder, Name: "r", Nkey: id.Nkey}}},
	} {
		if err := f.Validate(); !errors.Is(err, auth.ErrInvalid) {
			t.Errorf("%s: have %v, want ErrInvalid", name, err)
		}
	}
}
