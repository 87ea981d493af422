package agent

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/fso-project/fso/internal/event"
)

// Root is one watched tree and what to report of it.
type Root struct {
	Path      string       // absolute, cleaned
	Recursive bool         // watch subdirectories too
	Include   []string     // ** globs relative to Path; empty = everything
	Exclude   []string     // ** globs relative to Path; a matching directory is not watched at all
	Events    []event.Type // empty = every type
}

// Validate checks the root's fields, naming the bad one.
func (r Root) Validate() error {
	if !filepath.IsAbs(r.Path) {
		return fmt.Errorf("watch path %q: must be absolute", r.Path)
	}
	if strings.ContainsRune(r.Path, 0) {
		return fmt.Errorf("watch path %q: contains a NUL byte", r.Path)
	}
	for _, p := range r.Include {
		if !doublestar.ValidatePattern(p) {
			return fmt.Errorf("include pattern %q: bad glob", p)
		}
	}
	for _, p := range r.Exclude {
		if !doublestar.ValidatePattern(p) {
			return fmt.Errorf("exclude pattern %q: bad glob", p)
		}
	}
	for _, t := range r.Events {
		if _, err := event.ParseType(string(t)); err != nil {
			return err
		}
	}
	return nil
}

// filter decides, for one root, which paths are reported and which
// directories are watched.
type filter struct {
	root    string
	include []string
	exclude []string
	// excludeDirs are the directory forms of the exclude patterns: a
	// pattern "a/**" excludes directory "a" and all below it, so "a" need
	// not be watched.
	excludeDirs []string
	events      map[event.Type]bool
}

func newFilter(r Root) *filter {
	f := &filter{root: r.Path, include: r.Include, exclude: r.Exclude}
	for _, p := range r.Exclude {
		f.excludeDirs = append(f.excludeDirs, p)
		if d, ok := strings.CutSuffix(p, "/**"); ok && d != "" && d != "**" {
			f.excludeDirs = append(f.excludeDirs, d)
		}
	}
	if len(r.Events) > 0 {
		f.events = map[event.Type]bool{}
		for _, t := range r.Events {
			f.events[t] = true
		}
	}
	return f
}

// rel returns p relative to the root ("." for the root itself), or false
// when p is not under the root.
func (f *filter) rel(p string) (string, bool) {
	if p == f.root {
		return ".", true
	}
	rest, ok := strings.CutPrefix(p, f.root)
	if !ok || (f.root != "/" && !strings.HasPrefix(rest, "/")) {
		return "", false
	}
	return strings.TrimPrefix(rest, "/"), true
}

// skipDir reports whether directory p is excluded, and so not watched.
func (f *filter) skipDir(p string) bool {
	rel, ok := f.rel(p)
	if !ok {
		return true
	}
	if rel == "." {
		return false
	}
	return matchAny(f.excludeDirs, rel)
}

// wants reports whether a change of type t to path p is reported.
func (f *filter) wants(p string, t event.Type) bool {
	if f.events != nil && !f.events[t] {
		return false
	}
	return f.matchPath(p)
}

func (f *filter) matchPath(p string) bool {
	rel, ok := f.rel(p)
	if !ok || rel == "." {
		return false
	}
	if matchAny(f.exclude, rel) {
		return false
	}
	// Anything below an excluded directory is excluded too.
	for d := filepath.Dir(rel); d != "."; d = filepath.Dir(d) {
		if matchAny(f.excludeDirs, d) {
			return false
		}
	}
	return len(f.include) == 0 || matchAny(f.include, rel)
}

func matchAny(patterns []string, rel string) bool {
	for _, p := range patterns {
		// Match treats the name as a path of '/'-separated parts; file
		// names may hold any byte but '/', and a bad pattern was refused
		// by Validate, so the error can be ignored.
		if ok, _ := doublestar.Match(p, rel); ok {
			return true
		}
	}
	return false
}
