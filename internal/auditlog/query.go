package auditlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"
)

// Filter selects records. Empty fields select everything.
type Filter struct {
	// Paths are doublestar globs (** matches any number of directories)
	// matched against path and old_path; one match is enough. A pattern
	// that does not start with "/" is also matched against the path without
	// its leading "/", so **/*.conf matches /etc/x.conf.
	Paths  []string
	Agents []string
	Types  []string
	Kinds  []string
	// Since (inclusive) and Until (exclusive) bound observed_at, or
	// recorded_at for records without it; zero leaves that end open.
	Since, Until time.Time
}

// Validate reports a malformed glob in f.Paths.
func (f Filter) Validate() error {
	for _, p := range f.Paths {
		if !doublestar.ValidatePattern(p) {
			return fmt.Errorf("auditlog: bad path glob %q", p)
		}
	}
	return nil
}

// Match reports whether r passes f. A malformed glob matches nothing.
func (f Filter) Match(r Record) bool {
	if len(f.Kinds) > 0 && !slices.Contains(f.Kinds, r.Kind) ||
		len(f.Agents) > 0 && !slices.Contains(f.Agents, r.Agent) ||
		len(f.Types) > 0 && !slices.Contains(f.Types, r.Type) {
		return false
	}
	if !f.Since.IsZero() || !f.Until.IsZero() {
		t := r.ObservedAt
		if t.IsZero() {
			t = r.RecordedAt
		}
		if !f.Since.IsZero() && t.Before(f.Since) || !f.Until.IsZero() && !t.Before(f.Until) {
			return false
		}
	}
	if len(f.Paths) == 0 {
		return true
	}
	for _, pat := range f.Paths {
		if matchPath(pat, r.Path) || matchPath(pat, r.OldPath) {
			return true
		}
	}
	return false
}

func matchPath(pattern, p string) bool {
	if p == "" {
		return false
	}
	if doublestar.MatchUnvalidated(pattern, p) {
		return true
	}
	return !strings.HasPrefix(pattern, "/") && strings.HasPrefix(p, "/") && doublestar.MatchUnvalidated(pattern, p[1:])
}

// Query calls fn with every record in dir that f matches, in order, as
// [Scan] reads them.
func Query(ctx context.Context, dir string, f Filter, fn func(Record) error) error {
	if err := f.Validate(); err != nil {
		return err
	}
	return Scan(ctx, dir, func(r Record) error {
		if !f.Match(r) {
			return nil
		}
		return fn(r)
	})
}

// tailPoll is how often Tail looks for new lines.
const tailPoll = 200 * time.Millisecond

// Tail is [Query] that goes on following the log, new lines and new
// segments, until ctx ends; it then returns nil. It emits only complete
// lines. If the writer takes back lines Tail has already emitted (a Sync
// that failed after writing), Tail notices through the chain, and goes on
// from the first line that replaced them.
func Tail(ctx context.Context, dir string, f Filter, fn func(Record) error) error {
	if err := f.Validate(); err != nil {
		return err
	}
	t := &tailer{dir: dir, filter: f, fn: fn}
	defer t.close()
	err := t.run(ctx)
	if ctx.Err() != nil && (err == nil || errors.Is(err, ctx.Err())) {
		return nil
	}
	return err
}

// mark remembers where a line Tail emitted ended, and its hash.
type mark struct {
	end  int64
	hash string
}

const maxMarks = 1 << 16

type tailer struct {
	dir    string
	filter Filter
	fn     func(Record) error

	seg       uint64 // current segment; 0 before the first
	file      *os.File
	lr        *lineReader
	off, line int64
	prevHash  string // hash of the last line read
	segPrev   string // hash of the line before the segment's first
	marks     []mark // lines read in this segment past markBase
	markBase  int64
	trustNext bool // take the next line whatever its prev (after a resync)
}

func (t *tailer) close() {
	if t.file != nil {
		t.file.Close()
	}
}

func (t *tailer) run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		for {
			segs, err := listSegments(t.dir)
			if err != nil {
				return fmt.Errorf("tail audit log: %w", err)
			}
			// The writer starts a segment only after finishing the one
			// before, so once a later segment exists this one is final.
			i := slices.IndexFunc(segs, func(s segment) bool { return s.n > t.seg })
			if t.file == nil {
				if i < 0 {
					break
				}
				if err := t.open(segs[i].n); err != nil {
					return err
				}
				i = slices.IndexFunc(segs, func(s segment) bool { return s.n > t.seg })
			}
			if err := t.drain(ctx); err != nil {
				return err
			}
			if i < 0 {
				break
			}
			t.file.Close()
			t.file = nil
			if err := t.open(segs[i].n); err != nil {
				return err
			}
		}
		timer.Reset(tailPoll)
	}
}

func (t *tailer) open(n uint64) error {
	f, err := os.Open(segPath(t.dir, n))
	if err != nil {
		return fmt.Errorf("tail audit log: %w", err)
	}
	t.file, t.seg, t.off, t.line = f, n, 0, 0
	t.segPrev, t.marks, t.markBase = t.prevHash, t.marks[:0], 0
	return nil
}

// drain emits the complete lines from t.off to the end of the segment.
func (t *tailer) drain(ctx context.Context) error {
	name := segName(t.seg)
	info, err := t.file.Stat()
	if err != nil {
		return fmt.Errorf("tail audit log: %w", err)
	}
	if info.Size() < t.off {
		if err := t.resync(); err != nil {
			return err
		}
	}
	if err := t.seek(t.off); err != nil {
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		line, n, complete, err := t.lr.next()
		if err == io.EOF || err == nil && !complete {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tail audit log: read %s: %w", name, err)
		}
		if line == nil {
			return fmt.Errorf("%w: %s line %d: line longer than %d bytes", ErrCorrupt, name, t.line+1, maxLineBytes)
		}
		r, err := parseRecord(append([]byte(nil), line[:len(line)-1]...))
		if err != nil {
			return fmt.Errorf("%w: %s line %d: %v", ErrCorrupt, name, t.line+1, err)
		}
		if !t.trustNext && t.prevHash != "" && r.Prev != t.prevHash {
			if err := t.resync(); err != nil {
				return err
			}
			if err := t.seek(t.off); err != nil {
				return err
			}
			continue
		}
		t.trustNext = false
		t.off += n
		t.line++
		t.prevHash = r.Hash
		t.remember(mark{end: t.off, hash: r.Hash})
		r.Segment, r.Line = name, t.line
		if t.filter.Match(r) {
			if err := t.fn(r); err != nil {
				return err
			}
		}
	}
}

func (t *tailer) seek(off int64) error {
	if _, err := t.file.Seek(off, io.SeekStart); err != nil {
		return fmt.Errorf("tail audit log: %w", err)
	}
	if t.lr == nil {
		t.lr = newLineReader(t.file)
	} else {
		t.lr.r.Reset(t.file)
	}
	return nil
}

func (t *tailer) remember(m mark) {
	if len(t.marks) >= maxMarks {
		half := len(t.marks) / 2
		t.markBase = t.marks[half-1].end
		t.marks = slices.Delete(t.marks, 0, half)
	}
	t.marks = append(t.marks, m)
}

// resync finds where to go on after the writer took back lines that were
// read: after the last line that is still as it was read.
func (t *tailer) resync() error {
	if err := t.seek(0); err != nil {
		return err
	}
	var off, line int64
	prev := t.segPrev
	for {
		l, n, complete, err := t.lr.next()
		if err == io.EOF || err == nil && (!complete || l == nil) {
			break
		}
		if err != nil {
			return fmt.Errorf("tail audit log: read %s: %w", segName(t.seg), err)
		}
		p, err := splitLine(l[:len(l)-1])
		if err != nil {
			break
		}
		end := off + n
		if end > t.markBase {
			i := sort.Search(len(t.marks), func(i int) bool { return t.marks[i].end >= end })
			if i == len(t.marks) || t.marks[i].end != end || t.marks[i].hash != string(p.hash) {
				break
			}
		}
		off, line, prev = end, line+1, string(p.hash)
	}
	t.off, t.line, t.prevHash = off, line, prev
	i := sort.Search(len(t.marks), func(i int) bool { return t.marks[i].end > off })
	t.marks = t.marks[:i]
	t.trustNext = true
	return nil
}
