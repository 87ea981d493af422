package auditlog

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/fso-project/fso/internal/event"
)

// Reasons of a [Problem].
const (
	ReasonEdited         = "edited"          // the hash does not match the line
	ReasonChainBroken    = "chain broken"    // prev is not the previous line's hash: a line was deleted, inserted or moved
	ReasonMissingSegment = "missing segment" // a gap in the segment numbering (Line is 0)
	ReasonTorn           = "torn"            // an incomplete last line
	ReasonUnparsable     = "unparsable"      // no chain fields, or not a JSON object
)

// Problem is where and why verification failed.
type Problem struct {
	Segment string // file name
	Line    int64  // 1-based; 0 for a missing segment
	Reason  string // one of the Reason constants
	Detail  string // more about it, may be empty
}

func (p *Problem) String() string {
	s := fmt.Sprintf("%s line %d: %s", p.Segment, p.Line, p.Reason)
	if p.Line == 0 {
		s = fmt.Sprintf("%s: %s", p.Segment, p.Reason)
	}
	if p.Detail != "" {
		s += ": " + p.Detail
	}
	return s
}

// Report is what [Verify] found.
type Report struct {
	Segments int
	Records  int64
	Bytes    int64
	Head     string // hash of the last line; "" for an empty log
	// Problem is the first problem found; nil means the chain is intact.
	Problem *Problem
	// Checkpoints counts checkpoint records.
	Checkpoints int
	// Agents reports, per agent, the completeness of its sequence.
	Agents map[string]AgentReport
}

// AgentReport describes one agent's records: every record an agent
// publishes (event, diff, gap, overflow) carries the next number of one
// per-agent sequence.
type AgentReport struct {
	Records           int64
	FirstSeq, LastSeq uint64
	// Missing lists (up to maxMissingRanges) inclusive ranges of sequence
	// numbers between FirstSeq and LastSeq that have no record and are not
	// covered by a gap record; MissingCount counts all of them.
	Missing      [][2]uint64
	MissingCount uint64
	// Gaps counts gap records.
	Gaps int
	// Duplicates counts records whose seq was already seen.
	Duplicates int64
}

const maxMissingRanges = 100

// Verify reads every segment in dir once and checks each line's hash, its
// link to the line before (across segments; the first line of the log
// links to 64 zeros), the numbering of the segments (from 00000001.jsonl,
// without gaps) and each agent's sequence. It reports the first problem in
// Report.Problem and goes on counting; its error is for I/O failures only.
// progress, when not nil, is called as the bytes are read. A log being
// written to may show a torn last line if Verify catches a write in
// progress.
func Verify(ctx context.Context, dir string, progress func(doneBytes, totalBytes int64)) (Report, error) {
	return VerifyWith(ctx, dir, VerifyOptions{Progress: progress})
}

// VerifyWith is [Verify] that also checks the checkpoint records (their
// claims, and with o.PublicKey their signatures) and, with o.Published,
// that the log still holds the checkpoint the recorder last published.
func VerifyWith(ctx context.Context, dir string, o VerifyOptions) (Report, error) {
	progress := o.Progress
	segs, err := listSegments(dir)
	if err != nil {
		return Report{}, fmt.Errorf("verify audit log: %w", err)
	}
	v := verifier{agents: make(map[string]*agentSeqs), prev: zeroHash, cp: checkpointCheck{opts: o}}
	for _, s := range segs {
		v.total += s.size
	}
	v.progress = progress
	next := uint64(1)
	for _, s := range segs {
		if s.n != next {
			v.problem(segName(next), 0, ReasonMissingSegment)
			v.prevUnknown = true
		}
		next = s.n + 1
		if err := v.segment(ctx, dir, s); err != nil {
			return Report{}, err
		}
	}
	if progress != nil {
		progress(v.rep.Bytes, v.total)
	}
	v.published()
	v.rep.Checkpoints = v.cp.count
	v.rep.Agents = make(map[string]AgentReport, len(v.agents))
	for name, a := range v.agents {
		v.rep.Agents[name] = a.report()
	}
	return v.rep, nil
}

type verifier struct {
	rep         Report
	total       int64
	progress    func(int64, int64)
	prev        [hexLen]byte // hash of the previous line
	prevUnknown bool         // the previous line could not be read
	agents      map[string]*agentSeqs
	f           fields
	cp          checkpointCheck
	ct          chainTrack
}

func (v *verifier) problem(seg string, line int64, reason string) {
	if v.rep.Problem == nil {
		v.rep.Problem = &Problem{Segment: seg, Line: line, Reason: reason}
	}
}

func (v *verifier) segment(ctx context.Context, dir string, s segment) error {
	f, err := os.Open(segPath(dir, s.n))
	if err != nil {
		return fmt.Errorf("verify audit log: %w", err)
	}
	defer f.Close()
	v.rep.Segments++
	lr := newLineReader(io.LimitReader(f, s.size))
	const progressEvery = 16 << 20
	lastProgress := v.rep.Bytes
	for lineNo := int64(1); ; lineNo++ {
		line, n, complete, err := lr.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("verify audit log: read %s: %w", s.name, err)
		}
		v.rep.Bytes += n
		if v.rep.Bytes-lastProgress >= progressEvery {
			if err := ctx.Err(); err != nil {
				return err
			}
			if v.progress != nil {
				v.progress(v.rep.Bytes, v.total)
			}
			lastProgress = v.rep.Bytes
		}
		if !complete {
			v.problem(s.name, lineNo, ReasonTorn)
			v.prevUnknown = true
			continue
		}
		if line == nil {
			v.problem(s.name, lineNo, ReasonUnparsable)
			v.prevUnknown = true
			continue
		}
		v.line(s.name, lineNo, line[:len(line)-1])
	}
}

func (v *verifier) line(seg string, lineNo int64, line []byte) {
	p, err := splitLine(line)
	if err != nil {
		v.problem(seg, lineNo, ReasonUnparsable)
		v.prevUnknown = true
		return
	}
	switch {
	case !p.sealed():
		if !p.wellFormed() {
			v.problem(seg, lineNo, ReasonUnparsable)
			v.prevUnknown = true
			return
		}
		v.problem(seg, lineNo, ReasonEdited)
	case !v.prevUnknown && string(p.prev) != string(v.prev[:]):
		if !p.wellFormed() {
			v.problem(seg, lineNo, ReasonUnparsable)
		} else {
			v.chainBroken(seg, lineNo, p.prev)
		}
	}
	v.linked(seg, lineNo, p.hash)
	// The next line must link to this line's hash as written, so that an
	// edit is reported once, as an edit.
	copy(v.prev[:], p.hash)
	v.prevUnknown = false
	v.rep.Head = string(p.hash)
	if err := scanFieldsUntil(line, &v.f, seqFieldsKnown); err != nil {
		v.problem(seg, lineNo, ReasonUnparsable)
		return
	}
	if string(v.f.kind) == `"`+KindCheckpoint+`"` {
		v.checkpoint(seg, lineNo, line, p.prev, v.rep.Records)
	}
	v.rep.Records++
	v.cp.lastSeg, v.cp.lastLine = seg, lineNo
	v.account(&v.f)
}

// seqFieldsKnown reports whether f holds all that account needs. Records
// come from package event, which writes kind, agent and seq first and
// never a key twice, so Verify need not read the rest of the line.
func seqFieldsKnown(f *fields) bool {
	return f.kind != nil && f.agent != nil && f.seq != nil &&
		(f.fromSeq != nil && f.toSeq != nil || string(f.kind) != `"`+event.KindGap+`"`)
}

// account adds a record to its agent's sequence.
func (v *verifier) account(f *fields) {
	kind := f.kind
	if len(kind) < 2 || kind[0] != '"' {
		return
	}
	switch string(kind[1 : len(kind)-1]) {
	case event.KindEvent, event.KindDiff, event.KindGap, event.KindOverflow:
	default:
		return
	}
	seq, ok := jsonUint(f.seq)
	if !ok || seq == 0 || len(f.agent) < 2 {
		return
	}
	var a *agentSeqs
	if raw := f.agent[1 : len(f.agent)-1]; f.agent[0] == '"' && !slices.Contains(raw, '\\') {
		a = v.agents[string(raw)]
		if a == nil {
			a = &agentSeqs{}
			v.agents[string(raw)] = a
		}
	} else if name, ok := jsonString(f.agent); ok {
		a = v.agents[name]
		if a == nil {
			a = &agentSeqs{}
			v.agents[name] = a
		}
	} else {
		return
	}
	a.records++
	if a.seen.add(seq, seq) {
		a.duplicates++
	}
	if string(kind) == `"`+event.KindGap+`"` {
		a.gaps++
		from, ok1 := jsonUint(f.fromSeq)
		to, ok2 := jsonUint(f.toSeq)
		if ok1 && ok2 && from <= to {
			a.covered.add(from, to)
		}
	}
}

type agentSeqs struct {
	records, duplicates int64
	gaps                int
	seen, covered       intervals
}

func (a *agentSeqs) report() AgentReport {
	r := AgentReport{Records: a.records, Gaps: a.gaps, Duplicates: a.duplicates}
	if len(a.seen) == 0 {
		return r
	}
	r.FirstSeq, r.LastSeq = a.seen[0][0], a.seen[len(a.seen)-1][1]
	all := slices.Clone(a.seen)
	for _, c := range a.covered {
		all.add(c[0], c[1])
	}
	for i := 1; i < len(all); i++ {
		lo, hi := all[i-1][1]+1, all[i][0]-1
		if lo > r.LastSeq {
			break
		}
		if lo <= r.FirstSeq {
			continue
		}
		hi = min(hi, r.LastSeq)
		r.MissingCount += hi - lo + 1
		if len(r.Missing) < maxMissingRanges {
			r.Missing = append(r.Missing, [2]uint64{lo, hi})
		}
	}
	return r
}

// intervals is a set of numbers as sorted, disjoint, non-adjacent
// inclusive ranges.
type intervals [][2]uint64

func inc(x uint64) uint64 {
	if x == ^uint64(0) {
		return x
	}
	return x + 1
}

// add adds lo..hi and reports whether any of it was already there.
func (s *intervals) add(lo, hi uint64) (overlap bool) {
	v := *s
	n := len(v)
	// Records come mostly in order: extend or append at the end.
	if n == 0 || lo > inc(v[n-1][1]) {
		*s = append(v, [2]uint64{lo, hi})
		return false
	}
	if lo == v[n-1][1]+1 {
		v[n-1][1] = hi
		return false
	}
	// i: first range that touches or follows lo; j: first range after hi.
	i, _ := slices.BinarySearchFunc(v, lo, func(r [2]uint64, lo uint64) int {
		if inc(r[1]) < lo {
			return -1
		}
		return 1
	})
	j, _ := slices.BinarySearchFunc(v, hi, func(r [2]uint64, hi uint64) int {
		if r[0] <= inc(hi) {
			return -1
		}
		return 1
	})
	if i == j {
		*s = slices.Insert(v, i, [2]uint64{lo, hi})
		return false
	}
	for _, r := range v[i:j] {
		if r[0] <= hi && r[1] >= lo {
			overlap = true
		}
	}
	merged := [2]uint64{min(lo, v[i][0]), max(hi, v[j-1][1])}
	*s = slices.Replace(v, i, j, merged)
	return overlap
}
