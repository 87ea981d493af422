// Package agentconfig is the fso.yaml schema: a strict decoder, Validate
// naming the bad field with its line and column, and Render, which turns the
// document into one agent's effective configuration (defaults, then every
// override whose match selects the agent, in order).
//
// The document:
//
//	defaults:             # every agent
//	  watch:
//	    - path: /etc      # absolute
//	      recursive: true # default true
//	      include: ["**/*"]
//	      exclude: ["**/*.swp"]
//	      events: [create, modify, delete, rename, attrib]
//	  important: ["**/*.conf"]
//	  nodiff: ["**/*.key"]
//	  hash_limit: 67108864
//	  debounce: 50ms
//	agents:               # overrides, applied in order onto defaults
//	  - match: {id: "web-*", labels: {role: web}}
//	    watch:
//	      - path: /srv/www
//
// Merging: an override's watch entry replaces the entry of the same path,
// or is added; important, nodiff, hash_limit and debounce replace when given.
package agentconfig

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"go.yaml.in/yaml/v3"

	"github.com/fso-project/fso/internal/event"
)

// Keys in the fso-config bucket.
const (
	// DocKey holds the fso.yaml document as applied; its KV revision is the
	// configuration revision.
	DocKey = "doc"
	// AgentPrefix + id holds the controller's rendering of the document for
	// one known agent (JSON of [Agent]).
	AgentPrefix = "agents."
)

// MaxDocBytes bounds a document.
const MaxDocBytes = 1 << 20

// Document is fso.yaml.
type Document struct {
	Defaults Spec       `yaml:"defaults"`
	Agents   []Override `yaml:"agents"`

	name string
	root *yaml.Node
}

// Spec is what defaults and each override may set.
type Spec struct {
	Watch     []Watch  `yaml:"watch"`
	Important []string `yaml:"important"`
	NoDiff    []string `yaml:"nodiff"`
	HashLimit *int64   `yaml:"hash_limit"`
	Debounce  *string  `yaml:"debounce"`
	// RateLimit caps the records per second the agent publishes; the rest
	// wait in its spool, nothing is dropped. 0: no cap.
	RateLimit *float64 `yaml:"rate_limit"`
}

// Override applies Spec to the agents Match selects.
type Override struct {
	Match Match `yaml:"match"`
	Spec  `yaml:",inline"`
}

// Match selects agents: id is a glob (path.Match syntax) over the agent id,
// every label must be announced by the agent with this value.
type Match struct {
	ID     string            `yaml:"id"`
	Labels map[string]string `yaml:"labels"`
}

// Watch is one watched root.
type Watch struct {
	Path      string   `yaml:"path"`
	Recursive *bool    `yaml:"recursive"`
	Include   []string `yaml:"include"`
	Exclude   []string `yaml:"exclude"`
	Events    []string `yaml:"events"`
}

// Error is a problem in the document, at a field.
type Error struct {
	File   string
	Line   int
	Column int
	Field  string // e.g. agents[1].watch[0].path
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrInvalid is wrapped by every error Parse returns.
var ErrInvalid = errors.New("agentconfig: invalid configuration")

func (e *Error) Is(target error) bool { return target == ErrInvalid }

var unknownFieldRe = regexp.MustCompile(`line (\d+): field (\S+) not found in type \S+`)

// Parse decodes src strictly (an unknown field is an error) and validates
// it. name is the file name used in errors. Errors are *Error.
func Parse(name string, src []byte) (*Document, error) {
	if len(src) > MaxDocBytes {
		return nil, &Error{File: name, Msg: fmt.Sprintf("%d bytes, more than %d", len(src), MaxDocBytes)}
	}
	doc := &Document{name: name}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(doc); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) && len(te.Errors) > 0 {
			msg := te.Errors[0]
			if m := unknownFieldRe.FindStringSubmatch(msg); m != nil {
				var line int
				fmt.Sscan(m[1], &line)
				return nil, &Error{File: name, Line: line, Column: 1, Field: m[2], Msg: "unknown field"}
			}
			return nil, parseErr(name, msg)
		}
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: name, Msg: "empty document"}
		}
		return nil, parseErr(name, err.Error())
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Error{File: name, Line: extra.Line, Column: extra.Column, Msg: "more than one YAML document"}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		return nil, parseErr(name, err.Error())
	}
	doc.root = &root
	if err := doc.Validate(); err != nil {
		return nil, err
	}
	return doc, nil
}

var lineRe = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func parseErr(name, msg string) *Error {
	if m := lineRe.FindStringSubmatch(msg); m != nil {
		var line int
		fmt.Sscan(m[1], &line)
		return &Error{File: name, Line: line, Msg: m[2]}
	}
	return &Error{File: name, Msg: strings.TrimPrefix(msg, "yaml: ")}
}

// node finds the YAML node at a field path like ["agents", 1, "watch", 0,
// "path"]; it returns the deepest node found.
func (d *Document) node(p ...any) *yaml.Node {
	n := d.root
	if n == nil {
		return nil
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, step := range p {
		switch s := step.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return n
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == s {
					n, found = n.Content[i+1], true
					break
				}
			}
			if !found {
				// Fields of Spec are inlined into an override.
				return n
			}
		case int:
			if n.Kind != yaml.SequenceNode || s >= len(n.Content) {
				return n
			}
			n = n.Content[s]
		}
	}
	return n
}

// errAt builds an Error for the field at p.
func (d *Document) errAt(msg string, p ...any) *Error {
	e := &Error{File: d.name, Field: fieldName(p), Msg: msg}
	if n := d.node(p...); n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

func fieldName(p []any) string {
	var b strings.Builder
	for _, s := range p {
		switch s := s.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s)
		case int:
			fmt.Fprintf(&b, "[%d]", s)
		}
	}
	return b.String()
}

// Validate checks every field and returns the first problem as an *Error.
func (d *Document) Validate() error {
	if err := d.validateSpec(&d.Defaults, "defaults"); err != nil {
		return err
	}
	for i := range d.Agents {
		o := &d.Agents[i]
		if o.Match.ID == "" && len(o.Match.Labels) == 0 {
			return d.errAt("empty: name an id glob and/or labels (settings for every agent belong in defaults)", "agents", i, "match")
		}
		if o.Match.ID != "" {
			if _, err := path.Match(o.Match.ID, ""); err != nil {
				return d.errAt(fmt.Sprintf("id glob %q: %v", o.Match.ID, err), "agents", i, "match", "id")
			}
		}
		for k := range o.Match.Labels {
			if k == "" {
				return d.errAt("empty label name", "agents", i, "match", "labels")
			}
		}
		for j := range d.Agents[:i] {
			if sameMatch(d.Agents[j].Match, o.Match) {
				prev := d.node("agents", j, "match")
				return d.errAt(fmt.Sprintf("same selector as agents[%d] (line %d): merge the two", j, prev.Line), "agents", i, "match")
			}
		}
		if err := d.validateSpec(&o.Spec, "agents", i); err != nil {
			return err
		}
		for k, w := range o.Watch {
			for j, dw := range d.Defaults.Watch {
				p, q := filepath.Clean(w.Path), filepath.Clean(dw.Path)
				if p != q && (within(p, q) || within(q, p)) {
					return d.errAt(fmt.Sprintf("%s overlaps defaults.watch[%d] %s (use the same path to replace it)", w.Path, j, dw.Path), "agents", i, "watch", k, "path")
				}
			}
		}
	}
	return nil
}

func sameMatch(a, b Match) bool {
	return a.ID == b.ID && maps.Equal(a.Labels, b.Labels)
}

func (d *Document) validateSpec(s *Spec, at ...any) error {
	f := func(p ...any) []any { return append(slices.Clone(at), p...) }
	seen := map[string]int{}
	for i, w := range s.Watch {
		if w.Path == "" {
			return d.errAt("required", f("watch", i, "path")...)
		}
		if err := checkRootPath(w.Path); err != nil {
			return d.errAt(err.Error(), f("watch", i, "path")...)
		}
		clean := filepath.Clean(w.Path)
		if j, dup := seen[clean]; dup {
			return d.errAt(fmt.Sprintf("%s is already watch[%d]", w.Path, j), f("watch", i, "path")...)
		}
		for p, j := range seen {
			if within(clean, p) || within(p, clean) {
				return d.errAt(fmt.Sprintf("%s overlaps watch[%d] %s", w.Path, j, p), f("watch", i, "path")...)
			}
		}
		seen[clean] = i
		for k, g := range w.Include {
			if !doublestar.ValidatePattern(g) {
				return d.errAt(fmt.Sprintf("bad glob %q", g), f("watch", i, "include", k)...)
			}
		}
		for k, g := range w.Exclude {
			if !doublestar.ValidatePattern(g) {
				return d.errAt(fmt.Sprintf("bad glob %q", g), f("watch", i, "exclude", k)...)
			}
		}
		for k, t := range w.Events {
			if _, err := event.ParseType(t); err != nil {
				return d.errAt(fmt.Sprintf("unknown event type %q (want create, modify, delete, rename or attrib)", t), f("watch", i, "events", k)...)
			}
		}
	}
	for k, g := range s.Important {
		if !doublestar.ValidatePattern(g) {
			return d.errAt(fmt.Sprintf("bad glob %q", g), f("important", k)...)
		}
	}
	for k, g := range s.NoDiff {
		if !doublestar.ValidatePattern(g) {
			return d.errAt(fmt.Sprintf("bad glob %q", g), f("nodiff", k)...)
		}
	}
	if s.HashLimit != nil && *s.HashLimit < 0 {
		return d.errAt("must not be negative", f("hash_limit")...)
	}
	if s.RateLimit != nil && *s.RateLimit < 0 {
		return d.errAt("must not be negative (0: no limit)", f("rate_limit")...)
	}
	if s.Debounce != nil {
		if v, err := time.ParseDuration(*s.Debounce); err != nil || v < 0 || v > time.Minute {
			return d.errAt(fmt.Sprintf("%q: want a duration between 0s and 1m, like 50ms", *s.Debounce), f("debounce")...)
		}
	}
	return nil
}

func checkRootPath(p string) error {
	if strings.ContainsRune(p, 0) {
		return errors.New("contains a NUL byte")
	}
	if len(p) > maxPath {
		return fmt.Errorf("path of %d bytes is longer than %d", len(p), maxPath)
	}
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%q must be an absolute path", p)
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return fmt.Errorf("%q: \"..\" is not allowed; give the path it means", p)
		}
		if len(el) > maxName {
			return fmt.Errorf("%q: a name of %d bytes is longer than %d", p[:min(len(p), 80)]+"…", len(el), maxName)
		}
	}
	for _, d := range pseudoFS {
		if within(filepath.Clean(p), d) {
			return fmt.Errorf("%q is in %s, a kernel pseudo file system: nothing there is a file to audit", p, d)
		}
	}
	return nil
}

// Limits of a watch path (PATH_MAX and NAME_MAX on Linux).
const (
	maxPath = 4095
	maxName = 255
)

// pseudoFS are directories whose content the kernel makes up: reading it
// can block, change the system or show other processes' secrets.
var pseudoFS = []string{"/proc", "/sys", "/dev"}

func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// Agent is one agent's effective configuration: what the controller stores
// at agents.<id> and what the agent applies.
type Agent struct {
	Revision  uint64   `json:"revision"`   // KV revision of the document
	DocSHA256 string   `json:"doc_sha256"` // of the document's bytes
	Watch     []Root   `json:"watch"`
	Important []string `json:"important,omitempty"`
	NoDiff    []string `json:"nodiff,omitempty"`
	HashLimit int64    `json:"hash_limit,omitempty"` // 0: the agent's own default
	Debounce  string   `json:"debounce,omitempty"`   // "": the agent's own default
	RateLimit float64  `json:"rate_limit,omitempty"` // records/s published; 0: the agent's own
	// Matched lists the overrides applied, by index.
	Matched []int `json:"matched,omitempty"`
}

// Root is one watched root of an Agent.
type Root struct {
	Path      string   `json:"path"`
	Recursive bool     `json:"recursive"`
	Include   []string `json:"include,omitempty"`
	Exclude   []string `json:"exclude,omitempty"`
	Events    []string `json:"events,omitempty"`
	// Field is where in the document the root comes from, for errors.
	Field string `json:"field,omitempty"`
}

// Selects reports whether m selects the agent.
func (m Match) Selects(id string, labels map[string]string) bool {
	if m.ID != "" {
		if ok, _ := path.Match(m.ID, id); !ok {
			return false
		}
	}
	for k, v := range m.Labels {
		if have, ok := labels[k]; !ok || have != v {
			return false
		}
	}
	return true
}

// Render returns the effective configuration of agent id with labels.
func (d *Document) Render(id string, labels map[string]string) Agent {
	var a Agent
	d.apply(&a, &d.Defaults, "defaults")
	for i, o := range d.Agents {
		if o.Match.Selects(id, labels) {
			a.Matched = append(a.Matched, i)
			d.apply(&a, &o.Spec, "agents", i)
		}
	}
	return a
}

func (d *Document) apply(a *Agent, s *Spec, at ...any) {
	for i, w := range s.Watch {
		p := append(slices.Clone(at), "watch", i, "path")
		field := fieldName(p)
		if n := d.node(p...); n != nil {
			field = fmt.Sprintf("%s (line %d)", field, n.Line)
		}
		r := Root{Path: filepath.Clean(w.Path), Recursive: w.Recursive == nil || *w.Recursive,
			Include: w.Include, Exclude: w.Exclude, Events: w.Events, Field: field}
		if j := slices.IndexFunc(a.Watch, func(o Root) bool { return o.Path == r.Path }); j >= 0 {
			a.Watch[j] = r
			continue
		}
		a.Watch = append(a.Watch, r)
	}
	if s.Important != nil {
		a.Important = s.Important
	}
	if s.NoDiff != nil {
		a.NoDiff = s.NoDiff
	}
	if s.HashLimit != nil {
		a.HashLimit = *s.HashLimit
	}
	if s.Debounce != nil {
		a.Debounce = *s.Debounce
	}
	if s.RateLimit != nil {
		a.RateLimit = *s.RateLimit
	}
}

// Check reports roots that overlap, which can happen when two overrides
// select the same agent.
func (a Agent) Check() error {
	for i, r := range a.Watch {
		for _, o := range a.Watch[:i] {
			if within(r.Path, o.Path) || within(o.Path, r.Path) {
				return fmt.Errorf("%s: %s overlaps %s from %s", r.Field, r.Path, o.Path, o.Field)
			}
		}
	}
	return nil
}

// CheckAllowed reports the first root of a outside allow (the agent's
// --allow-root list). An empty allow list allows every root.
func (a Agent) CheckAllowed(allow []string) error {
	if len(allow) == 0 {
		return nil
	}
	for _, r := range a.Watch {
		if !slices.ContainsFunc(allow, func(dir string) bool { return within(r.Path, filepath.Clean(dir)) }) {
			return fmt.Errorf("%s: %s is outside the agent's --allow-root list %v", r.Field, r.Path, allow)
		}
	}
	return nil
}

// DocHash is the hex sha256 of a document's bytes.
func DocHash(src []byte) string {
	h := sha256.Sum256(src)
	return hex.EncodeToString(h[:])
}

// DecodeAgent reads a rendering stored at agents.<id> and checks it as
// Parse checks a document: an agent applies nothing it would refuse from
// fso.yaml, whoever wrote the key.
func DecodeAgent(data []byte) (Agent, error) {
	var a Agent
	if len(data) > MaxDocBytes {
		return a, fmt.Errorf("rendered configuration of %d bytes, more than %d", len(data), MaxDocBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return a, fmt.Errorf("rendered configuration: %w", err)
	}
	if a.Revision == 0 {
		return a, errors.New("rendered configuration: revision is missing")
	}
	for i, r := range a.Watch {
		field := r.Field
		if field == "" {
			field = fmt.Sprintf("watch[%d]", i)
		}
		if err := checkRootPath(r.Path); err != nil {
			return a, fmt.Errorf("%s.path: %w", field, err)
		}
		for _, g := range append(slices.Clone(r.Include), r.Exclude...) {
			if !doublestar.ValidatePattern(g) {
				return a, fmt.Errorf("%s: bad glob %q", field, g)
			}
		}
		for _, t := range r.Events {
			if _, err := event.ParseType(t); err != nil {
				return a, fmt.Errorf("%s.events: %w", field, err)
			}
		}
	}
	for _, g := range append(slices.Clone(a.Important), a.NoDiff...) {
		if !doublestar.ValidatePattern(g) {
			return a, fmt.Errorf("important/nodiff: bad glob %q", g)
		}
	}
	if a.HashLimit < 0 || a.RateLimit < 0 {
		return a, errors.New("hash_limit and rate_limit must not be negative")
	}
	if a.Debounce != "" {
		if v, err := time.ParseDuration(a.Debounce); err != nil || v < 0 || v > time.Minute {
			return a, fmt.Errorf("debounce %q: want a duration between 0s and 1m", a.Debounce)
		}
	}
	return a, a.Check()
}
