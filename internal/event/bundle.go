package event

import (
	"bytes"
	"fmt"
	"strings"
)

// A bundle carries several events of one agent in one broker message, one
// record per line, in seq order, on BundleSubject(agent). The broker's cost
// is per message, not per byte: at a few thousand changes per second it was
// most of the pipeline's CPU with one message per event. An agent bundles
// only events (diffs, gaps and overflow notices keep their own subjects) and
// only records that are ready together; a lone event goes on its type's
// subject as before.

// bundleToken ends a bundle's subject, in place of an event type.
const bundleToken = "bundle"

// MaxBundleBytes bounds a bundle's payload, under the broker's default
// 1 MiB message limit.
const MaxBundleBytes = 512 << 10

// BundleSubject is where agent publishes bundles of its events.
func BundleSubject(agent string) string { return EventsPrefix + agent + "." + bundleToken }

// IsBundle reports whether subject is a bundle's subject.
func IsBundle(subject string) bool {
	a, ok := SubjectAgent(subject)
	return ok && strings.HasPrefix(subject, EventsPrefix) && subject == BundleSubject(a)
}

// BundleLine is one line of a bundle: the record it holds, or why it is
// not a record of the bundle's agent (Data is then the line's bytes).
type BundleLine struct {
	Record Record
	Data   []byte
	Err    error // wraps ErrInvalid
}

// DecodeBundle splits a bundle received on subject into its lines and
// validates each as Decode does an event on its own subject; a line naming
// another agent than the subject is refused.
func DecodeBundle(subject string, data []byte) []BundleLine {
	agent, _ := SubjectAgent(subject)
	if len(data) > MaxBundleBytes {
		err := fmt.Errorf("%w: bundle of %d bytes, more than %d", ErrInvalid, len(data), MaxBundleBytes)
		return []BundleLine{{Data: data, Err: err}}
	}
	var out []BundleLine
	for line := range bytes.SplitSeq(data, []byte{'\n'}) {
		l := BundleLine{Data: line}
		r, err := decodeEvent(line)
		switch {
		case len(line) == 0:
			l.Err = fmt.Errorf("%w: empty line in a bundle", ErrInvalid)
		case err != nil:
			l.Err = fmt.Errorf("%w: %v", ErrInvalid, err)
		case r.Agent != agent:
			l.Err = fmt.Errorf("%w: payload agent %q on subject of agent %q", ErrInvalid, r.Agent, agent)
		default:
			l.Record = r
		}
		out = append(out, l)
	}
	return out
}

// Bundle joins events of one agent, in seq order, into a bundle's payload.
func Bundle(records [][]byte) []byte {
	return bytes.Join(records, []byte{'\n'})
}
