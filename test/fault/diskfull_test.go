package fault

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The audit directory is a small tmpfs, filled with a ballast file until
// little is free: mid-burst the disk fills, the recorder stops
// acknowledging and says so, and writes no partial record; the stream holds
// what is unrecorded. Once the ballast is removed everything is recorded.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	addr := freePort(t)
	s := &system{t: t, urls: "nats://" + addr}
	s.brokers = []*proc{start(t, "broker", "broker", "--data", t.TempDir(), "--listen", addr)}
	audit := filepath.Join(t.TempDir(), "audit")
	if err := os.Mkdir(audit, 0o750); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "fso-fault", audit).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs on %s: %v: %s", audit, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", audit).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", audit, err, out)
		}
	})
	s.startClients(t, audit)

	// Leave 128 KiB free: a few hundred records.
	var st unix.Statfs_t
	if err := unix.Statfs(audit, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	ballast := filepath.Join(audit, "ballast")
	if err := os.WriteFile(ballast, make([]byte, free-128<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	w := startWriter(t, s.root, "burst", 3000, 2*time.Millisecond)
	eventually(t, 60*time.Second, "recorder reports the full disk", func() bool {
		return strings.Contains(s.recorder.out.String(), "no space left on device")
	})
	_, js := jsConnect(t, s.urls)
	eventually(t, 60*time.Second, "the stream holds the unrecorded events", func() bool {
		return streamMsgs(t, js) > 0
	})
	n := countLines(audit)
	t.Logf("disk full at %d lines; the stream holds %d messages", n, streamMsgs(t, js))
	time.Sleep(2 * time.Second)
	if m := countLines(audit); m != n {
		t.Errorf("the audit log grew from %d to %d lines while the disk was full", n, m)
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	truth := w.all()
	t.Logf("ballast removed; %d files created", len(truth))
	s.finish(t, "audit dir on a full tmpfs mid-burst, then space freed", truth, 120*time.Second)
	if !strings.Contains(s.recorder.out.String(), "nothing acknowledged") {
		t.Errorf("the recorder did not say it stopped acknowledging:\n%s", tail(s.recorder.out.String(), 10))
	}
}
