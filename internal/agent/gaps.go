package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fso-project/fso/internal/atomicfile"
	"github.com/fso-project/fso/internal/event"
	"github.com/fso-project/fso/internal/spool"
)

// Gaps are seq ranges the agent had to give up: changes the full spool
// could not take, records a damaged spool lost. Until a gap record for each
// is in the spool they are kept here and in the state dir (gaps.json), so
// that neither a restart nor a crash can turn a declared loss into a
// silent one, and the seqs they consumed are never handed out again.

type gapState struct {
	Gaps []event.Gap `json:"gaps"`
	// Floor is the lowest seq the agent may use next.
	Floor uint64 `json:"floor"`
}

func (a *Agent) gapsPath() string { return filepath.Join(a.cfg.StateDir, "gaps.json") }

// loadGaps reads the pending gaps left by an earlier run. gapMu held.
func (a *Agent) loadGaps() error {
	b, err := os.ReadFile(a.gapsPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("agent: read %s: %w", a.gapsPath(), err)
	}
	var st gapState
	if err := json.Unmarshal(b, &st); err != nil {
		// Quarantine: the records it declared lost cannot be named now;
		// one gap from the spool's next seq says so.
		q := a.gapsPath() + ".corrupt"
		os.Rename(a.gapsPath(), q)
		a.fail("pending gaps unreadable, quarantined to "+q, err)
		return nil
	}
	a.gaps = append(a.gaps, st.Gaps...)
	a.seqFloor = max(a.seqFloor, st.Floor)
	return nil
}

// saveGaps persists the pending gaps (or removes the file when none).
// gapMu held.
func (a *Agent) saveGaps() error {
	p := a.gapsPath()
	if len(a.gaps) == 0 {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	b, _ := json.Marshal(gapState{Gaps: a.gaps, Floor: a.seqFloor})
	return atomicfile.WriteFile(p, b, 0o600)
}

// addGap declares from..to lost, merging with the last pending gap when
// adjacent, and persists it; an error says it is not persisted (it is
// logged too). gapMu held.
func (a *Agent) addGap(from, to uint64, reason string) error {
	if n := len(a.gaps); n > 0 && a.gaps[n-1].ToSeq+1 >= from && a.gaps[n-1].FromSeq <= from {
		g := &a.gaps[n-1]
		g.ToSeq = max(g.ToSeq, to)
		if !strings.Contains(g.Reason, reason) {
			g.Reason += "; " + reason
		}
	} else {
		a.gaps = append(a.gaps, event.Gap{Agent: a.cfg.ID, FromSeq: from, ToSeq: to, Reason: reason})
	}
	a.seqFloor = max(a.seqFloor, to+1)
	if err := a.saveGaps(); err != nil {
		a.fail("persist pending gap", err)
		return err
	}
	return nil
}

// spoolDamage turns what a damaged spool lost into pending gaps.
// gapMu held.
func (a *Agent) spoolDamage(ce *spool.CorruptError) {
	for _, r := range ce.Lost {
		a.addGap(r[0], r[1], "spool damaged: "+ce.Error())
	}
}

// clipGaps drops the parts of pending gaps the recorder has after all.
// gapMu held.
func (a *Agent) clipGaps(wm uint64) {
	kept := a.gaps[:0]
	for _, g := range a.gaps {
		if g.ToSeq <= wm {
			continue
		}
		g.FromSeq = max(g.FromSeq, wm+1)
		kept = append(kept, g)
	}
	if len(kept) != len(a.gaps) || len(kept) > 0 {
		a.gaps = kept
		if err := a.saveGaps(); err != nil {
			a.fail("persist pending gap", err)
		}
	}
}
