package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/fso-project/fso/internal/broker"
	"github.com/fso-project/fso/internal/diff"
	"github.com/fso-project/fso/internal/event"
	"github.com/fso-project/fso/internal/snapshot"
)

// Important files
//
// For every create, modify, rename onto, or delete of an important file the
// agent publishes, right after its event, a diff record from the content it
// last reported to the content now. That last content is a snapshot in
// StateDir/snapshots (package snapshot), written durably before the diff is
// spooled, so diffs stay right across restarts and a change made while the
// agent was stopped (reported by the catch-up scan) gets a diff too.
//
// The rule that keeps the audit log replayable: a diff is taken from the
// snapshot only when the audit log holds that exact content; otherwise
// (first sight, binary, nodiff, too large, unreadable, snapshot lost) it is
// taken from /dev/null, a complete copy. Every record carries the old and
// new sha256, so a reader can check each step.

// DefaultNoDiff returns the nodiff patterns used when Config.NoDiff is
// empty: files whose content must never leave the host.
func DefaultNoDiff() []string {
	return []string{"**/*.key", "**/id_*", "**/.env", "**/*.pem"}
}

// DefaultDiffMax is the largest file diffed when Config.DiffMax is 0.
const DefaultDiffMax = 50 << 20

// inlineMax bounds an encoded diff record sent as one message; a larger
// diff goes to the object store. It leaves room under the broker's and
// event.Decode's limit for headers and the emitted_at stamp.
const inlineMax = event.MaxRecordBytes - 64<<10

// objectPutTimeout bounds putting one large diff into the object store.
const objectPutTimeout = 30 * time.Second

// validateDiffConfig checks the important and nodiff patterns.
func validateDiffConfig(c *Config) error {
	for _, p := range c.Important {
		if !doublestar.ValidatePattern(p) {
			return fmt.Errorf("important pattern %q: bad glob", p)
		}
	}
	for _, p := range c.NoDiff {
		if !doublestar.ValidatePattern(p) {
			return fmt.Errorf("nodiff pattern %q: bad glob", p)
		}
	}
	if c.DiffMax < 0 {
		return fmt.Errorf("diff max %d: must not be negative", c.DiffMax)
	}
	return nil
}

// differ holds the snapshots; only the collect goroutine uses it.
type differ struct {
	store *snapshot.Store // nil when the store cannot be opened: every diff is then complete
}

func (a *Agent) openDiffer() *differ {
	d := &differ{}
	// Versions at or past the spool's next seq were written just before a
	// crash and never spooled (see package snapshot).
	st, err := snapshot.Open(filepath.Join(a.cfg.StateDir, "snapshots"), a.sp.NextSeq())
	if err != nil {
		a.fail("snapshots unavailable; diffs of important files are complete copies", err)
		return d
	}
	d.store = st
	return d
}

// matches reports whether p, relative to its root, matches one of patterns.
func (a *Agent) matches(patterns []string, p string) bool {
	if len(patterns) == 0 || p == "" {
		return false
	}
	r := a.rootOf(p)
	if r == nil {
		return false
	}
	rel, ok := r.f.rel(p)
	return ok && rel != "." && matchAny(patterns, rel)
}

func (a *Agent) nodiff(p string) bool {
	_, pats := a.diffPatterns()
	if len(pats) == 0 {
		pats = DefaultNoDiff()
	}
	return a.matches(pats, p)
}

func (a *Agent) diffMax() int64 {
	if a.cfg.DiffMax > 0 {
		return a.cfg.DiffMax
	}
	return DefaultDiffMax
}

// diffFor returns the diff record that goes with e, or nil when e's path is
// not an important file. Agent, Seq and EventID are filled in by the caller;
// Seq is e.Seq+1.
func (a *Agent) diffFor(e *event.Event) *event.Diff {
	if a.diffs == nil {
		a.diffs = a.openDiffer()
	}
	important, _ := a.diffPatterns()
	if len(important) == 0 || e.Type == event.Attrib {
		return nil
	}
	seq := e.Seq + 1
	if e.Type == event.Rename && e.OldPath != e.Path && a.matches(important, e.OldPath) {
		// The old name no longer holds the file. Its version is tied to
		// the event's seq: there is no diff record for it.
		a.putSnapshot(snapshot.Snapshot{Path: e.OldPath, Seq: e.Seq, State: snapshot.Absent})
	}
	if e.IsDir || !a.matches(important, e.Path) {
		return nil
	}
	old := snapshot.Snapshot{Path: e.Path, State: snapshot.Unknown}
	if a.diffs.store != nil {
		var err error
		if old, err = a.diffs.store.Get(e.Path); err != nil {
			a.fail("read snapshot; the diff is a complete copy", err)
		}
	}
	var cur content
	if e.Type == event.Delete {
		cur.state = snapshot.Absent
	} else {
		cur = a.readContent(e.Path, a.nodiff(e.Path))
	}
	d := &event.Diff{Path: e.Path}
	if old.State == snapshot.Text || old.State == snapshot.Opaque {
		d.OldSHA256, d.OldSize = old.SHA256, ptr(old.Size)
	}
	if cur.state == snapshot.Text || cur.state == snapshot.Opaque {
		d.NewSHA256, d.NewSize = cur.sha256, ptr(cur.size)
	}
	next := snapshot.Snapshot{Path: e.Path, Seq: seq, State: cur.state, SHA256: cur.sha256, Size: cur.size, Content: cur.text}
	name := diff.Name(e.Path)
	switch {
	case cur.state == snapshot.Text:
		from, base := diff.DevNull, []byte(nil)
		if old.State == snapshot.Text {
			from, base = name, old.Content
		}
		d.Diff = diff.Unified(from, name, base, cur.text)
	case cur.state == snapshot.Absent && old.State == snapshot.Text:
		d.Diff = diff.Unified(name, diff.DevNull, old.Content, nil)
	case cur.state == snapshot.Absent && old.State == snapshot.Absent:
		d.Reason = "already absent"
	case cur.state == snapshot.Absent:
		d.Reason = "deleted; its previous content was not recorded"
	case cur.binary:
		d.Binary, d.Reason = true, cur.reason
	default:
		d.Truncated, d.Reason = true, cur.reason
	}
	if d.Diff != "" {
		a.placeLargeDiff(d, &next)
	}
	if !a.putSnapshot(next) && d.Diff != "" {
		// The next diff will be taken from the snapshot still on disk, so
		// the audit log must not hold this content either.
		d.Diff, d.Object, d.DiffSHA256, d.DiffSize = "", "", "", 0
		d.Truncated, d.Reason = true, "agent could not save the snapshot; content not recorded"
	}
	return d
}

func ptr[T any](v T) *T { return &v }

func (a *Agent) putSnapshot(s snapshot.Snapshot) bool {
	if a.diffs.store == nil {
		return false
	}
	if err := a.diffs.store.Put(s); err != nil {
		a.fail("save snapshot", err)
		return false
	}
	return true
}

// placeLargeDiff moves a diff too large for one message into the object
// store. When that fails the record says so (truncated) and next becomes a
// hash-only version, so the following diff is a complete copy.
func (a *Agent) placeLargeDiff(d *event.Diff, next *snapshot.Snapshot) {
	if len(d.Diff) < inlineMax/6 { // JSON escaping grows text at most 6 times
		return
	}
	if data, err := d.Marshal(); err == nil && len(data) <= inlineMax {
		return
	}
	sum := sha256.Sum256([]byte(d.Diff))
	obj := hex.EncodeToString(sum[:])
	err := a.putObject(obj, []byte(d.Diff))
	if err != nil {
		a.fail("put large diff into the object store", err)
		d.Truncated = true
		d.Reason = fmt.Sprintf("diff of %d bytes is larger than a message and the object store refused it: %v", len(d.Diff), err)
		d.Diff = ""
		next.State, next.Content = snapshot.Opaque, nil
		return
	}
	d.Object, d.DiffSHA256, d.DiffSize = broker.DiffsBucket+"/"+obj, obj, int64(len(d.Diff))
	d.Diff = ""
}

func (a *Agent) putObject(name string, data []byte) error {
	if a.js == nil {
		return errors.New("no broker connection")
	}
	// Do not stall the collect loop for the put's timeout while the broker
	// is away: the record says why the diff is missing and the next one is
	// a full copy.
	if nc := a.js.Conn(); nc != nil && !nc.IsConnected() {
		return errors.New("broker not connected")
	}
	ctx, cancel := context.WithTimeout(context.Background(), objectPutTimeout)
	defer cancel()
	obs, err := a.js.ObjectStore(ctx, broker.DiffsBucket)
	if err != nil {
		return fmt.Errorf("object store %s: %w", broker.DiffsBucket, err)
	}
	_, err = obs.PutBytes(ctx, name, data)
	return err
}

// content is what readContent found.
type content struct {
	state  snapshot.State // Text, Opaque, Absent or Unknown
	text   []byte         // Text only
	sha256 string
	size   int64
	binary bool
	reason string // why Opaque or Unknown
}

// readContent reads the regular file p without following a symlink in its
// place or out of its root. Content of a nodiff file, a binary file or one
// larger than DiffMax is hashed, not kept.
func (a *Agent) readContent(p string, nodiff bool) content {
	r := a.rootOf(p)
	if r == nil {
		return content{state: snapshot.Unknown, reason: "not under a watched root"}
	}
	rel, ok := r.f.rel(p)
	if !ok || rel == "." {
		return content{state: snapshot.Unknown, reason: "not under a watched root"}
	}
	root, err := os.OpenRoot(r.Path)
	if err != nil {
		return content{state: snapshot.Unknown, reason: "cannot read: " + err.Error()}
	}
	defer root.Close()
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return content{state: snapshot.Absent}
	}
	if err != nil {
		return content{state: snapshot.Unknown, reason: "cannot read: " + err.Error()}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return content{state: snapshot.Unknown, reason: "cannot read: " + err.Error()}
	}
	if !fi.Mode().IsRegular() {
		return content{state: snapshot.Unknown, reason: "not a regular file: " + fi.Mode().Type().String()}
	}
	max := a.diffMax()
	if nodiff || fi.Size() > max {
		h := sha256.New()
		n, err := io.Copy(h, f)
		if err != nil {
			return content{state: snapshot.Unknown, reason: "cannot read: " + err.Error()}
		}
		c := content{state: snapshot.Opaque, sha256: hex.EncodeToString(h.Sum(nil)), size: n}
		if nodiff {
			c.reason = "nodiff: the content of this file never leaves the host; hashes only"
		} else {
			c.reason = fmt.Sprintf("file of %d bytes is larger than the diff limit of %d bytes; hashes only", n, max)
		}
		return c
	}
	var buf bytes.Buffer
	buf.Grow(int(fi.Size()) + 512)
	n, err := io.Copy(&buf, io.LimitReader(f, max+1))
	if err != nil {
		return content{state: snapshot.Unknown, reason: "cannot read: " + err.Error()}
	}
	if n > max { // grew while read
		return content{state: snapshot.Unknown, reason: fmt.Sprintf("file grew past the diff limit of %d bytes while read", max)}
	}
	b := buf.Bytes()
	sum := sha256.Sum256(b)
	c := content{sha256: hex.EncodeToString(sum[:]), size: n}
	if !diff.IsText(b) {
		c.state, c.binary, c.reason = snapshot.Opaque, true, "binary content (NUL bytes or invalid UTF-8): no text diff"
		return c
	}
	c.state, c.text = snapshot.Text, b
	return c
}
