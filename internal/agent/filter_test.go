package agent

import (
	"strings"
	"testing"

	"github.com/fso-project/fso/internal/event"
)

func TestFilter(t *testing.T) {
	f := newFilter(Root{Path: "/etc", Include: []string{"**/*.conf"}, Exclude: []string{"**/*.swp", "**/skip/**", "**/.git"},
		Events: []event.Type{event.Create, event.Modify}})
	tests := []struct {
		path  string
		typ   event.Type
		wants bool
	}{
		{"/etc/a.conf", event.Create, true},
		{"/etc/x/y/a.conf", event.Modify, true},
		{"/etc/a.conf", event.Attrib, false}, // type not selected
		{"/etc/a.txt", event.Create, false},  // not included
		{"/etc/a.conf.swp", event.Create, false},
		{"/etc/skip/a.conf", event.Create, false},
		{"/etc/x/skip/y/a.conf", event.Create, false},
		{"/etc/.git/a.conf", event.Create, false}, // below an excluded directory
		{"/etcetera/a.conf", event.Create, false}, // not under the root
		{"/etc", event.Create, false},
	}
	for _, tc := range tests {
		if have := f.wants(tc.path, tc.typ); have != tc.wants {
			t.Errorf("wants(%q, %s) = %v, want %v", tc.path, tc.typ, have, tc.wants)
		}
	}
	for dir, skip := range map[string]bool{"/etc": false, "/etc/x": false, "/etc/skip": true, "/etc/a/skip": true, "/etc/.git": true, "/etc/git": false} {
		if have := f.skipDir(dir); have != skip {
			t.Errorf("skipDir(%q) = %v, want %v", dir, have, skip)
		}
	}
	if f := newFilter(Root{Path: "/"}); !f.wants("/x/y", event.Delete) || f.skipDir("/x") {
		t.Error("root / with no patterns must report everything")
	}
}

func TestRootValidate(t *testing.T) {
	for _, r := range []Root{
		{Path: "relative"},
		{Path: "/a\x00b"},
		{Path: "/a", Include: []string{"[bad"}},
		{Path: "/a", Exclude: []string{"{a,b"}},
		{Path: "/a", Events: []event.Type{"chmod"}},
	} {
		if err := r.Validate(); err == nil {
			t.Errorf("%+v: no error", r)
		}
	}
	c := Config{ID: "a", StateDir: "/s", Roots: []Root{{Path: "/a"}, {Path: "/a/b"}}}
	if err := c.Validate(); err == nil {
		t.Error("overlapping roots accepted")
	}
	c = Config{ID: "a", StateDir: "/s", CommitDelay: MaxCommitDelay}
	if err := c.Validate(); err != nil {
		t.Errorf("commit delay %v: %v", c.CommitDelay, err)
	}
	c.CommitDelay++
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--commit-delay") {
		t.Errorf("commit delay %v: %v, want it refused", c.CommitDelay, err)
	}
}
