package recorder

import (
	"github.com/fso-project/fso/internal/event"
)

// item is a received record not yet written.
type item struct {
	rec event.Record
	msg ackable // nil when read back from the log
}

// ackable is the part of a JetStream message the recorder uses.
type ackable interface {
	Ack() error
	Nak() error
}

// agentSeq keeps one agent's records in seq order: what is written
// (everything up to wm, plus the seqs in ahead) and what waits for a
// missing predecessor.
type agentSeq struct {
	wm      uint64
	ahead   map[uint64]bool  // written past wm: a gap record written as soon as it covered wm+1
	pending map[uint64]*item // received past wm+1
	gaps    map[uint64]*item // the gap records among pending, so next need not scan them all
}

func newAgentSeq() *agentSeq {
	return &agentSeq{ahead: map[uint64]bool{}, pending: map[uint64]*item{}, gaps: map[uint64]*item{}}
}

// has reports whether seq is already written.
func (s *agentSeq) has(seq uint64) bool { return seq <= s.wm || s.ahead[seq] }

// wrote advances the state past rec, which has just been written.
func (s *agentSeq) wrote(rec event.Record) {
	if g := rec.Gap; g != nil && g.FromSeq <= s.wm+1 && g.ToSeq > s.wm {
		s.wm = g.ToSeq
		// What waited inside the range the gap declares lost is dropped.
		for q, it := range s.pending {
			if q <= s.wm && q != rec.Seq {
				s.drop(q)
				if it.msg != nil {
					it.msg.Ack()
				}
			}
		}
	}
	if rec.Seq == s.wm+1 {
		s.wm = rec.Seq
	} else if rec.Seq > s.wm {
		s.ahead[rec.Seq] = true
	}
	for s.ahead[s.wm+1] {
		delete(s.ahead, s.wm+1)
		s.wm++
	}
	for q := range s.ahead {
		if q <= s.wm {
			delete(s.ahead, q)
		}
	}
}

// next returns the pending item that may be written now: the one with seq
// wm+1, or a gap record covering wm+1.
func (s *agentSeq) next() (*item, bool) {
	if it, ok := s.pending[s.wm+1]; ok {
		s.drop(s.wm + 1)
		return it, true
	}
	for q, it := range s.gaps {
		if g := it.rec.Gap; g.FromSeq <= s.wm+1 && g.ToSeq >= s.wm+1 {
			s.drop(q)
			return it, true
		}
	}
	return nil, false
}

// hold keeps it until its predecessors are written.
func (s *agentSeq) hold(it *item) {
	s.pending[it.rec.Seq] = it
	if it.rec.Gap != nil {
		s.gaps[it.rec.Seq] = it
	}
}

func (s *agentSeq) drop(seq uint64) {
	delete(s.pending, seq)
	delete(s.gaps, seq)
}

// snapshot and restore undo a batch whose write failed.
type seqState struct {
	wm    uint64
	ahead map[uint64]bool
}

func (s *agentSeq) snapshot() seqState {
	c := make(map[uint64]bool, len(s.ahead))
	for k, v := range s.ahead {
		c[k] = v
	}
	return seqState{s.wm, c}
}

func (s *agentSeq) restore(st seqState) { s.wm, s.ahead = st.wm, st.ahead }
