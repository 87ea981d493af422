package fault

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// The broker killed with SIGKILL mid-burst, down for longer than the
// agent's publish timeout (5s) and the stream's dedupe window (1s here),
// then restarted on its data: the agent spools, reports the failed
// publishes in its status, and delivers everything once; the recorder
// drops what was published twice.
func TestBrokerKill9(t *testing.T) {
	s := newSystem(t, "--dedupe-window", "1s")
	w := startWriter(t, s.root, "burst", 20000, 2*time.Millisecond)
	waitGrowth(t, s.audit, 300)
	s.brokers[0].kill9(t)
	time.Sleep(8 * time.Second) // the agent keeps observing and spooling
	s.brokers[0].restart(t)
	waitGrowth(t, s.audit, 300)
	truth := w.paths()
	s.checkReported(t)
	s.finish(t, "broker kill -9 for 8s mid-burst (dedupe window 1s)", truth, 120*time.Second)
}

// The broker stopped with SIGSTOP mid-burst for longer than the publish
// timeout and the dedupe window: its TCP connections stay open but
// nothing is answered. Then SIGCONT.
func TestBrokerPause(t *testing.T) {
	s := newSystem(t, "--dedupe-window", "1s")
	w := startWriter(t, s.root, "burst", 20000, 2*time.Millisecond)
	waitGrowth(t, s.audit, 300)
	t.Log("SIGSTOP broker")
	s.brokers[0].signal(sigStop)
	time.Sleep(8 * time.Second)
	t.Log("SIGCONT broker")
	s.brokers[0].signal(sigCont)
	waitGrowth(t, s.audit, 300)
	truth := w.paths()
	s.checkReported(t)
	s.finish(t, "broker SIGSTOP for 8s mid-burst (dedupe window 1s)", truth, 120*time.Second)
}

// checkReported waits until the agent's status in the broker says that
// publishes failed and records were spooled: the outage is visible.
func (s *system) checkReported(t *testing.T) {
	t.Helper()
	_, js := jsConnect(t, s.urls)
	var st struct {
		LastError    string `json:"last_error"`
		SpoolEntries int    `json:"spool_entries"`
		Published    uint64 `json:"published"`
		Recorded     uint64 `json:"recorded"`
	}
	eventually(t, 30*time.Second, "agent status reports the failed publishes", func() bool {
		v := kvGet(t.Context(), js, "status."+s.agentID)
		return v != "" && json.Unmarshal([]byte(v), &st) == nil && strings.Contains(st.LastError, "publish")
	})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if st, err := js.Stream(ctx, "FSO"); err != nil || st.CachedInfo().Config.Duplicates != time.Second {
		t.Errorf("the stream's dedupe window is not --dedupe-window 1s: %v", err)
	}
	t.Logf("agent status: last_error=%q spool_entries=%d published=%d recorded=%d", st.LastError, st.SpoolEntries, st.Published, st.Recorded)
}
