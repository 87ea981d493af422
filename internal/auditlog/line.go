package auditlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The chain fields the writer appends to every record, in this order.
const (
	recordedAtKey = `,"recorded_at":"`
	prevKey       = `,"prev":"`
	hashKey       = `,"hash":"`

	hexLen        = 2 * sha256.Size
	hashSuffixLen = len(hashKey) + hexLen + len(`"}`) // ,"hash":"<64 hex>"}
	prevSuffixLen = len(prevKey) + hexLen + len(`"`)  // ,"prev":"<64 hex>"

	// timeLayout is RFC 3339 in UTC with all nine fractional digits, so
	// every recorded_at has the same width.
	timeLayout    = "2006-01-02T15:04:05.000000000Z07:00"
	timeLayoutUTC = "2006-01-02T15:04:05.000000000Z" // the width of a recorded_at

	// maxLineBytes bounds a line; readers treat a longer one as unparsable
	// rather than buffer it. maxRecordBytes leaves room for the chain fields.
	maxLineBytes   = 64 << 20
	maxRecordBytes = maxLineBytes - 256
)

// zeroHash is the prev of the very first line of a log.
var zeroHash = [hexLen]byte{
	'0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0',
	'0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0',
	'0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0',
	'0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0',
}

// validateRecord checks that rec can become a line: one compact JSON object
// on one line, with at least one member and none of the chain fields.
func validateRecord(rec []byte) error {
	switch {
	case len(rec) < 2 || rec[0] != '{' || rec[len(rec)-1] != '}':
		return fmt.Errorf("%w: not a JSON object starting with { and ending with }", ErrInvalidRecord)
	case len(rec) > maxRecordBytes:
		return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidRecord, len(rec), maxRecordBytes)
	case bytes.IndexByte(rec, '\n') >= 0:
		return fmt.Errorf("%w: contains a newline", ErrInvalidRecord)
	case !json.Valid(rec):
		return fmt.Errorf("%w: not valid JSON", ErrInvalidRecord)
	}
	m := newMembers(rec)
	for {
		key, _, ok := m.next()
		if !ok {
			break
		}
		switch k := keyString(key); k {
		case "recorded_at", "prev", "hash":
			return fmt.Errorf("%w: has the reserved field %q", ErrInvalidRecord, k)
		}
	}
	if m.err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidRecord, m.err)
	}
	if m.n == 0 {
		return fmt.Errorf("%w: empty object", ErrInvalidRecord)
	}
	return nil
}

// appendLine appends to dst the line (with its "\n") that records rec at t
// after the line whose hash is prev, and returns it with the new line's hash.
// rec must have passed validateRecord.
func appendLine(dst, rec []byte, t time.Time, prev *[hexLen]byte) ([]byte, [hexLen]byte) {
	start := len(dst)
	dst = append(dst, rec[:len(rec)-1]...)
	dst = append(dst, recordedAtKey...)
	dst = t.UTC().AppendFormat(dst, timeLayout)
	dst = append(dst, '"')
	dst = append(dst, prevKey...)
	dst = append(dst, prev[:]...)
	dst = append(dst, '"')
	var h [hexLen]byte
	sum := sha256.Sum256(dst[start:])
	hex.Encode(h[:], sum[:])
	dst = append(dst, hashKey...)
	dst = append(dst, h[:]...)
	dst = append(dst, "\"}\n"...)
	return dst, h
}

// lineParts are the pieces of a line (without its "\n") that the chain
// depends on. They alias the line.
type lineParts struct {
	payload    []byte // everything the hash covers
	hash       []byte // 64 lower-case hex digits
	prev       []byte // 64 lower-case hex digits
	recordedAt []byte // the timestamp text
}

var errNoChain = errors.New("no chain fields at the end of the line")

// splitLine finds the chain fields at the end of line. It does not check
// the hash, nor that the rest of the line is JSON, nor that hash and prev
// are hex (see lineParts.wellFormed).
func splitLine(line []byte) (lineParts, error) {
	n := len(line)
	if n < 1+len(recordedAtKey)+1+prevSuffixLen+hashSuffixLen || line[0] != '{' {
		return lineParts{}, errNoChain
	}
	suffix := line[n-hashSuffixLen:]
	if !bytes.HasPrefix(suffix, []byte(hashKey)) || suffix[hashSuffixLen-2] != '"' || suffix[hashSuffixLen-1] != '}' {
		return lineParts{}, errNoChain
	}
	p := lineParts{payload: line[:n-hashSuffixLen], hash: suffix[len(hashKey) : len(hashKey)+hexLen]}
	ps := p.payload[len(p.payload)-prevSuffixLen:]
	if !bytes.HasPrefix(ps, []byte(prevKey)) || ps[prevSuffixLen-1] != '"' {
		return lineParts{}, errNoChain
	}
	p.prev = ps[len(prevKey) : len(prevKey)+hexLen]
	rest := p.payload[:len(p.payload)-prevSuffixLen]
	if rest[len(rest)-1] != '"' {
		return lineParts{}, errNoChain
	}
	// The writer's timestamps all have the same width: look there first.
	k := len(rest) - 1 - len(timeLayoutUTC) - len(recordedAtKey)
	if k < 1 || string(rest[k:k+len(recordedAtKey)]) != recordedAtKey {
		k = bytes.LastIndex(rest, []byte(recordedAtKey))
	}
	if k < 1 || k+len(recordedAtKey) > len(rest)-1 {
		return lineParts{}, errNoChain
	}
	p.recordedAt = rest[k+len(recordedAtKey) : len(rest)-1]
	if bytes.IndexByte(p.recordedAt, '"') >= 0 || bytes.IndexByte(p.recordedAt, '\\') >= 0 {
		return lineParts{}, errNoChain
	}
	return p, nil
}

// sealed reports whether the line's hash is the hash of its payload.
func (p *lineParts) sealed() bool {
	var h [hexLen]byte
	sum := sha256.Sum256(p.payload)
	hex.Encode(h[:], sum[:])
	return bytes.Equal(h[:], p.hash)
}

// wellFormed reports whether hash and prev are 64 lower-case hex digits.
// A sealed line's hash is; callers need to ask only about the others.
func (p *lineParts) wellFormed() bool { return isHex(p.hash) && isHex(p.prev) }

func isHex(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// members iterates over the members of a JSON object without decoding it:
// it finds where each key and value begin and end, which is all the line
// format needs. It is not a validator; the writer validated every record.
type members struct {
	b    []byte
	i    int
	n    int // members returned so far
	done bool
	err  error
}

var errSyntax = errors.New("not a JSON object")

func newMembers(b []byte) members {
	m := members{b: b}
	m.i = skipSpace(b, 0)
	if m.i >= len(b) || b[m.i] != '{' {
		m.err = errSyntax
	}
	m.i++
	return m
}

// next returns the next member's key and value, both raw JSON (a string
// key keeps its quotes). At the end of the object, or on a syntax error
// (then m.err is set), ok is false.
func (m *members) next() (key, val []byte, ok bool) {
	if m.err != nil || m.done {
		return nil, nil, false
	}
	b := m.b
	i := skipSpace(b, m.i)
	if i < len(b) && b[i] == '}' {
		m.done = true
		if skipSpace(b, i+1) != len(b) {
			m.err = errors.New("data after the object")
		}
		return nil, nil, false
	}
	if m.n > 0 {
		if i >= len(b) || b[i] != ',' {
			m.err = errSyntax
			return nil, nil, false
		}
		i = skipSpace(b, i+1)
	}
	if i >= len(b) || b[i] != '"' {
		m.err = errSyntax
		return nil, nil, false
	}
	end, err := skipString(b, i)
	if err != nil {
		m.err = err
		return nil, nil, false
	}
	key = b[i:end]
	i = skipSpace(b, end)
	if i >= len(b) || b[i] != ':' {
		m.err = errSyntax
		return nil, nil, false
	}
	i = skipSpace(b, i+1)
	end, err = skipValue(b, i)
	if err != nil {
		m.err = err
		return nil, nil, false
	}
	val = b[i:end]
	m.i = end
	m.n++
	return key, val, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// skipString returns the index just past the string that starts at b[i].
func skipString(b []byte, i int) (int, error) {
	j := i + 1
	// Most strings are short: look at a few bytes before calling IndexByte.
	for end := min(len(b), j+24); j < end; j++ {
		switch b[j] {
		case '"':
			return j + 1, nil
		case '\\':
			goto slow
		}
	}
slow:
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return 0, errSyntax
		}
		q := j + k
		n := 0
		for p := q - 1; p >= j && b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return q + 1, nil
		}
		j = q + 1
	}
}

// skipValue returns the index just past the value that starts at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errSyntax
	}
	switch c := b[i]; {
	case c == '"':
		return skipString(b, i)
	case c == '{' || c == '[':
		depth := 0
		for j := i; j < len(b); {
			switch b[j] {
			case '"':
				end, err := skipString(b, j)
				if err != nil {
					return 0, err
				}
				j = end
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
			j++
		}
		return 0, errSyntax
	case c == 't':
		return skipLiteral(b, i, "true")
	case c == 'f':
		return skipLiteral(b, i, "false")
	case c == 'n':
		return skipLiteral(b, i, "null")
	case c == '-' || c >= '0' && c <= '9':
		j := i + 1
		for j < len(b) && (b[j] >= '0' && b[j] <= '9' || b[j] == '.' || b[j] == 'e' || b[j] == 'E' || b[j] == '+' || b[j] == '-') {
			j++
		}
		return j, nil
	}
	return 0, errSyntax
}

func skipLiteral(b []byte, i int, lit string) (int, error) {
	if !bytes.HasPrefix(b[i:], []byte(lit)) {
		return 0, errSyntax
	}
	return i + len(lit), nil
}

// keyString decodes a raw JSON string key; it returns "" for anything else.
func keyString(raw []byte) string {
	s, _ := jsonString(raw)
	return s
}

// jsonString decodes a raw JSON string value.
func jsonString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// jsonUint decodes a raw JSON number that is a non-negative integer.
func jsonUint(raw []byte) (uint64, bool) {
	if len(raw) == 0 || len(raw) > 20 {
		return 0, false
	}
	var n uint64
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// fields are the raw values of the top-level members readers look at.
type fields struct {
	kind, agent, id, eventID, typ      []byte
	path, pathB64, oldPath, oldPathB64 []byte
	root, rootB64, reason              []byte
	seq, fromSeq, toSeq                []byte
	observedAt, recordedAt, prev, hash []byte
}

// scanFields fills f from the top-level members of line. As with
// encoding/json, the last of duplicate keys wins.
func scanFields(line []byte, f *fields) error {
	return scanFieldsUntil(line, f, nil)
}

// scanFieldsUntil is scanFields that stops early once enough(f) is true.
func scanFieldsUntil(line []byte, f *fields, enough func(*fields) bool) error {
	*f = fields{}
	m := newMembers(line)
	for enough == nil || !enough(f) {
		key, val, ok := m.next()
		if !ok {
			break
		}
		if bytes.IndexByte(key, '\\') >= 0 {
			key = []byte(`"` + keyString(key) + `"`)
		}
		switch string(key) {
		case `"kind"`:
			f.kind = val
		case `"agent"`:
			f.agent = val
		case `"id"`:
			f.id = val
		case `"event_id"`:
			f.eventID = val
		case `"type"`:
			f.typ = val
		case `"path"`:
			f.path = val
		case `"path_b64"`:
			f.pathB64 = val
		case `"old_path"`:
			f.oldPath = val
		case `"old_path_b64"`:
			f.oldPathB64 = val
		case `"root"`:
			f.root = val
		case `"root_b64"`:
			f.rootB64 = val
		case `"reason"`:
			f.reason = val
		case `"seq"`:
			f.seq = val
		case `"from_seq"`:
			f.fromSeq = val
		case `"to_seq"`:
			f.toSeq = val
		case `"observed_at"`:
			f.observedAt = val
		case `"recorded_at"`:
			f.recordedAt = val
		case `"prev"`:
			f.prev = val
		case `"hash"`:
			f.hash = val
		}
	}
	return m.err
}
