// Package diff makes and applies the unified diffs of important files.
// Its functions are pure: no I/O.
//
// # Format
//
// A diff is a standard unified diff: "--- OLD" and "+++ NEW" headers, then
// hunks "@@ -l,s +l,s @@" with three lines of context. Lines end at "\n"
// only, so a "\r" before it (CRLF) is part of the line and kept exactly. A
// last line without "\n" is followed by "\ No newline at end of file", as
// GNU diff and git write it. An old side that is not known (a new file, or
// content never recorded) is "--- /dev/null", a deleted file "+++ /dev/null";
// such a diff always has its headers, even when the new file is empty.
// Equal contents with known old side give the empty diff.
//
// [Apply] reverses [Unified] exactly: Apply(old, Unified(o, n, old, new))
// returns new byte for byte.
package diff

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	udiff "github.com/aymanbagabas/go-udiff"
)

// DevNull names the missing side of a diff.
const DevNull = "/dev/null"

const noNewline = "\\ No newline at end of file"

// IsText reports whether b can be diffed as text: valid UTF-8 without NUL
// bytes. Anything else is treated as binary.
func IsText(b []byte) bool {
	return bytes.IndexByte(b, 0) < 0 && utf8.Valid(b)
}

// Name returns p as a diff header name: as is when it reads on one line,
// Go-quoted when it holds a control character, a leading quote or invalid
// UTF-8 (so no file name can forge a diff line).
func Name(p string) string {
	if p == "" || p[0] == '"' || !utf8.ValidString(p) || strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return strconv.Quote(p)
	}
	return p
}

// Unified returns the unified diff from old to new with three lines of
// context. oldName and newName go in the headers (use [DevNull] for a side
// that does not exist, and [Name] for paths). old and new must be text
// ([IsText]). The result is empty when old equals new and neither side is
// [DevNull].
func Unified(oldName, newName string, old, new []byte) string {
	null := oldName == DevNull || newName == DevNull
	if bytes.Equal(old, new) && !null {
		return ""
	}
	o, n := string(old), string(new)
	edits := lineEdits(o, n)
	d, err := udiff.ToUnified(oldName, newName, o, edits, udiff.DefaultContextLines)
	if err != nil {
		// udiff.Lines returns edits consistent with o.
		panic(fmt.Sprintf("diff: inconsistent edits: %v", err))
	}
	if d == "" && null {
		d = "--- " + oldName + "\n+++ " + newName + "\n"
	}
	return d
}

// ErrMalformed is wrapped by the errors of [Parse] and [Apply].
var ErrMalformed = errors.New("diff: malformed unified diff")

// ErrMismatch is wrapped by [Apply] when the diff does not fit the content
// it is applied to.
var ErrMismatch = errors.New("diff: does not apply")

// Patch is a parsed unified diff.
type Patch struct {
	From, To string // header names, unquoted
	Hunks    []Hunk
}

// Hunk is one "@@" section. Lines keep their prefix (' ', '-', '+') and
// their line ending, exactly as in the content.
type Hunk struct {
	OldStart, OldLines int
	Lines              []string
}

// FromNull reports whether the diff's old side is [DevNull]: it applies to
// nothing, and builds the new content on its own.
func (p *Patch) FromNull() bool { return p.From == DevNull }

// ToNull reports whether the diff deletes the file.
func (p *Patch) ToNull() bool { return p.To == DevNull }

// Parse parses a diff made by [Unified]. The empty string is the empty
// patch.
func Parse(d string) (*Patch, error) {
	p := &Patch{}
	if d == "" {
		return p, nil
	}
	if !strings.HasSuffix(d, "\n") {
		return nil, fmt.Errorf("%w: no final newline", ErrMalformed)
	}
	lines := strings.SplitAfter(d, "\n")
	lines = lines[:len(lines)-1] // the empty string after the last "\n"
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "--- ") || !strings.HasPrefix(lines[1], "+++ ") {
		return nil, fmt.Errorf("%w: missing --- and +++ headers", ErrMalformed)
	}
	var err error
	if p.From, err = headerName(lines[0][4:]); err != nil {
		return nil, err
	}
	if p.To, err = headerName(lines[1][4:]); err != nil {
		return nil, err
	}
	var h *Hunk
	for i, l := range lines[2:] {
		switch {
		case strings.HasPrefix(l, "@@ "):
			p.Hunks = append(p.Hunks, Hunk{})
			h = &p.Hunks[len(p.Hunks)-1]
			if h.OldStart, h.OldLines, err = hunkHeader(l); err != nil {
				return nil, err
			}
		case h == nil:
			return nil, fmt.Errorf("%w: line %d: content before the first hunk", ErrMalformed, i+3)
		case l == noNewline+"\n":
			n := len(h.Lines)
			if n == 0 || !strings.HasSuffix(h.Lines[n-1], "\n") {
				return nil, fmt.Errorf("%w: line %d: misplaced %q", ErrMalformed, i+3, noNewline)
			}
			h.Lines[n-1] = strings.TrimSuffix(h.Lines[n-1], "\n")
		case l[0] == ' ' || l[0] == '-' || l[0] == '+':
			h.Lines = append(h.Lines, l)
		default:
			return nil, fmt.Errorf("%w: line %d: unexpected %q", ErrMalformed, i+3, l)
		}
	}
	return p, nil
}

func headerName(s string) (string, error) {
	s = strings.TrimSuffix(s, "\n")
	if strings.HasPrefix(s, `"`) {
		u, err := strconv.Unquote(s)
		if err != nil {
			return "", fmt.Errorf("%w: header name %s: %v", ErrMalformed, s, err)
		}
		return u, nil
	}
	return s, nil
}

// hunkHeader parses "@@ -l[,s] +l[,s] @@".
func hunkHeader(l string) (start, count int, err error) {
	f := strings.Fields(l)
	if len(f) < 4 || f[0] != "@@" || f[3] != "@@" || !strings.HasPrefix(f[1], "-") || !strings.HasPrefix(f[2], "+") {
		return 0, 0, fmt.Errorf("%w: hunk header %q", ErrMalformed, strings.TrimSpace(l))
	}
	s, c, ok := strings.Cut(f[1][1:], ",")
	count = 1
	if start, err = strconv.Atoi(s); err == nil && ok {
		count, err = strconv.Atoi(c)
	}
	if err != nil || start < 0 || count < 0 {
		return 0, 0, fmt.Errorf("%w: hunk header %q", ErrMalformed, strings.TrimSpace(l))
	}
	return start, count, nil
}

// Apply applies p to old and returns the new content. For a patch from
// [DevNull], old must be empty; for one to DevNull the result is empty.
// Context and deleted lines must match old exactly, or the error wraps
// [ErrMismatch].
func (p *Patch) Apply(old []byte) ([]byte, error) {
	if p.FromNull() && len(old) > 0 {
		return nil, fmt.Errorf("%w: diff from %s applied to %d bytes", ErrMismatch, DevNull, len(old))
	}
	src := splitLines(old)
	var out bytes.Buffer
	out.Grow(len(old))
	next := 0 // index into src of the first line not yet copied
	for i, h := range p.Hunks {
		// A hunk that removes or keeps nothing inserts after OldStart
		// lines; otherwise its first line is line OldStart (1-based).
		at := h.OldStart - 1
		if h.OldLines == 0 {
			at = h.OldStart
		}
		if at < next || at > len(src) {
			return nil, fmt.Errorf("%w: hunk %d at line %d of %d", ErrMismatch, i+1, h.OldStart, len(src))
		}
		for ; next < at; next++ {
			out.WriteString(src[next])
		}
		for _, l := range h.Lines {
			body := l[1:]
			switch l[0] {
			case ' ', '-':
				if next >= len(src) || src[next] != body {
					return nil, fmt.Errorf("%w: hunk %d: line %d differs", ErrMismatch, i+1, next+1)
				}
				next++
				if l[0] == ' ' {
					out.WriteString(body)
				}
			case '+':
				out.WriteString(body)
			}
		}
	}
	for ; next < len(src); next++ {
		out.WriteString(src[next])
	}
	if p.ToNull() && out.Len() > 0 {
		return nil, fmt.Errorf("%w: diff to %s leaves %d bytes", ErrMismatch, DevNull, out.Len())
	}
	return out.Bytes(), nil
}

// Apply parses d and applies it to old.
func Apply(old []byte, d string) ([]byte, error) {
	p, err := Parse(d)
	if err != nil {
		return nil, err
	}
	return p.Apply(old)
}

// splitLines splits b after each "\n"; a last line without one is kept.
func splitLines(b []byte) []string {
	s := string(b)
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}
