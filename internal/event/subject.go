package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// Subjects carry only ID tokens; paths travel in payloads, so no file name
// can change where a message goes.
const (
	EventsPrefix = "fso.events."
	DiffsPrefix  = "fso.diffs."
	// StreamSubjects are the subjects of the FSO stream.
	AllEvents = "fso.events.>"
	AllDiffs  = "fso.diffs.>"
)

var agentIDRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidAgentID reports whether id can name an agent: 1 to 63 characters of
// [a-z0-9-], not starting with '-'. Such an id is one subject token.
func ValidAgentID(id string) error {
	if !agentIDRe.MatchString(id) {
		return fmt.Errorf("event: agent id %q: want 1-63 characters of [a-z0-9-], not starting with '-'", id)
	}
	return nil
}

// SanitizeID reduces s (a host name, say) to a valid agent id.
func SanitizeID(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
		case r == '.' || r == '_' || r == ' ':
			b.WriteByte('-')
		}
	}
	id := strings.Trim(b.String(), "-")
	if len(id) > 63 {
		id = strings.TrimRight(id[:63], "-")
	}
	if id == "" {
		id = "agent"
	}
	return id
}

// EventSubject is the subject of an event of type t from agent.
func EventSubject(agent string, t Type) string { return EventsPrefix + agent + "." + string(t) }

// DiffSubject is the dedicated subject of agent's diffs.
func DiffSubject(agent string) string { return DiffsPrefix + agent }

// GapSubject and OverflowSubject carry the agent's loss notices.
func GapSubject(agent string) string      { return EventsPrefix + agent + ".gap" }
func OverflowSubject(agent string) string { return EventsPrefix + agent + ".overflow" }

// SubjectAgent returns the agent token of an FSO subject.
func SubjectAgent(subject string) (string, bool) {
	var rest string
	switch {
	case strings.HasPrefix(subject, EventsPrefix):
		rest = subject[len(EventsPrefix):]
		agent, _, ok := strings.Cut(rest, ".")
		return agent, ok && agent != ""
	case strings.HasPrefix(subject, DiffsPrefix):
		rest = subject[len(DiffsPrefix):]
		return rest, rest != "" && !strings.Contains(rest, ".")
	}
	return "", false
}

// Record is a decoded, validated record from an agent.
type Record struct {
	Kind  string
	Agent string
	Seq   uint64
	// JSON is the record re-encoded by this package: compact, one line, only
	// known fields, so nothing a sender adds can forge a recorder field.
	JSON []byte
	// Event is set when Kind is KindEvent, Diff, Gap, Overflow likewise.
	Event    *Event
	Diff     *Diff
	Gap      *Gap
	Overflow *Overflow
	Config   *Config // Kind KindConfig: no Agent, no Seq
}

// MaxRecordBytes bounds what Decode accepts.
const MaxRecordBytes = 8 << 20

// Decode validates data received on subject and re-encodes it. It fails,
// wrapping ErrInvalid, when data is not exactly one known record, has
// unknown fields, lacks a required field, or names another agent than the
// subject does.
func Decode(subject string, data []byte) (Record, error) {
	if len(data) > MaxRecordBytes {
		return Record{}, fmt.Errorf("%w: %d bytes, more than %d", ErrInvalid, len(data), MaxRecordBytes)
	}
	if subject == ConfigSubject {
		r, err := decodeConfig(data)
		if err != nil {
			return Record{}, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		return r, nil
	}
	subjAgent, ok := SubjectAgent(subject)
	if !ok {
		return Record{}, fmt.Errorf("%w: subject %q is not an FSO subject", ErrInvalid, subject)
	}
	var head struct {
		Kind string `json:"kind"`
	}
	// FSO's own encoder writes the kind first: reading it off the front
	// spares a whole parse of every event. The strict decode below still
	// reads the whole record, and checks that kind is the last word.
	if bytes.HasPrefix(data, eventHead) {
		head.Kind = KindEvent
	} else if err := json.Unmarshal(data, &head); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var r Record
	var err error
	switch head.Kind {
	case KindEvent:
		r, err = decodeEvent(data)
		if err == nil && subject != EventSubject(r.Agent, r.Event.Type) {
			err = fmt.Errorf("subject %q does not match event type %q", subject, r.Event.Type)
		}
	case KindDiff:
		var d Diff
		if err = strict(data, &d); err == nil {
			err = needAll(d.Agent, d.Seq, "event_id", d.EventID)
		}
		if err == nil {
			d.Path, err = DecodePath(d.Path, d.PathB64)
		}
		if err == nil {
			r = Record{Kind: KindDiff, Agent: d.Agent, Seq: d.Seq, Diff: &d}
			if subject != DiffSubject(d.Agent) {
				err = fmt.Errorf("diff on subject %q", subject)
			} else {
				r.JSON, err = d.Marshal()
			}
		}
	case KindGap:
		var g Gap
		if err = strict(data, &g); err == nil {
			err = needAll(g.Agent, g.Seq, "reason", g.Reason)
		}
		if err == nil && (g.FromSeq == 0 || g.ToSeq < g.FromSeq) {
			err = fmt.Errorf("gap range %d..%d", g.FromSeq, g.ToSeq)
		}
		if err == nil {
			r = Record{Kind: KindGap, Agent: g.Agent, Seq: g.Seq, Gap: &g}
			if subject != GapSubject(g.Agent) {
				err = fmt.Errorf("gap on subject %q", subject)
			} else {
				r.JSON, err = g.Marshal()
			}
		}
	case KindOverflow:
		var o Overflow
		if err = strict(data, &o); err == nil {
			err = needAll(o.Agent, o.Seq, "reason", o.Reason)
		}
		if err == nil {
			o.Root, err = DecodePath(o.Root, o.RootB64)
		}
		if err == nil {
			r = Record{Kind: KindOverflow, Agent: o.Agent, Seq: o.Seq, Overflow: &o}
			if subject != OverflowSubject(o.Agent) {
				err = fmt.Errorf("overflow on subject %q", subject)
			} else {
				r.JSON, err = o.Marshal()
			}
		}
	default:
		err = fmt.Errorf("unknown kind %q", head.Kind)
	}
	if r.Agent != "" && r.Agent != subjAgent {
		// Checked first: a forged agent name is the finding, whatever
		// else is wrong with the record.
		return Record{}, fmt.Errorf("%w: payload agent %q on subject of agent %q", ErrInvalid, r.Agent, subjAgent)
	}
	if err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if r.Agent != subjAgent {
		return Record{}, fmt.Errorf("%w: payload agent %q on subject of agent %q", ErrInvalid, r.Agent, subjAgent)
	}
	return r, nil
}

var eventHead = []byte(`{"kind":"` + KindEvent + `",`)

// decodeEvent validates one event record and re-encodes it; the caller
// checks it against the subject.
func decodeEvent(data []byte) (Record, error) {
	if e, ok := decodeFast(data); ok && e.validate() == nil && e.Kind == KindEvent && e.PathB64 == "" && e.OldPathB64 == "" {
		// data is appendJSON's encoding of e, and e's paths are plain:
		// Marshal would give data back.
		return Record{Kind: KindEvent, Agent: e.Agent, Seq: e.Seq, Event: &e, JSON: bytes.Clone(data)}, nil
	}
	return decodeStrict(data)
}

// decodeStrict is decodeEvent through encoding/json.
func decodeStrict(data []byte) (Record, error) {
	var e Event
	err := strict(data, &e)
	if err == nil {
		err = e.validate()
	}
	if err == nil && e.Kind != KindEvent {
		err = fmt.Errorf("kind %q after kind %q", e.Kind, KindEvent)
	}
	if err == nil {
		if e.Path, err = DecodePath(e.Path, e.PathB64); err == nil {
			e.OldPath, err = DecodePath(e.OldPath, e.OldPathB64)
		}
	}
	if err != nil {
		return Record{}, err
	}
	r := Record{Kind: KindEvent, Agent: e.Agent, Seq: e.Seq, Event: &e}
	r.JSON, err = e.Marshal()
	return r, err
}

func strict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("data after the record")
	}
	return nil
}

func needAll(agent string, seq uint64, name, val string) error {
	if err := ValidAgentID(agent); err != nil {
		return err
	}
	if seq == 0 {
		return fmt.Errorf("seq is missing")
	}
	if val == "" {
		return fmt.Errorf("%s is missing", name)
	}
	return nil
}

func (e *Event) validate() error {
	if err := needAll(e.Agent, e.Seq, "path", e.Path); err != nil {
		return err
	}
	if e.ID != ID(e.Agent, e.Seq) {
		return fmt.Errorf("id %q does not match agent and seq", e.ID)
	}
	if _, err := ParseType(string(e.Type)); err != nil {
		return err
	}
	if e.Type == Rename && e.OldPath == "" {
		return fmt.Errorf("rename without old_path")
	}
	if e.Source != SourceWatch && e.Source != SourceScan {
		return fmt.Errorf("source %q", e.Source)
	}
	if e.ObservedAt.IsZero() || e.EmittedAt.IsZero() {
		return fmt.Errorf("observed_at and emitted_at are required")
	}
	return nil
}
