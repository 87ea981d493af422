package fault

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// system is one FSO deployment as separate processes.
type system struct {
	t                  *testing.T
	root, audit, state string
	urls               string // comma-separated client URLs
	brokers            []*proc
	recorder, agent    *proc
	agentID            string
}

// newSystem starts one broker (with extra flags), a recorder and an agent
// watching a fresh directory, and waits until the agent's changes are
// recorded.
func newSystem(t *testing.T, brokerFlags ...string) *system {
	t.Helper()
	addr := freePort(t)
	s := &system{t: t, urls: "nats://" + addr}
	s.brokers = []*proc{start(t, "broker", append([]string{"broker", "--data", t.TempDir(), "--listen", addr}, brokerFlags...)...)}
	s.startClients(t, filepath.Join(t.TempDir(), "audit"))
	return s
}

// startClients starts the recorder and the agent and waits until they work.
func (s *system) startClients(t *testing.T, audit string, recorderFlags ...string) {
	t.Helper()
	s.root, s.audit, s.state, s.agentID = t.TempDir(), audit, t.TempDir(), "fault-1"
	s.recorder = start(t, "recorder", append([]string{"recorder", "--server", s.urls, "--audit-dir", s.audit}, recorderFlags...)...)
	s.agent = start(t, "agent", "agent", "--server", s.urls, "--id", s.agentID, "--state", s.state, "--watch", s.root)
	s.waitWatching(t)
}

// waitWatching writes probe files until one is recorded.
func (s *system) waitWatching(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		p := filepath.Join(s.root, fmt.Sprintf("%s%d", probePrefix, i))
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		time.Sleep(250 * time.Millisecond)
		if logEvents(t, s.audit)[p] > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent changes not recorded within 60s")
		}
	}
}

// finish waits until every path in truth is recorded, stops agent and
// recorder cleanly (the recorder writes its last checkpoint), and checks.
func (s *system) finish(t *testing.T, fault string, truth []string, timeout time.Duration) result {
	t.Helper()
	waitRecorded(t, s.audit, truth, timeout)
	s.agent.stop(t)
	s.recorder.stop(t)
	return check(t, fault, s.audit, truth)
}

// waitGrowth waits until the audit log has n lines more than it had.
func waitGrowth(t *testing.T, audit string, n int) {
	t.Helper()
	base := countLines(audit)
	t.Logf("audit log has %d lines; waiting for %d more", base, n)
	eventually(t, 60*time.Second, fmt.Sprintf("audit log grows by %d lines", n), func() bool {
		return countLines(audit) >= base+n
	})
}

func lastSegment(t *testing.T, audit string) string {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(audit, "*.jsonl"))
	if len(segs) == 0 {
		t.Fatal("no segment")
	}
	return segs[len(segs)-1]
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
