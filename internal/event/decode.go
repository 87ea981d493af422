package event

import (
	"bytes"
	"strconv"
	"strings"
	"time"
)

// The recorder decodes every event it is sent. encoding/json with
// DisallowUnknownFields took half of the recorder's CPU per event, so the
// common case is parsed by hand: exactly the bytes appendJSON writes, with
// strings that need no escaping. Anything else, including every malformed
// or hostile record, takes the strict encoding/json path, which alone says
// what is wrong. decodeFast accepts data only if encoding the result again
// gives data back, so both paths agree on whatever it accepts.

// decodeFast parses data if it is an event in appendJSON's encoding.
func decodeFast(data []byte) (Event, bool) {
	p := parser{b: data}
	var e Event
	p.lit(`{"kind":`)
	e.Kind = p.str()
	p.lit(`,"id":`)
	e.ID = p.str()
	p.lit(`,"agent":`)
	e.Agent = p.str()
	p.lit(`,"host":`)
	e.Host = p.str()
	p.lit(`,"seq":`)
	e.Seq = p.uint(64)
	p.lit(`,"type":`)
	e.Type = Type(p.str())
	p.lit(`,"path":`)
	e.Path = p.str()
	if p.opt(`,"path_b64":`) {
		e.PathB64 = p.str()
	}
	if p.opt(`,"old_path":`) {
		e.OldPath = p.str()
	}
	if p.opt(`,"old_path_b64":`) {
		e.OldPathB64 = p.str()
	}
	p.lit(`,"is_dir":`)
	e.IsDir = p.bool()
	p.lit(`,"observed_at":`)
	e.ObservedAt = p.time()
	p.lit(`,"emitted_at":`)
	e.EmittedAt = p.time()
	p.lit(`,"source":`)
	e.Source = p.str()
	if p.opt(`,"scan_since":`) {
		t := p.time()
		e.ScanSince = &t
	}
	if p.opt(`,"size":`) {
		neg := p.opt("-")
		n := int64(p.uint(63))
		if neg {
			n = -n
		}
		e.Size = &n
	}
	if p.opt(`,"mode":`) {
		n := uint32(p.uint(32))
		e.Mode = &n
	}
	if p.opt(`,"uid":`) {
		n := uint32(p.uint(32))
		e.UID = &n
	}
	if p.opt(`,"gid":`) {
		n := uint32(p.uint(32))
		e.GID = &n
	}
	if p.opt(`,"mtime":`) {
		t := p.time()
		e.MTime = &t
	}
	if p.opt(`,"sha256":`) {
		e.SHA256 = p.str()
	}
	p.lit(`}`)
	if p.bad || len(p.b) != 0 {
		return Event{}, false
	}
	again, ok := e.appendJSON(make([]byte, 0, len(data)))
	if !ok || !bytes.Equal(again, data) {
		return Event{}, false
	}
	return e, true
}

// parser consumes b from the front; after the first mismatch bad is set
// and every method returns a zero value.
type parser struct {
	b   []byte
	bad bool
}

func (p *parser) lit(s string) {
	if !p.opt(s) {
		p.bad = true
	}
}

// opt consumes s if b starts with it.
func (p *parser) opt(s string) bool {
	if p.bad || !bytes.HasPrefix(p.b, []byte(s)) {
		return false
	}
	p.b = p.b[len(s):]
	return true
}

// str reads a quoted string none of whose bytes appendString would escape.
func (p *parser) str() string {
	if p.bad || len(p.b) == 0 || p.b[0] != '"' {
		p.bad = true
		return ""
	}
	for i := 1; i < len(p.b); i++ {
		switch c := p.b[i]; {
		case c == '"':
			s := string(p.b[1:i])
			p.b = p.b[i+1:]
			return s
		case c < 0x20 || c == '\\' || c == '<' || c == '>' || c == '&' || c >= 0x80:
			p.bad = true
			return ""
		}
	}
	p.bad = true
	return ""
}

// uint reads decimal digits that fit in bits.
func (p *parser) uint(bits int) uint64 {
	if p.bad {
		return 0
	}
	i := 0
	for i < len(p.b) && p.b[i] >= '0' && p.b[i] <= '9' {
		i++
	}
	n, err := strconv.ParseUint(string(p.b[:i]), 10, bits)
	if err != nil {
		p.bad = true
		return 0
	}
	p.b = p.b[i:]
	return n
}

func (p *parser) bool() bool {
	switch {
	case p.opt("true"):
		return true
	case p.opt("false"):
		return false
	}
	p.bad = true
	return false
}

func (p *parser) time() time.Time {
	s := p.str()
	if p.bad || !strings.HasSuffix(s, "Z") { // Marshal writes UTC
		p.bad = true
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		p.bad = true
	}
	return t
}
