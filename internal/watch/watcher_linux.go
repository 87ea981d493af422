package watch

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// mask is what every directory watch asks for. IN_DONT_FOLLOW and IN_ONLYDIR
// make sure a symbolic link to a directory is never followed.
const mask = unix.IN_CREATE | unix.IN_MODIFY | unix.IN_CLOSE_WRITE | unix.IN_ATTRIB |
	unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE | unix.IN_DELETE_SELF |
	unix.IN_MOVE_SELF | unix.IN_ONLYDIR | unix.IN_DONT_FOLLOW | unix.IN_EXCL_UNLINK

const (
	defaultBufferSize = 256 << 10
	minBufferSize     = 4 << 10
	defaultMoveWait   = 5 * time.Millisecond
	listedMemory      = 2 * time.Second // how long a listing's names dedupe the kernel's IN_CREATE
	maxUnwatched      = 100
	errorsBuffer      = 64
)

// Watcher watches directory trees through one inotify instance.
// Create it with New, add roots with Add, and call Run once.
type Watcher struct {
	fd       int // inotify, non-blocking
	wakeFD   int // eventfd written to wake Run's poll on ctx end or Close
	opts     Options
	log      *slog.Logger
	events   chan []Event
	errs     chan error
	removed  chan struct{} // a root was removed: filter the batch waiting to be sent
	stop     chan struct{} // closed by Close
	stopOnce sync.Once
	done     chan struct{} // closed when Run has returned

	mu             sync.Mutex // guards everything below, and the inotify watches
	running        bool
	closed         bool // Add, Remove and Run refuse to start
	released       bool // the descriptors are closed
	roots          map[string]*root
	wds            map[int32]*dir
	listed         map[int32]*listing
	sweepAt        time.Time
	gen            uint64
	unwatched      []string
	unwatchedCount int
	overflows      int
	droppedErrors  int
}

// root is one tree passed to Add.
type root struct {
	path      string
	filter    Filter
	dir       *dir // nil once the root is gone
	removed   bool // Remove was called
	unwatched int  // directories under it that could not be armed
}

// dir is one armed directory, in a tree per root that mirrors the file
// system, so that a rename moves a whole subtree at once.
type dir struct {
	wd       int32
	root     *root
	parent   *dir // nil for a root's own directory
	name     string
	path     string
	children map[string]*dir
	gen      uint64 // the walk that last armed it; see resync
}

// listing remembers the names a listing of a newly armed directory reported,
// to drop the kernel's IN_CREATE for the same entries.
type listing struct {
	names   map[string]struct{}
	expires time.Time
}

// New starts an inotify instance (inotify_init1 with IN_CLOEXEC|IN_NONBLOCK).
// It fails if opts are invalid or the kernel refuses the instance
// (fs.inotify.max_user_instances).
func New(opts Options) (*Watcher, error) {
	if opts.BufferSize == 0 {
		opts.BufferSize = defaultBufferSize
	}
	if opts.MovePairTimeout == 0 {
		opts.MovePairTimeout = defaultMoveWait
	}
	if opts.BufferSize < minBufferSize {
		return nil, fmt.Errorf("watch: BufferSize %d is below %d", opts.BufferSize, minBufferSize)
	}
	if opts.MovePairTimeout < 0 {
		return nil, fmt.Errorf("watch: MovePairTimeout %v is negative", opts.MovePairTimeout)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("watch: inotify_init1: %w", err)
	}
	wakeFD, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watch: eventfd: %w", err)
	}
	return &Watcher{
		fd:      fd,
		wakeFD:  wakeFD,
		opts:    opts,
		log:     log,
		events:  make(chan []Event),
		errs:    make(chan error, errorsBuffer),
		removed: make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		roots:   map[string]*root{},
		wds:     map[int32]*dir{},
		listed:  map[int32]*listing{},
	}, nil
}

// Events delivers one batch per read(2), after pairing and listing. Run
// blocks until the batch is taken, so a slow consumer lets the kernel queue
// fill up, which ends in an Overflow event. It is closed when Run returns.
func (w *Watcher) Events() <-chan []Event { return w.events }

// Errors delivers non-fatal problems, mostly *PathError: a directory that
// could not be armed or listed, a root gone. It is buffered; when it is full,
// errors are counted in Status().DroppedErrors and dropped. It is closed when
// Run returns.
func (w *Watcher) Errors() <-chan error { return w.errs }

// Add watches root, and, if f.Recursive, every directory below it that
// f.SkipDir does not skip. The existing contents are not reported. It may be
// called before or during Run, from any goroutine. It fails if root is not an
// existing directory (a symbolic link is not followed), if it is inside or
// contains a root already added (ErrOverlap), if root itself cannot be armed
// (ErrWatchLimit when the watch limit is reached), or with ErrClosed. A
// directory below root that cannot be armed is reported on Errors instead.
func (w *Watcher) Add(path string, f Filter) error {
	p, err := filepath.Abs(path)
	if err != nil {
		return &PathError{Op: "add", Path: path, Err: err}
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return &PathError{Op: "add", Path: p, Err: errors.Unwrap(err)}
	}
	if !fi.IsDir() {
		return &PathError{Op: "add", Path: p, Err: unix.ENOTDIR}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	for q := range w.roots {
		if within(p, q) || within(q, p) {
			return &PathError{Op: "add", Path: p, Err: fmt.Errorf("%w %s", ErrOverlap, q)}
		}
	}
	wd, err := unix.InotifyAddWatch(w.fd, p, mask)
	if err != nil {
		return &PathError{Op: "add", Path: p, Err: watchErr(err)}
	}
	r := &root{path: p, filter: f}
	w.roots[p] = r
	w.gen++
	d := w.place(int32(wd), nil, "", r)
	w.walk(d, nil)
	return nil
}

// Remove stops watching root and everything below it. Events read before
// Remove returned but not yet taken from Events are dropped too. It fails
// with ErrNoRoot if root was not added, or with ErrClosed.
func (w *Watcher) Remove(path string) error {
	p, err := filepath.Abs(path)
	if err != nil {
		return &PathError{Op: "remove", Path: path, Err: err}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	r := w.roots[p]
	if r == nil {
		return &PathError{Op: "remove", Path: p, Err: ErrNoRoot}
	}
	for _, d := range w.wds {
		if d.root == r {
			w.drop(d, true)
		}
	}
	w.clearUnwatched(r)
	r.removed = true
	delete(w.roots, p)
	select {
	case w.removed <- struct{}{}:
	default:
	}
	return nil
}

// Status returns a snapshot of the Watcher's state. It is safe to call from
// any goroutine, also after Run has returned.
func (w *Watcher) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := Status{
		Watches:        len(w.wds),
		Unwatched:      slices.Clone(w.unwatched),
		UnwatchedCount: w.unwatchedCount,
		Overflows:      w.overflows,
		DroppedErrors:  w.droppedErrors,
	}
	for p := range w.roots {
		s.Roots = append(s.Roots, p)
	}
	slices.Sort(s.Roots)
	return s
}

// Close releases a Watcher whose Run will not be called; if Run is running,
// Close stops it and waits for it to return. It is idempotent.
func (w *Watcher) Close() error {
	w.stopOnce.Do(func() { close(w.stop) })
	w.mu.Lock()
	running := w.running
	w.closed = true
	w.mu.Unlock()
	if running {
		w.wake()
		<-w.done
		return nil
	}
	w.release()
	return nil
}

// Run reads events until ctx ends or Close is called, then closes Events,
// Errors and the inotify descriptor. It returns nil then, ErrClosed if the
// Watcher was already closed or running, and an error only for a failure of
// poll(2) or read(2), which ends the Watcher too.
func (w *Watcher) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.closed || w.running {
		w.mu.Unlock()
		return ErrClosed
	}
	w.running = true
	w.mu.Unlock()
	stopWake := context.AfterFunc(ctx, w.wake)
	err := w.loop(ctx)
	stopWake()
	w.mu.Lock()
	w.closed = true
	w.running = false
	w.mu.Unlock()
	w.release()
	close(w.done)
	return err
}

// release closes the descriptors and the channels, once.
func (w *Watcher) release() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.released {
		return
	}
	w.released = true
	unix.Close(w.fd)
	unix.Close(w.wakeFD)
	close(w.events)
	close(w.errs) // senders hold mu and check closed, which is set by now
}

// wake makes Run's poll return.
func (w *Watcher) wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.released {
		return
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(w.wakeFD, one[:]) // EAGAIN only if already signalled
}

func (w *Watcher) stopped(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	case <-w.stop:
		return true
	default:
		return false
	}
}

// rawEvent is one inotify record.
type rawEvent struct {
	wd      int32
	mask    uint32
	cookie  uint32
	name    string
	time    time.Time // when the read that returned it came back
	carried bool      // an IN_MOVED_FROM that already waited for its pair
}

func (w *Watcher) loop(ctx context.Context) error {
	buf := make([]byte, w.opts.BufferSize)
	fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}, {Fd: int32(w.wakeFD), Events: unix.POLLIN}}
	var (
		recs     []rawEvent
		carry    *rawEvent // an IN_MOVED_FROM that ended the last read
		deadline time.Time // until when carry waits
	)
	for {
		var timeout *unix.Timespec
		if carry != nil {
			ts := unix.NsecToTimespec(max(0, int64(time.Until(deadline))))
			timeout = &ts
		}
		n, err := unix.Ppoll(fds, timeout, nil)
		if w.stopped(ctx) {
			return nil
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("watch: poll: %w", err)
		}
		if n == 0 || fds[0].Revents == 0 {
			if carry != nil && !time.Now().Before(deadline) {
				b := w.process([]rawEvent{*carry})
				carry = nil
				if !w.send(ctx, b) {
					return nil
				}
			}
			continue
		}
		if fds[0].Revents&unix.POLLIN == 0 {
			return fmt.Errorf("watch: poll: revents %#x", fds[0].Revents)
		}
		nr, err := unix.Read(w.fd, buf)
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("watch: read: %w", err)
		}
		recs = recs[:0]
		if carry != nil {
			recs = append(recs, *carry)
			carry = nil
		}
		recs = parse(recs, buf[:nr], time.Now())
		b := w.process(recs)
		if b.carry != nil {
			carry, deadline = b.carry, time.Now().Add(w.opts.MovePairTimeout)
		}
		if !w.send(ctx, b) {
			return nil
		}
	}
}

// parse appends the records in buf to recs.
func parse(recs []rawEvent, buf []byte, now time.Time) []rawEvent {
	for off := 0; off+unix.SizeofInotifyEvent <= len(buf); {
		h := buf[off:]
		n := int(binary.NativeEndian.Uint32(h[12:]))
		end := off + unix.SizeofInotifyEvent + n
		if end > len(buf) {
			break
		}
		name := buf[off+unix.SizeofInotifyEvent : end]
		if i := slices.Index(name, 0); i >= 0 {
			name = name[:i]
		}
		recs = append(recs, rawEvent{
			wd:     int32(binary.NativeEndian.Uint32(h[0:])),
			mask:   binary.NativeEndian.Uint32(h[4:]),
			cookie: binary.NativeEndian.Uint32(h[8:]),
			name:   string(name),
			time:   now,
		})
		off = end
	}
	return recs
}

// batch is the outcome of one read.
type batch struct {
	events []Event
	roots  []*root   // the root of each event, to drop it if Remove is called before it is sent
	carry  *rawEvent // an IN_MOVED_FROM that ends the read and waits for its pair
}

func (b *batch) add(e Event, r *root) {
	if b == nil {
		return
	}
	b.events = append(b.events, e)
	b.roots = append(b.roots, r)
}

// send delivers b, dropping the events of roots removed meanwhile. It
// returns false if the Watcher must stop.
func (w *Watcher) send(ctx context.Context, b *batch) bool {
	for len(b.events) > 0 {
		select {
		case w.events <- b.events:
			return true
		case <-w.removed:
			w.mu.Lock()
			kept := 0
			for i, e := range b.events {
				if r := b.roots[i]; r == nil || !r.removed {
					b.events[kept], b.roots[kept] = e, r
					kept++
				}
			}
			b.events, b.roots = b.events[:kept], b.roots[:kept]
			w.mu.Unlock()
		case <-ctx.Done():
			return false
		case <-w.stop:
			return false
		}
	}
	return !w.stopped(ctx)
}

// within reports whether p is q or below q.
func within(p, q string) bool {
	return p == q || strings.HasPrefix(p, q) && (strings.HasSuffix(q, "/") || p[len(q)] == '/')
}

// join appends a raw name to a directory path without altering either.
func join(dir, name string) string {
	if name == "" {
		return dir
	}
	if strings.HasSuffix(dir, "/") {
		return dir + name
	}
	return dir + "/" + name
}

// watchErr maps an inotify_add_watch error.
func watchErr(err error) error {
	if err == unix.ENOSPC {
		return ErrWatchLimit
	}
	return err
}
