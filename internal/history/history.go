// Package history replays the recorded changes of one file from the audit
// log: its list of changes, and its content at any recorded time, rebuilt
// from the diff records alone (the proof that they are complete).
//
// # Replay
//
// The agent takes each diff from the content it last reported, so the
// records of a path, in log order, form a chain: each diff applies to the
// content the previous diff produced ([diff.DevNull] as its old side starts
// afresh), whatever events without a diff came between. Every step is
// checked against the old and new sha256 the record carries; a step that
// does not fit (a lost record reported as a gap, a missing large-diff
// object) makes the content unknown until a diff from /dev/null.
//
// Times are the events' observed_at. Records are replayed in log order,
// which is each agent's seq order; pass an agent id when several agents
// report the same path.
package history

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/fso-project/fso/internal/auditlog"
	"github.com/fso-project/fso/internal/diff"
	"github.com/fso-project/fso/internal/event"
	"github.com/fso-project/fso/internal/recorder"
)

// State is what is known of the file after a step.
type State string

const (
	Text    State = "text"    // content known
	Opaque  State = "opaque"  // exists; only hash and size known (binary, nodiff, too large)
	Absent  State = "absent"  // does not exist
	Unknown State = "unknown" // exists or not, content not recorded
)

// Step is one recorded change of the file: an event, with its diff when
// the file was important.
type Step struct {
	At      time.Time // the event's observed_at
	EventID string
	Agent   string
	Type    string // event type; "rename-away" when the file was renamed to another name
	OldPath string // rename: the name it had
	HasDiff bool
	Diff    *event.Diff // nil when the event had no diff record
	Added   int         // lines added by the diff
	Removed int         // lines removed by the diff

	State   State
	SHA256  string
	Size    int64
	Content []byte // State Text
	Reason  string // why not Text
}

// Replay calls fn with each step of path's history, in log order, with
// the state after it. agent, when set, selects one agent's records.
func Replay(ctx context.Context, dir, path, agent string, fn func(Step) error) error {
	rp := replayer{dir: dir, path: path, base: Step{State: Unknown, Reason: "no diff recorded yet"}, events: map[string]*Step{}}
	err := auditlog.Scan(ctx, dir, func(r auditlog.Record) error {
		if agent != "" && r.Agent != agent {
			return nil
		}
		switch r.Kind {
		case event.KindEvent:
			return rp.event(r, fn)
		case event.KindDiff:
			if r.Path != path {
				return nil
			}
			return rp.diff(r, fn)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return rp.flush(fn)
}

type replayer struct {
	dir, path string
	base      Step // the content the last diff produced: what the next diff applies to
	pending   *Step
	events    map[string]*Step // content events awaiting their diff, by id
}

// flush reports a content event that got no diff.
func (rp *replayer) flush(fn func(Step) error) error {
	if rp.pending == nil {
		return nil
	}
	s := *rp.pending
	rp.pending = nil
	delete(rp.events, s.EventID)
	return fn(s)
}

func (rp *replayer) event(r auditlog.Record, fn func(Step) error) error {
	onto := r.Path == rp.path
	away := r.Type == string(event.Rename) && r.OldPath == rp.path && !onto
	if !onto && !away {
		return nil
	}
	if err := rp.flush(fn); err != nil {
		return err
	}
	s := Step{At: r.ObservedAt, EventID: r.ID, Agent: r.Agent, Type: r.Type, OldPath: r.OldPath}
	switch {
	case away:
		s.Type, s.State = "rename-away", Absent
		return fn(s)
	case r.Type == string(event.Delete):
		s.State = Absent
		rp.pending = &s // a diff may follow
	case r.Type == string(event.Attrib):
		return nil
	default:
		var e struct {
			SHA256 string `json:"sha256"`
			Size   *int64 `json:"size"`
		}
		json.Unmarshal(r.Raw, &e)
		s.State, s.SHA256, s.Reason = Unknown, e.SHA256, "no diff recorded for this change"
		if e.Size != nil {
			s.Size = *e.Size
		}
		rp.pending = &s
	}
	rp.events[r.ID] = rp.pending
	return nil
}

func (rp *replayer) diff(r auditlog.Record, fn func(Step) error) error {
	var d event.Diff
	if err := json.Unmarshal(r.Raw, &d); err != nil {
		return fmt.Errorf("history: %s line %d: %w", r.Segment, r.Line, err)
	}
	d.Path = r.Path
	s := Step{At: r.RecordedAt, EventID: d.EventID, Agent: d.Agent, Type: "?"}
	if ev, ok := rp.events[d.EventID]; ok {
		s = *ev
		delete(rp.events, d.EventID)
		if rp.pending == ev {
			rp.pending = nil
		}
	}
	s.HasDiff, s.Diff = true, &d
	next := rp.apply(&d, &s)
	rp.base = next
	s.State, s.SHA256, s.Size, s.Content, s.Reason = next.State, next.SHA256, next.Size, next.Content, next.Reason
	return fn(s)
}

// apply returns the state after d, from rp.base.
func (rp *replayer) apply(d *event.Diff, s *Step) Step {
	unknown := func(format string, a ...any) Step {
		return Step{State: Unknown, Reason: fmt.Sprintf(format, a...)}
	}
	text := d.Diff
	if d.Object != "" {
		b, err := os.ReadFile(recorder.ObjectPath(rp.dir, d.DiffSHA256))
		if err != nil {
			return unknown("large diff %s not in the audit directory: %v", d.Object, err)
		}
		if sum(b) != d.DiffSHA256 {
			return unknown("large diff %s does not match its recorded hash", d.Object)
		}
		text = string(b)
	}
	size := func(p *int64) int64 {
		if p == nil {
			return 0
		}
		return *p
	}
	if text == "" {
		switch {
		case d.Binary || d.Truncated:
			if d.NewSHA256 == "" {
				return unknown("%s", d.Reason)
			}
			return Step{State: Opaque, SHA256: d.NewSHA256, Size: size(d.NewSize), Reason: d.Reason}
		case d.NewSHA256 == "":
			return Step{State: Absent}
		case rp.base.State == Text && rp.base.SHA256 == d.NewSHA256:
			return rp.base // unchanged
		default:
			return unknown("unchanged content of a version not recorded")
		}
	}
	p, err := diff.Parse(text)
	if err != nil {
		return unknown("%v", err)
	}
	for _, h := range p.Hunks {
		for _, l := range h.Lines {
			switch l[0] {
			case '+':
				s.Added++
			case '-':
				s.Removed++
			}
		}
	}
	var old []byte
	if !p.FromNull() {
		if rp.base.State != Text {
			return unknown("diff applies to content that was not recorded (%s)", rp.base.Reason)
		}
		if d.OldSHA256 != "" && d.OldSHA256 != rp.base.SHA256 {
			return unknown("diff applies to sha256 %s, but the recorded content is %s: records missing", short(d.OldSHA256), short(rp.base.SHA256))
		}
		old = rp.base.Content
	}
	b, err := p.Apply(old)
	if err != nil {
		return unknown("%v", err)
	}
	if p.ToNull() {
		return Step{State: Absent}
	}
	got := sum(b)
	if d.NewSHA256 != "" && got != d.NewSHA256 {
		return unknown("rebuilt content has sha256 %s, the record says %s", short(got), short(d.NewSHA256))
	}
	return Step{State: Text, SHA256: got, Size: int64(len(b)), Content: b}
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// ErrNotRecorded is wrapped by [Reconstruct] when the content at the time
// asked for is not in the audit log (binary, nodiff, too large, absent, or
// before the first record).
var ErrNotRecorded = errors.New("history: content not recorded")

// Reconstruct returns the content path had at time at, rebuilt from the
// diffs, and the step that produced it.
func Reconstruct(ctx context.Context, dir, path, agent string, at time.Time) ([]byte, Step, error) {
	var last *Step
	errStop := errors.New("stop")
	err := Replay(ctx, dir, path, agent, func(s Step) error {
		if s.At.After(at) {
			return errStop
		}
		last = &s
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, Step{}, err
	}
	if last == nil {
		return nil, Step{}, fmt.Errorf("%w: no record of %s at or before %s", ErrNotRecorded, path, at.UTC().Format(time.RFC3339Nano))
	}
	switch last.State {
	case Text:
		return last.Content, *last, nil
	case Absent:
		return nil, *last, fmt.Errorf("%w: %s did not exist at %s (event %s)", ErrNotRecorded, path, at.UTC().Format(time.RFC3339Nano), last.EventID)
	case Opaque:
		return nil, *last, fmt.Errorf("%w: %s at %s: sha256 %s, %d bytes, content not recorded: %s", ErrNotRecorded, path, at.UTC().Format(time.RFC3339Nano), last.SHA256, last.Size, last.Reason)
	}
	return nil, *last, fmt.Errorf("%w: %s at %s: %s", ErrNotRecorded, path, at.UTC().Format(time.RFC3339Nano), last.Reason)
}

// DiffText returns the unified diff of a diff record's line, read from
// the audit directory when it is a large one.
func DiffText(dir string, raw []byte) (string, error) {
	var d event.Diff
	if err := json.Unmarshal(raw, &d); err != nil {
		return "", err
	}
	if d.Object == "" {
		return d.Diff, nil
	}
	b, err := os.ReadFile(recorder.ObjectPath(dir, d.DiffSHA256))
	if err != nil {
		return "", fmt.Errorf("large diff %s: %w", d.Object, err)
	}
	if sum(b) != d.DiffSHA256 {
		return "", fmt.Errorf("large diff %s does not match its recorded hash", d.Object)
	}
	return string(b), nil
}

// Summary is one line describing s, for people.
func (s Step) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", s.At.UTC().Format(time.RFC3339Nano), s.EventID, s.Type)
	if s.OldPath != "" && s.Type == string(event.Rename) {
		fmt.Fprintf(&b, " from %s", auditlogQuote(s.OldPath))
	}
	switch s.State {
	case Text, Opaque:
		fmt.Fprintf(&b, " sha256=%s size=%d", s.SHA256, s.Size)
	case Absent:
		b.WriteString(" (absent)")
	}
	if s.HasDiff && (s.Added > 0 || s.Removed > 0) {
		fmt.Fprintf(&b, " +%d -%d", s.Added, s.Removed)
	}
	if s.Diff != nil && s.Diff.Binary {
		b.WriteString(" binary")
	}
	if s.Diff != nil && s.Diff.Truncated {
		b.WriteString(" truncated")
	}
	if s.Reason != "" && s.State != Text {
		fmt.Fprintf(&b, " (%s)", s.Reason)
	}
	return b.String()
}

func auditlogQuote(p string) string {
	if bytes.ContainsAny([]byte(p), " \t\n\"") {
		return fmt.Sprintf("%q", p)
	}
	return p
}
