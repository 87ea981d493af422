package controller_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/fso-project/fso/internal/controller"
)

func watching(st controller.AgentStatus) []string {
	var out []string
	for _, r := range st.Roots {
		if r.Watching {
			out = append(out, r.Path)
		}
	}
	slices.Sort(out)
	return out
}

// TestApplyLive: a root added is watched, a pattern change applies in
// place, a root removed stops; the unchanged root keeps reporting.
func TestApplyLive(t *testing.T) {
	tb := startBroker(t)
	c := newController(t, tb)
	d := dirs(t, 2)
	a, b := d[0], d[1]
	evs := events(t, tb, "web-1")
	startAgent(t, tb, "web-1", map[string]string{"role": "web"}, nil, a)
	until(t, "first status", func() bool { _, ok := status(t, c, "web-1"); return ok })

	// Add root b.
	rev := apply(t, c, fmt.Sprintf("defaults:\n  watch:\n    - path: %s\nagents:\n  - match: {labels: {role: web}}\n    watch:\n      - path: %s\n", a, b))
	st := waitApplied(t, c, "web-1", rev)
	if have, want := watching(st), []string{a, b}; !slices.Equal(have, want) {
		t.Fatalf("watching %v, want %v", have, want)
	}
	write(t, filepath.Join(b, "new.txt"), "x")
	nextEvent(t, evs, b)

	// Pattern change on b: only *.txt.
	rev = apply(t, c, fmt.Sprintf("defaults:\n  watch:\n    - path: %s\n    - path: %s\n      include: [\"**/*.txt\"]\n", a, b))
	waitApplied(t, c, "web-1", rev)
	write(t, filepath.Join(b, "skip.log"), "x")
	write(t, filepath.Join(b, "keep.txt"), "x")
	if e := nextEvent(t, evs, b); e.Path != filepath.Join(b, "keep.txt") {
		t.Errorf("first event after the pattern change: have %s, want keep.txt", e.Path)
	}

	// Remove root b; a, unchanged, still reports.
	rev = apply(t, c, fmt.Sprintf("defaults:\n  watch:\n    - path: %s\n", a))
	st = waitApplied(t, c, "web-1", rev)
	if have, want := watching(st), []string{a}; !slices.Equal(have, want) {
		t.Fatalf("watching %v, want %v", have, want)
	}
	write(t, filepath.Join(b, "gone.txt"), "x")
	write(t, filepath.Join(a, "still.txt"), "x")
	if e := nextEvent(t, evs, filepath.Dir(a)); e.Path != filepath.Join(a, "still.txt") {
		t.Errorf("after removing %s: have event %s, want only %s/still.txt", b, e.Path, a)
	}
	if st.ConfigDesired != rev || st.ConfigRejected != nil {
		t.Errorf("status: desired %d rejected %v, want %d and none", st.ConfigDesired, st.ConfigRejected, rev)
	}
}

// TestAgentRejects: a root that does not exist on the agent is rejected;
// the agent keeps its last good configuration and says why.
func TestAgentRejects(t *testing.T) {
	tb := startBroker(t)
	c := newController(t, tb)
	d := dirs(t, 1)
	startAgent(t, tb, "db-1", nil, nil)
	good := apply(t, c, fmt.Sprintf("defaults:\n  watch:\n    - path: %s\n", d[0]))
	waitApplied(t, c, "db-1", good)
	bad := apply(t, c, fmt.Sprintf("defaults:\n  watch:\n    - path: %s\n    - path: %s/missing\n", d[0]+"x", d[0]))
	st := waitRejected(t, c, "db-1", bad)
	if st.ConfigApplied != good {
		t.Errorf("applied %d after a rejected revision, want the last good %d", st.ConfigApplied, good)
	}
	if r := st.ConfigRejected.Reason; !strings.Contains(r, "defaults.watch[0].path") || !strings.Contains(r, "no such directory") {
		t.Errorf("reason %q, want it to name defaults.watch[0].path and say no such directory", r)
	}
	if have := watching(st); !slices.Equal(have, []string{d[0]}) {
		t.Errorf("watching %v after rejection, want %v", have, d[:1])
	}
}

// TestApplyRefusesOutsideAllowRoot: apply knows the agent's --allow-root
// list from its status and refuses, writing nothing.
func TestApplyRefusesOutsideAllowRoot(t *testing.T) {
	tb := startBroker(t)
	c := newController(t, tb)
	d := dirs(t, 2)
	startAgent(t, tb, "web-1", nil, []string{d[0]})
	until(t, "first status", func() bool { _, ok := status(t, c, "web-1"); return ok })
	_, err := c.Apply(t.Context(), "fso.yaml", []byte(fmt.Sprintf("defaults:\n  watch:\n    - path: %s\n", d[1])), controller.ApplyOptions{By: "test"})
	if err == nil || !strings.Contains(err.Error(), "defaults.watch[0].path (line 3)") || !strings.Contains(err.Error(), "allow-root") {
		t.Fatalf("have %v, want an error naming defaults.watch[0].path (line 3) and --allow-root", err)
	}
	if _, rev, _ := c.Current(t.Context()); rev != 0 {
		t.Errorf("revision %d written by a refused apply", rev)
	}
}

// TestConcurrentApplies: compare-and-set means every apply either lands
// as its own revision or fails with ErrConflict; none is lost silently.
func TestConcurrentApplies(t *testing.T) {
	tb := startBroker(t)
	c := newController(t, tb)
	d := dirs(t, 1)
	base := apply(t, c, fmt.Sprintf("defaults:\n  watch:\n    - path: %s\n", d[0]))
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			doc := fmt.Sprintf("defaults:\n  watch:\n    - path: %s\n  important: [\"f%d\"]\n", d[0], i)
			_, errs[i] = c.Apply(t.Context(), "fso.yaml", []byte(doc), controller.ApplyOptions{By: "test", IfRevision: base})
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, controller.ErrConflict):
			t.Errorf("have %v, want nil or ErrConflict", err)
		}
	}
	if won != 1 {
		t.Errorf("%d of %d applies over revision %d won, want exactly 1", won, n, base)
	}
	hist, err := c.History(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 {
		t.Errorf("history has %d revisions, want 2", len(hist))
	}
	// Without --if-revision, concurrent applies still cannot overwrite
	// each other unseen: each lands or conflicts.
	for i := range n {
		wg.Go(func() {
			doc := fmt.Sprintf("defaults:\n  watch:\n    - path: %s\n  nodiff: [\"g%d\"]\n", d[0], i)
			_, errs[i] = c.Apply(t.Context(), "fso.yaml", []byte(doc), controller.ApplyOptions{By: "test"})
		})
	}
	wg.Wait()
	won = 0
	for _, err := range errs {
		if err == nil {
			won++
		} else if !errors.Is(err, controller.ErrConflict) {
			t.Errorf("have %v, want nil or ErrConflict", err)
		}
	}
	hist, _ = c.History(t.Context())
	if len(hist) != 2+won {
		t.Errorf("history has %d revisions after %d successful applies, want %d", len(hist), won, 2+won)
	}
}

// TestBrokerRestart: after a broker restart the agent re-establishes its
// watch and applies what is applied next.
func TestBrokerRestart(t *testing.T) {
	tb := startBroker(t)
	c := newController(t, tb)
	d := dirs(t, 2)
	startAgent(t, tb, "web-1", nil, nil)
	rev := apply(t, c, fmt.Sprintf("defaults:\n  watch:\n    - path: %s\n", d[0]))
	waitApplied(t, c, "web-1", rev)
	tb.stop()
	tb.start()
	rev = apply(t, c, fmt.Sprintf("defaults:\n  watch:\n    - path: %s\n    - path: %s\n", d[0], d[1]))
	st := waitApplied(t, c, "web-1", rev)
	if have := watching(st); !slices.Equal(have, d) {
		t.Errorf("watching %v, want %v", have, d)
	}
}

// TestOfflineAgent: an agent that was offline during two applies picks up
// the newest when it starts; one never seen gets its configuration from the
// next apply (agents read only their own rendering, which apply writes for
// the agents that have reported), or at once when a selector names its id.
func TestOfflineAgent(t *testing.T) {
	tb := startBroker(t)
	c := newController(t, tb)
	d := dirs(t, 2)
	ra := startAgent(t, tb, "web-1", nil, nil)
	first := apply(t, c, fmt.Sprintf("defaults:\n  watch:\n    - path: %s\n", d[0]))
	waitApplied(t, c, "web-1", first)
	ra.stop()
	apply(t, c, fmt.Sprintf("defaults:\n  watch:\n    - path: %s\n  important: [a]\n", d[1]))
	newest := apply(t, c, fmt.Sprintf("defaults:\n  watch:\n    - path: %s\n", d[1]))
	startAgent(t, tb, "web-1", nil, nil)
	st := waitApplied(t, c, "web-1", newest)
	if st.ConfigApplied != newest || !slices.Equal(watching(st), d[1:]) {
		t.Errorf("web-1: applied %d watching %v, want %d watching %v", st.ConfigApplied, watching(st), newest, d[1:])
	}
	// Named literally before it ever ran: its rendering is waiting for it.
	named := apply(t, c, fmt.Sprintf("defaults:\n  watch:\n    - path: %s\nagents:\n  - match: {id: db-9}\n    watch:\n      - path: %s\n", d[1], d[0]))
	startAgent(t, tb, "db-9", nil, nil)
	if st := waitApplied(t, c, "db-9", named); !slices.Equal(watching(st), d) {
		t.Errorf("db-9: watching %v, want %v", watching(st), d)
	}
	// Matched by the defaults only: configured by the next apply.
	startAgent(t, tb, "never-seen", nil, nil)
	again := apply(t, c, fmt.Sprintf("defaults:\n  watch:\n    - path: %s\n", d[1]))
	if st := waitApplied(t, c, "never-seen", again); !slices.Equal(watching(st), d[1:]) {
		t.Errorf("never-seen: watching %v, want %v", watching(st), d[1:])
	}
}

// TestRollback restores an earlier revision as a new one.
func TestRollback(t *testing.T) {
	tb := startBroker(t)
	c := newController(t, tb)
	d := dirs(t, 2)
	startAgent(t, tb, "web-1", nil, nil)
	r1 := apply(t, c, fmt.Sprintf("defaults:\n  watch:\n    - path: %s\n", d[0]))
	waitApplied(t, c, "web-1", apply(t, c, fmt.Sprintf("defaults:\n  watch:\n    - path: %s\n", d[1])))
	plan, err := c.Rollback(t.Context(), r1, controller.ApplyOptions{By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	st := waitApplied(t, c, "web-1", plan.Revision)
	if have := watching(st); !slices.Equal(have, d[:1]) {
		t.Errorf("after rollback to %d: watching %v, want %v", r1, have, d[:1])
	}
	if len(plan.Agents) != 1 || len(plan.Agents[0].Changes) != 2 {
		t.Errorf("plan %+v, want web-1 with + and - lines", plan.Agents)
	}
}
