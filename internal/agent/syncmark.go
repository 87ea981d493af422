package agent

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fso-project/fso/internal/atomicfile"
	"github.com/fso-project/fso/internal/spool"
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
// they used are then unknown. The marker file bounds the damage and makes
// it explicit. It is written durably before the first deferred append of
// a run, names the boot, and reserves seqs: no deferred record gets a seq
// at or past Reserved before the marker says so. A clean close syncs and
// removes it. A start that finds a marker from another boot (or one that
// records a failed fsync) declares every seq from the spool's end to past
// Reserved a gap and numbers on after it.

const unsyncedMarker = "spool-unsynced"

// reserveStep is how many seqs one marker write reserves: one marker
// write (two fsyncs) per 65,536 records.
const reserveStep = 1 << 16

// marker is the content of the unsynced marker file.
type marker struct {
	Boot     string `json:"boot"`
	Reserved uint64 `json:"reserved"`
	// SyncFailed says an fsync of deferred writes failed: they may be
	// lost from the disk even if the machine never goes down.
	SyncFailed string `json:"sync_failed,omitempty"`
}

func (a *Agent) markerPath() string { return filepath.Join(a.cfg.StateDir, unsyncedMarker) }

// bootIDPath is where Linux says which boot this is.
var bootIDPath = "/proc/sys/kernel/random/boot_id"

// bootID identifies the running boot; "" if the kernel does not say.
func bootID() string {
	b, err := os.ReadFile(bootIDPath)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (a *Agent) writeMarker(m marker) error {
	b, _ := json.Marshal(m)
	return atomicfile.WriteFile(a.markerPath(), b, 0o600)
}

// overwriteMarker writes m over the marker in place: no new file, so no
// new block, for a disk too full for writeMarker's temporary file. A
// crash halfway leaves it unreadable, which counts as a loss too.
func (a *Agent) overwriteMarker(m marker) error {
	b, _ := json.Marshal(m)
	f, err := os.OpenFile(a.markerPath(), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(b, 0)
	if err == nil {
		err = f.Truncate(int64(len(b)))
	}
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// checkMarker, at start, reports whether an earlier run's deferred records
// may be lost from the spool, and the seqs it had reserved (0 if unknown).
// A marker of this boot (the process was killed, the kernel kept the
// writes) is settled by an fsync of the spool. Before goroutines start.
func (a *Agent) checkMarker() (lost bool, reserved uint64) {
	b, err := os.ReadFile(a.markerPath())
	if errors.Is(err, os.ErrNotExist) {
		a.markerDone = true
		return false, 0
	}
	var m marker
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	switch {
	case err != nil:
		a.fail("spool's unsynced marker unreadable; taking it for a machine crash", err)
		return true, 0
	case m.SyncFailed != "" || a.boot == "" || m.Boot != a.boot:
		return true, m.Reserved
	}
	if err := a.sp.Sync(); err != nil {
		a.fail("sync the spool a killed run left", err)
		a.mark, a.marked = m, true
		a.poisonMarker(err) // a later start in this boot must not take it for settled
		return true, m.Reserved
	}
	a.mark, a.marked, a.markerDone = m, true, true
	return false, m.Reserved
}

// clearMarker removes the marker at a clean close, unless it still has
// something to say: a loss not declared yet, or a failed fsync.
func (a *Agent) clearMarker() {
	if !a.markerDone || a.mark.SyncFailed != "" {
		return
	}
	if err := os.Remove(a.markerPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.fail("remove the spool's unsynced marker", err)
	}
	a.marked = false
}

// canDefer reports whether entries up to seq last may be appended without
// an fsync, writing the marker first when this run has not, or when last
// reaches the reserved seqs. gapMu held.
func (a *Agent) canDefer(last uint64) bool {
	if a.cfg.SpoolSyncAfter <= 0 || a.boot == "" || !a.markerDone || a.mark.SyncFailed != "" {
		return false
	}
	if !a.marked || last >= a.mark.Reserved {
		m := marker{Boot: a.boot, Reserved: last + reserveStep}
		if err := a.writeMarker(m); err != nil {
			a.fail("write the spool's unsynced marker; fsyncing every batch", err)
			return false
		}
		a.mark, a.marked = m, true
	}
	return true
}

// syncDue fsyncs the spool once a batch appended without an fsync has
// waited SpoolSyncAfter without the recorder having it. gapMu held.
func (a *Agent) syncDue(now time.Time) {
	if t := a.sp.Unsynced(); !t.IsZero() && now.Sub(t) >= a.cfg.SpoolSyncAfter {
		if err := a.sp.Sync(); err != nil {
			a.fail("sync spool", err)
			a.poisonMarker(err)
		}
	}
}

// poisonMarker is told of a failed spool write or fsync. Deferred writes
// may then be lost from the disk (Linux reports a failed writeback once,
// and the next fsync succeeds): the marker keeps saying so, so that the
// next start declares them. gapMu held.
func (a *Agent) poisonMarker(err error) {
	if !a.marked || a.mark.SyncFailed != "" || errors.Is(err, spool.ErrFull) {
		return
	}
	a.mark.SyncFailed = err.Error()
	if werr := a.writeMarker(a.mark); werr != nil {
		if oerr := a.overwriteMarker(a.mark); oerr != nil {
			a.fail("record the failed spool fsync in the unsynced marker", errors.Join(werr, oerr))
		}
	}
}
