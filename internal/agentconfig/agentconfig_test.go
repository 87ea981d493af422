package agentconfig_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/fso-project/fso/internal/agentconfig"
)

const good = `defaults:
  watch:
    - path: /etc
      include: ["**/*"]
      exclude: ["**/*.swp"]
      events: [create, modify, delete, rename, attrib]
  important: ["**/*.conf"]
  nodiff: ["**/*.key"]
agents:
  - match: {id: "web-*", labels: {role: web}}
    watch:
      - path: /srv/www
        recursive: false
    debounce: 100ms
  - match: {labels: {role: web}}
    watch:
      - path: /etc
        events: [modify]
`

func TestRender(t *testing.T) {
	doc, err := agentconfig.Parse("fso.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	web := doc.Render("web-1", map[string]string{"role": "web"})
	var paths []string
	for _, r := range web.Watch {
		paths = append(paths, r.Path)
	}
	if want := []string{"/etc", "/srv/www"}; !slices.Equal(paths, want) {
		t.Errorf("web-1 roots: have %v, want %v", paths, want)
	}
	if web.Watch[0].Events[0] != "modify" || web.Watch[1].Recursive || web.Debounce != "100ms" {
		t.Errorf("web-1: overrides not applied in order: %+v", web)
	}
	db := doc.Render("db-1", nil)
	if len(db.Watch) != 1 || !db.Watch[0].Recursive || db.Debounce != "" || !slices.Equal(db.Important, []string{"**/*.conf"}) {
		t.Errorf("db-1: have %+v, want the defaults", db)
	}
	if err := web.CheckAllowed([]string{"/etc"}); err == nil || !strings.Contains(err.Error(), "agents[0].watch[0].path (line 12)") {
		t.Errorf("CheckAllowed: have %v, want an error naming agents[0].watch[0].path (line 12)", err)
	}
	if err := web.CheckAllowed([]string{"/etc", "/srv"}); err != nil {
		t.Errorf("CheckAllowed: %v", err)
	}
}

func TestInvalid(t *testing.T) {
	tests := []struct {
		name  string
		doc   string
		field string // the field the error must name
		line  int    // and its line
	}{
		{"unknown field", "defaults:\n  watch:\n    - path: /etc\n      recurse: true\n", "recurse", 4},
		{"unknown top field", "default:\n  watch: []\n", "default", 1},
		{"bad include glob", "defaults:\n  watch:\n    - path: /etc\n      include: [\"a[\"]\n", "defaults.watch[0].include[0]", 4},
		{"bad exclude glob", "defaults:\n  watch:\n    - path: /etc\n      exclude:\n        - ok\n        - \"{a\"\n", "defaults.watch[0].exclude[1]", 6},
		{"relative root", "defaults:\n  watch:\n    - path: etc\n", "defaults.watch[0].path", 3},
		{"missing root", "defaults:\n  watch:\n    - recursive: true\n", "defaults.watch[0].path", 3},
		{"unknown event type", "defaults:\n  watch:\n    - path: /etc\n      events: [create, chmod]\n", "defaults.watch[0].events[1]", 4},
		{"duplicate root", "defaults:\n  watch:\n    - path: /etc\n    - path: /etc/\n", "defaults.watch[1].path", 4},
		{"overlapping roots", "defaults:\n  watch:\n    - path: /etc\n    - path: /etc/nginx\n", "defaults.watch[1].path", 4},
		{"override overlaps default", "defaults:\n  watch:\n    - path: /etc\nagents:\n  - match: {id: a}\n    watch:\n      - path: /etc/x\n", "agents[0].watch[0].path", 7},
		{"duplicate selector", "agents:\n  - match: {id: \"web-*\"}\n    important: [a]\n  - match: {id: \"web-*\"}\n    important: [b]\n", "agents[1].match", 4},
		{"empty selector", "agents:\n  - match: {}\n    important: [a]\n", "agents[0].match", 2},
		{"bad id glob", "agents:\n  - match: {id: \"web-[\"}\n", "agents[0].match.id", 2},
		{"bad important glob", "defaults:\n  important: [\"x[\"]\n", "defaults.important[0]", 2},
		{"bad nodiff glob", "agents:\n  - match: {id: a}\n    nodiff: [\"x[\"]\n", "agents[0].nodiff[0]", 3},
		{"negative hash limit", "defaults:\n  hash_limit: -1\n", "defaults.hash_limit", 2},
		{"negative rate limit", "defaults:\n  rate_limit: -5\n", "defaults.rate_limit", 2},
		{"bad debounce", "defaults:\n  debounce: soon\n", "defaults.debounce", 2},
		{"wrong type", "defaults:\n  watch:\n    - path: /etc\n      recursive: maybe\n", "", 4},
		{"not yaml", "defaults: [\n", "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := agentconfig.Parse("fso.yaml", []byte(tc.doc))
			if err == nil {
				t.Fatal("have no error, want one")
			}
			if !errors.Is(err, agentconfig.ErrInvalid) {
				t.Errorf("have %v, want it to wrap ErrInvalid", err)
			}
			var e *agentconfig.Error
			if !errors.As(err, &e) {
				t.Fatalf("have %T %v, want *agentconfig.Error", err, err)
			}
			if e.Field != tc.field || (tc.line > 0 && e.Line != tc.line) {
				t.Errorf("have field %q line %d (%v), want field %q line %d", e.Field, e.Line, err, tc.field, tc.line)
			}
			if tc.field != "" && !strings.Contains(err.Error(), tc.field) {
				t.Errorf("message %q does not name %s", err, tc.field)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("defaults:\n  watch:\n    - path: etc\n"))
	f.Add([]byte("agents:\n  - match: {id: \"[\"}\n"))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, src []byte) {
		doc, err := agentconfig.Parse("fuzz.yaml", src)
		if err != nil {
			var e *agentconfig.Error
			if !errors.As(err, &e) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		// A valid document renders for any agent, and the rendering has
		// absolute roots only.
		for _, r := range doc.Render("web-1", map[string]string{"role": "web"}).Watch {
			if !strings.HasPrefix(r.Path, "/") {
				t.Fatalf("relative root %q rendered", r.Path)
			}
		}
	})
}
