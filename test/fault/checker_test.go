package fault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fso-project/fso/internal/auditlog"
)

// probePrefix names the files written to find out when an agent watches:
// those written before it does are not observed, so the checker ignores
// them except for duplicates.
const probePrefix = "probe-"

// writer is the workload and its ground truth: it creates new files, one
// after another, and remembers every path it created.
type writer struct {
	t    *testing.T
	dir  string
	mu   sync.Mutex
	done []string
	stop chan struct{}
	wg   sync.WaitGroup
}

// startWriter creates files name-00000, name-00001, … in dir, one every
// `every` (none: as fast as it can), until max or stopWait.
func startWriter(t *testing.T, dir, name string, max int, every time.Duration) *writer {
	w := &writer{t: t, dir: dir, stop: make(chan struct{})}
	w.wg.Go(func() {
		for i := range max {
			select {
			case <-w.stop:
				return
			default:
			}
			p := filepath.Join(dir, fmt.Sprintf("%s-%05d", name, i))
			if err := os.WriteFile(p, []byte(p), 0o644); err != nil {
				t.Errorf("write %s: %v", p, err)
				return
			}
			w.mu.Lock()
			w.done = append(w.done, p)
			w.mu.Unlock()
			if every > 0 {
				time.Sleep(every)
			}
		}
	})
	t.Cleanup(w.stopWait)
	return w
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.done)
}

func (w *writer) stopWait() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
}

// all waits until the writer has created all it was asked to, and
// returns what it created.
func (w *writer) all() []string {
	w.wg.Wait()
	return w.paths()
}

// paths stops the writer and returns what it created.
func (w *writer) paths() []string {
	w.stopWait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.done...)
}

// logEvents counts the audit log's event records by path.
func logEvents(t *testing.T, audit string) map[string]int {
	t.Helper()
	m := map[string]int{}
	err := auditlog.Scan(t.Context(), audit, func(r auditlog.Record) error {
		if r.Kind == "event" {
			m[r.Path]++
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read audit log: %v", err)
	}
	return m
}

// countLines is how many lines the audit log has (cheap, for pacing).
func countLines(audit string) int {
	n := 0
	segs, _ := filepath.Glob(filepath.Join(audit, "*.jsonl"))
	for _, s := range segs {
		b, _ := os.ReadFile(s)
		n += bytes.Count(b, []byte{'\n'})
	}
	return n
}

// waitRecorded waits until every path in truth has an event in the log.
func waitRecorded(t *testing.T, audit string, truth []string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := logEvents(t, audit)
		missing := 0
		for _, p := range truth {
			if got[p] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, %d of %d events not recorded", timeout, missing, len(truth))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// result is what the checker found: the truth against the audit log.
type result struct {
	Ops, Events, Lost, Duplicated, Unexpected int
}

func (r result) String() string {
	return fmt.Sprintf("ops=%d events=%d lost=%d duplicated=%d unexpected=%d", r.Ops, r.Events, r.Lost, r.Duplicated, r.Unexpected)
}

// check compares the paths the test created (each must appear as exactly
// one create event; a later modify of it is its own content arriving after
// the agent's debounce window, so it is allowed once) with the audit log, verifies the chain and each
// agent's completeness with auditlog.Verify and `fso audit verify`, checks
// that each agent's records are in seq order without repeats, and fails
// the test unless lost, duplicated and unexpected are all 0. The result
// line is logged for docs/reliability.md.
func check(t *testing.T, fault, audit string, truth []string, extraVerify ...string) result {
	t.Helper()
	want := make(map[string]bool, len(truth))
	for _, p := range truth {
		want[p] = true
	}
	got := map[string]int{}
	modified := map[string]int{}
	res := result{Ops: len(truth)}
	last := map[string]uint64{}
	err := auditlog.Scan(t.Context(), audit, func(r auditlog.Record) error {
		if r.Agent != "" && r.Seq != 0 {
			if r.Seq != last[r.Agent]+1 {
				t.Errorf("agent %s: seq %d follows %d (%s line %d): out of order or repeated", r.Agent, r.Seq, last[r.Agent], r.Segment, r.Line)
			}
			last[r.Agent] = max(last[r.Agent], r.Seq)
		}
		if r.Kind != "event" {
			return nil
		}
		res.Events++
		probe := strings.HasPrefix(filepath.Base(r.Path), probePrefix)
		if r.Type == "modify" && want[r.Path] && got[r.Path] > 0 && modified[r.Path] == 0 {
			// The op's write reached the agent after it reported the
			// create (slow writer, loaded machine): truthful, not extra.
			modified[r.Path]++
			return nil
		}
		got[r.Path]++
		if !probe && (!want[r.Path] || r.Type != "create") {
			res.Unexpected++
			if res.Unexpected <= 5 {
				t.Errorf("unexpected: %s %s", r.Type, r.Path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read audit log: %v", err)
	}
	for p, n := range got {
		if n > 1 {
			res.Duplicated += n - 1
			if res.Duplicated <= 5 {
				t.Errorf("duplicated: %s recorded %d times", p, n)
			}
		}
	}
	for _, p := range truth {
		if got[p] == 0 {
			res.Lost++
			if res.Lost <= 5 {
				t.Errorf("lost: %s", p)
			}
		}
	}
	rep, err := auditlog.Verify(t.Context(), audit, nil)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if rep.Problem != nil {
		t.Errorf("verify: %s", rep.Problem)
	}
	for a, ar := range rep.Agents {
		if ar.MissingCount != 0 || ar.Duplicates != 0 {
			t.Errorf("agent %s: missing %v (%d), duplicates %d", a, ar.Missing, ar.MissingCount, ar.Duplicates)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, fsoBin, append([]string{"audit", "verify", "--audit-dir", audit}, extraVerify...)...).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("\nOK\n")) {
		t.Errorf("fso audit verify: %v\n%s", err, out)
	}
	t.Logf("RESULT fault=%q %s records=%d segments=%d", fault, res, rep.Records, rep.Segments)
	if res.Lost != 0 || res.Duplicated != 0 || res.Unexpected != 0 {
		t.Errorf("checker: %s", res)
	}
	return res
}
