package fault

import (
	"os"
	"strings"
	"testing"
	"time"
)

// kill -9 of the recorder mid-burst, three times; before the last restart
// a torn last line (a write cut short) is appended to the log. Afterwards
// every event is recorded exactly once, in seq order, and the log verifies.
func TestRecorderKill9(t *testing.T) {
	s := newSystem(t)
	w := startWriter(t, s.root, "burst", 20000, 2*time.Millisecond)
	for i := range 3 {
		waitGrowth(t, s.audit, 300)
		s.recorder.kill9(t)
		if i == 2 {
			f, err := os.OpenFile(lastSegment(t, s.audit), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(`{"kind":"event","agent":"fault-1","seq":`)
			f.Close()
		}
		s.recorder.restart(t)
	}
	waitGrowth(t, s.audit, 300)
	truth := w.paths()
	s.finish(t, "recorder kill -9 x3 mid-burst, torn tail", truth, 90*time.Second)
	if !strings.Contains(s.recorder.out.String(), "torn tail repaired") {
		t.Errorf("the recorder did not report repairing the torn tail:\n%s", tail(s.recorder.out.String(), 20))
	}
}
