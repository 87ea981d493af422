package agentconfig_test

import (
	"strings"
	"testing"

	"github.com/fso-project/fso/internal/agentconfig"
)

// TestHostilePaths: watch paths a hostile or careless controller could push
// are refused with an error naming the field, never applied.
func TestHostilePaths(t *testing.T) {
	for _, tc := range []struct {
		name string
		path string // YAML double-quoted scalar content
		want string // in the error
	}{
		{"dot-dot", `/srv/../etc`, `".." is not allowed`},
		{"proc", `/proc/self`, "pseudo file system"},
		{"sys", `/sys`, "pseudo file system"},
		{"dev", `/dev/shm`, "pseudo file system"},
		{"NUL", `/srv/a\0b`, "NUL"},
		{"relative", `srv/www`, "absolute"},
		{"5000 chars", "/" + strings.Repeat("a", 4999), "longer than"},
		{"long name", "/srv/" + strings.Repeat("b", 300), "longer than 255"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "defaults:\n  watch:\n    - path: \"" + tc.path + "\"\n"
			_, err := agentconfig.Parse("fso.yaml", []byte(src))
			if err == nil {
				t.Fatalf("path %.40q accepted", tc.path)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "watch") {
				t.Errorf("have %v; want an error naming the watch path and %q", err, tc.want)
			}
			if len(err.Error()) > 600 {
				t.Errorf("error of %d bytes; want a short one", len(err.Error()))
			}
		})
	}
}
