package auditlog

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/fso-project/fso/internal/event"
)

// FormatText returns r as one line of text for people, without "\n":
// time (observed_at, else recorded_at), agent, kind/type, and the path
// (old -> new for a rename). A path or other field that holds control or
// other non-printing characters, invalid UTF-8, " -> ", or leading or
// trailing spaces is quoted with strconv.Quote, so that no file name can
// forge a line or a field.
func FormatText(r Record) string {
	t := r.ObservedAt
	if t.IsZero() {
		t = r.RecordedAt
	}
	var b strings.Builder
	if t.IsZero() {
		b.WriteString("-")
	} else {
		b.WriteString(t.UTC().Format(timeLayout))
	}
	b.WriteByte(' ')
	b.WriteString(quote(r.Agent))
	b.WriteByte(' ')
	b.WriteString(quote(r.Kind))
	if r.Type != "" {
		b.WriteByte('/')
		b.WriteString(quote(r.Type))
	}
	switch r.Kind {
	case event.KindGap:
		b.WriteString(" seq ")
		b.WriteString(strconv.FormatUint(r.FromSeq, 10))
		b.WriteString("..")
		b.WriteString(strconv.FormatUint(r.ToSeq, 10))
	default:
		if r.OldPath != "" {
			b.WriteByte(' ')
			b.WriteString(quote(r.OldPath))
			b.WriteString(" ->")
		}
		if r.Path != "" {
			b.WriteByte(' ')
			b.WriteString(quote(r.Path))
		}
	}
	if r.Kind == event.KindDiff && r.EventID != "" {
		b.WriteString(" (event ")
		b.WriteString(quote(r.EventID))
		b.WriteByte(')')
	}
	if r.Reason != "" {
		b.WriteString(" (")
		b.WriteString(quote(r.Reason))
		b.WriteByte(')')
	}
	return b.String()
}

// quote returns s as is when it reads unambiguously on one line, and
// strconv.Quote(s) otherwise.
func quote(s string) string {
	if s == "" {
		return "-"
	}
	if s == "-" || s[0] == '"' || s[0] == ' ' || s[len(s)-1] == ' ' || strings.Contains(s, " -> ") || !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	for _, c := range s {
		if !strconv.IsPrint(c) {
			return strconv.Quote(s)
		}
	}
	return s
}
