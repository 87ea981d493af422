package auditlog

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/fso-project/fso/internal/event"
)

// Record is one line of the audit log as read back.
type Record struct {
	Segment string // file name of the segment
	Line    int64  // 1-based within the segment
	Raw     []byte // the line without "\n"

	Kind, Agent, ID, EventID, Type string
	// Path and OldPath are decoded losslessly: path_b64 (old_path_b64) wins
	// over path (old_path). For an overflow record Path is its root.
	Path, OldPath string
	Seq           uint64
	// FromSeq and ToSeq are the range of a gap record.
	FromSeq, ToSeq uint64
	// Reason is the reason of a gap or overflow record.
	Reason string

	ObservedAt, RecordedAt time.Time
	Hash, Prev             string
}

// parseRecord parses a line (without "\n"). It does not verify the line.
// Raw is set to line itself.
func parseRecord(line []byte) (Record, error) {
	var f fields
	if err := scanFields(line, &f); err != nil {
		return Record{}, err
	}
	r := Record{Raw: line}
	r.Kind = str(f.kind)
	r.Agent = str(f.agent)
	r.ID = str(f.id)
	r.EventID = str(f.eventID)
	r.Type = str(f.typ)
	r.Reason = str(f.reason)
	r.Path = path(f.path, f.pathB64)
	r.OldPath = path(f.oldPath, f.oldPathB64)
	if r.Kind == event.KindOverflow && r.Path == "" {
		r.Path = path(f.root, f.rootB64)
	}
	r.Seq, _ = jsonUint(f.seq)
	r.FromSeq, _ = jsonUint(f.fromSeq)
	r.ToSeq, _ = jsonUint(f.toSeq)
	r.ObservedAt = timestamp(f.observedAt)
	r.RecordedAt = timestamp(f.recordedAt)
	r.Hash = str(f.hash)
	r.Prev = str(f.prev)
	return r, nil
}

func str(raw []byte) string {
	s, _ := jsonString(raw)
	return s
}

func path(text, b64 []byte) string {
	t := str(text)
	p, err := event.DecodePath(t, str(b64))
	if err != nil {
		return t
	}
	return p
}

func timestamp(raw []byte) time.Time {
	s, ok := jsonString(raw)
	if !ok {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// Scan calls fn with every record of every segment in dir, in order. It
// parses the lines but does not verify them (see [Verify]). An incomplete
// last line of the last segment (a write in progress, or a torn tail that
// the next [Open] repairs) ends the scan without error; a line that does not
// parse is an error wrapping [ErrCorrupt]. An error from fn stops the scan
// and is returned as is. fn may keep the Record, including Raw.
func Scan(ctx context.Context, dir string, fn func(Record) error) error {
	segs, err := listSegments(dir)
	if err != nil {
		return fmt.Errorf("scan audit log: %w", err)
	}
	for i, s := range segs {
		if err := scanSegment(ctx, dir, s.name, i == len(segs)-1, fn); err != nil {
			return err
		}
	}
	return nil
}

func scanSegment(ctx context.Context, dir, name string, last bool, fn func(Record) error) error {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return fmt.Errorf("scan audit log: %w", err)
	}
	defer f.Close()
	lr := newLineReader(f)
	for lineNo := int64(1); ; lineNo++ {
		if lineNo%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		line, _, complete, err := lr.next()
		if err == io.EOF {
			return ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("scan audit log: read %s: %w", name, err)
		}
		if !complete {
			if last {
				return ctx.Err()
			}
			return fmt.Errorf("%w: %s line %d: incomplete line", ErrCorrupt, name, lineNo)
		}
		if line == nil {
			return fmt.Errorf("%w: %s line %d: line longer than %d bytes", ErrCorrupt, name, lineNo, maxLineBytes)
		}
		r, err := parseRecord(append([]byte(nil), line[:len(line)-1]...))
		if err != nil {
			return fmt.Errorf("%w: %s line %d: %v", ErrCorrupt, name, lineNo, err)
		}
		r.Segment, r.Line = name, lineNo
		if err := fn(r); err != nil {
			return err
		}
	}
}
