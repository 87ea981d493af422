package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/fso-project/fso/internal/atomicfile"
)

// With Config.SpoolSyncAfter > 0 the agent appends events to its spool
// without an fsync and publishes them at once: the recorder usually has
// them in the fsynced audit log within milliseconds, and then the spool's
// fsync would have protected nothing. What the recorder has not confirmed
// within SpoolSyncAfter is fsynced here after all.
//
// A crash of the agent process loses nothing that way: the kernel holds
// the writes. A crash of the machine may: records published from the page
// cache can be missing from the spool when it comes back, and the seqs
// they used are then unknown. The marker file says that a run in this boot
// may have left such records. It is written durably before the first
// deferred append of a run and removed after a clean close, which syncs.
// A start that finds it from another boot declares a gap past the spool's
// end and numbers on far past it, as for a lost spool segment.

const unsyncedMarker = "spool-unsynced"

func (a *Agent) markerPath() string { return filepath.Join(a.cfg.StateDir, unsyncedMarker) }

// bootIDPath is where Linux says which boot this is; a test may point it
// elsewhere.
var bootIDPath = "/proc/sys/kernel/random/boot_id"

// bootID identifies the running boot; "" if the kernel does not say.
func bootID() string {
	b, err := os.ReadFile(bootIDPath)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// unsyncedLost reports whether a run in an earlier boot left deferred
// records (the marker names another boot, or cannot be read), and
// remembers whether the marker already names this boot.
func (a *Agent) unsyncedLost() bool {
	b, err := os.ReadFile(a.markerPath())
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		a.fail("read the spool's unsynced marker; taking it for a machine crash", err)
		return true
	}
	if a.boot != "" && strings.TrimSpace(string(b)) == a.boot {
		a.marked = true // a process crash or kill in this boot: the kernel kept the writes
		return false
	}
	return true
}

// clearUnsynced removes the marker once nothing deferred can be lost: the
// spool is closed (synced), or the loss is declared.
func (a *Agent) clearUnsynced() {
	if err := os.Remove(a.markerPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.fail("remove the spool's unsynced marker", err)
	}
	a.marked = false
}

// canDefer reports whether the next append may skip its fsync, writing
// the marker first if this run has not. gapMu held.
func (a *Agent) canDefer() bool {
	if a.cfg.SpoolSyncAfter <= 0 || a.boot == "" {
		return false
	}
	if !a.marked {
		if err := atomicfile.WriteFile(a.markerPath(), []byte(a.boot+"\n"), 0o600); err != nil {
			a.fail("write the spool's unsynced marker; fsyncing every batch", err)
			return false
		}
		a.marked = true
	}
	return true
}
