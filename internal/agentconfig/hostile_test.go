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

// A rendering at agents.<id> gets the checks fso.yaml gets, whoever wrote
// the key.
func TestDecodeAgent(t *testing.T) {
	good := `{"revision":3,"doc_sha256":"x","watch":[{"path":"/srv","recursive":true,"events":["create"]}],"debounce":"10ms"}`
	if a, err := agentconfig.DecodeAgent([]byte(good)); err != nil || a.Revision != 3 || a.Watch[0].Path != "/srv" {
		t.Fatalf("good rendering: %+v %v", a, err)
	}
	for name, bad := range map[string]string{
		"no revision":   `{"watch":[]}`,
		"unknown field": `{"revision":1,"evil":true}`,
		"relative path": `{"revision":1,"watch":[{"path":"srv"}]}`,
		"dot dot":       `{"revision":1,"watch":[{"path":"/srv/../etc"}]}`,
		"proc":          `{"revision":1,"watch":[{"path":"/proc/1"}]}`,
		"nul":           `{"revision":1,"watch":[{"path":"/a\u0000b"}]}`,
		"bad glob":      `{"revision":1,"watch":[{"path":"/a","include":["[x"]}]}`,
		"bad event":     `{"revision":1,"watch":[{"path":"/a","events":["chmod"]}]}`,
		"overlap":       `{"revision":1,"watch":[{"path":"/a"},{"path":"/a/b"}]}`,
		"bad debounce":  `{"revision":1,"debounce":"soon"}`,
		"negative rate": `{"revision":1,"rate_limit":-1}`,
		"not json":      `defaults: {}`,
	} {
		if _, err := agentconfig.DecodeAgent([]byte(bad)); err == nil {
			t.Errorf("%s: accepted %s", name, bad)
		}
	}
}
