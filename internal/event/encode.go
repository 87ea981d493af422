package event

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// The agent encodes every event and the recorder encodes it again after
// checking it, so an event's encoding is written out by hand here: the same
// bytes encoding/json produces for Event (encode_test.go checks that), at a
// fraction of the cost of reflection. Anything unusual (a string that needs
// escaping, a time json refuses) takes encoding/json's path.

// appendJSON appends e as encoding/json encodes it, or reports false when
// it must be left to encoding/json.
func (e *Event) appendJSON(b []byte) ([]byte, bool) {
	ok := true
	str := func(s string) {
		if ok {
			b, ok = appendString(b, s)
		}
	}
	tm := func(t time.Time) {
		if y := t.Year(); y < 0 || y > 9999 {
			ok = false
			return
		}
		b = append(b, '"')
		b = t.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	b = append(b, `{"kind":`...)
	str(e.Kind)
	b = append(b, `,"id":`...)
	str(e.ID)
	b = append(b, `,"agent":`...)
	str(e.Agent)
	b = append(b, `,"host":`...)
	str(e.Host)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"type":`...)
	str(string(e.Type))
	b = append(b, `,"path":`...)
	str(e.Path)
	if e.PathB64 != "" {
		b = append(b, `,"path_b64":`...)
		str(e.PathB64)
	}
	if e.OldPath != "" {
		b = append(b, `,"old_path":`...)
		str(e.OldPath)
	}
	if e.OldPathB64 != "" {
		b = append(b, `,"old_path_b64":`...)
		str(e.OldPathB64)
	}
	b = append(b, `,"is_dir":`...)
	b = strconv.AppendBool(b, e.IsDir)
	b = append(b, `,"observed_at":`...)
	tm(e.ObservedAt)
	b = append(b, `,"emitted_at":`...)
	tm(e.EmittedAt)
	b = append(b, `,"source":`...)
	str(e.Source)
	if e.ScanSince != nil {
		b = append(b, `,"scan_since":`...)
		tm(*e.ScanSince)
	}
	if e.Size != nil {
		b = append(b, `,"size":`...)
		b = strconv.AppendInt(b, *e.Size, 10)
	}
	if e.Mode != nil {
		b = append(b, `,"mode":`...)
		b = strconv.AppendUint(b, uint64(*e.Mode), 10)
	}
	if e.UID != nil {
		b = append(b, `,"uid":`...)
		b = strconv.AppendUint(b, uint64(*e.UID), 10)
	}
	if e.GID != nil {
		b = append(b, `,"gid":`...)
		b = strconv.AppendUint(b, uint64(*e.GID), 10)
	}
	if e.MTime != nil {
		b = append(b, `,"mtime":`...)
		tm(*e.MTime)
	}
	if e.SHA256 != "" {
		b = append(b, `,"sha256":`...)
		str(e.SHA256)
	}
	b = append(b, '}')
	return b, ok
}

// appendString appends s quoted, when no byte of it needs escaping; with
// encoding/json's default HTML escaping that excludes control characters,
// '"', '\\', '<', '>', '&', and non-ASCII (U+2028, U+2029 and invalid
// UTF-8 are escaped or replaced). Other strings are quoted by
// encoding/json itself.
func appendString(b []byte, s string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= utf8.RuneSelf {
			q, err := json.Marshal(s)
			if err != nil {
				return b, false
			}
			return append(b, q...), true
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), true
}
