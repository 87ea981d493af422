package watch

import (
	"errors"
	"log/slog"
	"os"
	"strconv"
	"time"
)

// Op is what happened to a path.
type Op uint8

const (
	// Create is IN_CREATE; or IN_MOVED_TO without a matching IN_MOVED_FROM
	// (Moved set: moved in from outside the watched trees); or an entry found by
	// listing a newly armed directory (Scan set).
	Create Op = iota + 1
	// Write is IN_MODIFY.
	Write
	// CloseWrite is IN_CLOSE_WRITE.
	CloseWrite
	// Attrib is IN_ATTRIB.
	Attrib
	// Remove is IN_DELETE; or IN_MOVED_FROM without a matching IN_MOVED_TO
	// (Moved set: moved out of the watched trees).
	Remove
	// Rename is IN_MOVED_FROM and IN_MOVED_TO paired by their cookie, both
	// inside watched trees: OldPath became Path.
	Rename
	// Overflow is IN_Q_OVERFLOW: the kernel dropped events. Path is empty.
	Overflow
	// RootGone means a root was deleted or moved away (IN_DELETE_SELF or
	// IN_MOVE_SELF on it). Path is the root.
	RootGone
)

var opNames = [...]string{
	Create:     "create",
	Write:      "write",
	CloseWrite: "close_write",
	Attrib:     "attrib",
	Remove:     "remove",
	Rename:     "rename",
	Overflow:   "overflow",
	RootGone:   "root_gone",
}

// String returns the lower-case name of o, such as "close_write".
func (o Op) String() string {
	if int(o) < len(opNames) && opNames[o] != "" {
		return opNames[o]
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// Event is one change under a watched root.
type Event struct {
	Op      Op
	Path    string    // absolute: the root joined with the raw names, bytes never altered
	OldPath string    // Rename only
	IsDir   bool      // IN_ISDIR, or the listed entry is a directory
	Time    time.Time // when the read(2) that returned it came back; for a listed entry, when it was listed
	Scan    bool      // found by listing a newly armed directory, not reported by the kernel
	Moved   bool      // a Create or Remove that came from IN_MOVED_TO or IN_MOVED_FROM
}

// Filter says which directories below a root are watched.
type Filter struct {
	// Recursive watches every directory below the root; false watches only
	// the root directory itself.
	Recursive bool
	// SkipDir, if not nil, is called with the path of each directory below the
	// root; a directory for which it returns true is never watched nor listed,
	// though its own creation, removal and renames, reported by its parent,
	// still are. It is never called for the root, and must not call the
	// Watcher.
	SkipDir func(path string) bool
	// Listed, if not nil, is called during Add with each directory Add
	// arms, the root first, and what listing it returned (err is a failure
	// to list it; a directory that vanished is not reported). The listing
	// happens after the directory's watch is armed, so a caller can build
	// its picture of the tree from it without walking the tree again: any
	// later change is an event. Directories Add could not arm (see
	// Status.UnwatchedCount) are not listed. It is called with the
	// Watcher's lock held and must not call the Watcher.
	Listed func(dir string, entries []os.DirEntry, err error)
}

// Options tunes a Watcher. The zero value is ready to use.
type Options struct {
	// BufferSize is the size of the read(2) buffer; default 256 KiB, at least 4 KiB.
	BufferSize int
	// MovePairTimeout is how long an IN_MOVED_FROM that ends a read waits for
	// its IN_MOVED_TO in the next read before it becomes a moved-out Remove;
	// default 5ms.
	MovePairTimeout time.Duration
	// ReadPause groups a steady stream of changes: after a read that
	// returned events less than ten pauses after the one before, the next
	// read waits this long, so that it returns what the kernel queued
	// meanwhile. An isolated change is read at once. Zero (the default)
	// reads as soon as events are queued.
	ReadPause time.Duration
	// Logger receives warnings (unwatched directories, overflows, lost roots);
	// nil discards them.
	Logger *slog.Logger
}

// Status is a snapshot of a Watcher's state.
type Status struct {
	Roots          []string // sorted; a root that is gone stays until Remove
	Watches        int      // directories armed
	Unwatched      []string // directories that could not be armed (permission denied, watch limit); at most 100 listed
	UnwatchedCount int
	Overflows      int // IN_Q_OVERFLOW records read
	DroppedErrors  int // errors dropped because Errors() was full
}

// PathError records a problem with one path.
type PathError struct {
	Op   string // "add", "remove", "watch" (arming a directory) or "list"
	Path string
	Err  error
}

func (e *PathError) Error() string { return "watch: " + e.Op + " " + e.Path + ": " + e.Err.Error() }

func (e *PathError) Unwrap() error { return e.Err }

var (
	// ErrWatchLimit is wrapped when inotify_add_watch fails with ENOSPC.
	ErrWatchLimit = errors.New("watch: inotify watch limit reached (fs.inotify.max_user_watches)")
	// ErrRootGone is wrapped in the PathError sent on Errors() when a root is
	// deleted or moved away.
	ErrRootGone = errors.New("watch: root deleted or moved away")
	// ErrOverlap is wrapped when Add is given a root inside, or containing, a
	// root already added.
	ErrOverlap = errors.New("watch: overlaps a watched root")
	// ErrNoRoot is wrapped when Remove is given a path that is not a root.
	ErrNoRoot = errors.New("watch: not a watched root")
	// ErrClosed is returned by Add, Remove and Run once the Watcher is closed.
	ErrClosed = errors.New("watch: watcher closed")
)
