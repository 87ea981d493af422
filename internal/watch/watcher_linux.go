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
	"syscall"
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
	fd       int             // inotify, non-blocking
	ep       int             // an epoll instance holding fd, one-shot
	file     *os.File        // ep, waited on through the runtime poller; a past read deadline wakes Run
	conn     syscall.RawConn // file's
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
	onList         func(dir string, entries []os.DirEntry, err error) // Filter.Listed of the Add running
	sweepAt        time.Time
	gen            uint32
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
	wd     int32
	gen    uint32 // the walk that last armed it; see resync
	root   *root
	parent *dir // nil for a root's own directory
	name   string
	// sub holds the subdirectories sorted by name (a slice costs a pointer
	// per child, a map three times that), behind a pointer that stays nil
	// for the many directories without any: 8 bytes instead of a 24-byte
	// slice header puts a dir in the 48-byte size class instead of 64.
	sub *[]*dir
}

// children returns d's subdirectories, sorted by name.
func (d *dir) children() []*dir {
	if d.sub == nil {
		return nil
	}
	return *d.sub
}

// setChildren makes s d's subdirectories; an empty s frees the room.
func (d *dir) setChildren(s []*dir) {
	switch {
	case len(s) == 0 && cap(s) == 0:
		d.sub = nil
	case d.sub == nil:
		d.sub = &s
	default:
		*d.sub = s
	}
}

// find returns where name is, or would be, in d.children().
func (d *dir) find(name string) (int, bool) {
	return slices.BinarySearchFunc(d.children(), name, func(c *dir, n string) int { return strings.Compare(c.name, n) })
}

// child returns d's subdirectory name, if it is watched.
func (d *dir) child(name string) *dir {
	if i, ok := d.find(name); ok {
		return d.children()[i]
	}
	return nil
}

// setChild puts c in d under c.name, in place of what was there.
func (d *dir) setChild(c *dir) {
	i, ok := d.find(c.name)
	if ok {
		d.children()[i] = c
		return
	}
	d.setChildren(slices.Insert(d.children(), i, c))
}

// removeChild takes c out of d, if it is there.
func (d *dir) removeChild(c *dir) {
	if i, ok := d.find(c.name); ok && d.children()[i] == c {
		kids := slices.Delete(d.children(), i, i+1)
		if len(kids) == 0 {
			kids = nil
		}
		d.setChildren(kids)
	}
}

// pathTo returns the path of name in d, or d's own path when name is "".
// Paths are built from the names up the tree rather than stored: a stored
// path cost about 50 bytes per watched directory, and a rename of a
// directory had to rewrite every path below it.
func (d *dir) pathTo(name string) string {
	if d.parent == nil && name == "" {
		return d.root.path
	}
	prefix := strings.TrimSuffix(d.root.path, "/") // the root "/" adds no "/"
	var stack [32]*dir
	chain := stack[:0]
	n := len(prefix) + len(name) + 1
	for x := d; x.parent != nil; x = x.parent {
		chain = append(chain, x)
		n += len(x.name) + 1
	}
	var sb strings.Builder
	sb.Grow(n)
	sb.WriteString(prefix)
	for i := len(chain) - 1; i >= 0; i-- {
		sb.WriteByte('/')
		sb.WriteString(chain[i].name)
	}
	if name != "" {
		sb.WriteByte('/')
		sb.WriteString(name)
	}
	return sb.String()
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
	if opts.ReadPause < 0 {
		opts.ReadPause = 0
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("watch: inotify_init1: %w", err)
	}
	// Wait through the runtime's poller: a reader blocked in poll(2)
	// holds an OS thread in a system call, and the scheduler's monitor
	// then wakes every 20µs to take its P back, which cost a quarter of
	// the agent's CPU at 1,000 changes/s. But not on the inotify
	// descriptor itself: the poller is edge-triggered, and every event the
	// kernel queues is an edge, so each change woke a thread even while
	// Run was busy or pausing (two epoll wakeups per change at 1,000/s).
	// The poller waits on a private epoll instance instead, where the
	// inotify descriptor is one-shot: after one report it stays silent
	// until Run has drained it and re-arms it.
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watch: epoll_create1: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(fd)}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		unix.Close(ep)
		return nil, fmt.Errorf("watch: epoll_ctl: %w", err)
	}
	if err := unix.SetNonblock(ep, true); err != nil { // so os.NewFile registers it with the poller
		unix.Close(fd)
		unix.Close(ep)
		return nil, fmt.Errorf("watch: epoll: %w", err)
	}
	file := os.NewFile(uintptr(ep), "inotify-epoll")
	conn, err := file.SyscallConn()
	if err != nil {
		unix.Close(fd)
		file.Close()
		return nil, fmt.Errorf("watch: epoll: %w", err)
	}
	return &Watcher{
		fd:      fd,
		ep:      ep,
		file:    file,
		conn:    conn,
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
	w.onList, f.Listed = f.Listed, nil // used by this Add only, not kept
	r := &root{path: p, filter: f}
	w.roots[p] = r
	w.gen++
	d := w.place(int32(wd), nil, "", r, p)
	w.walk(d, p, nil)
	w.onList = nil
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
	w.file.Close()
	unix.Close(w.fd)
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
	// Run checks for the stop after setting its own deadline and before
	// waiting, so this cannot be overwritten unseen; a pause ends on the
	// stop or ctx itself.
	w.file.SetReadDeadline(time.Unix(1, 0))
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
	var (
		recs     []rawEvent
		carry    *rawEvent // an IN_MOVED_FROM that ended the last read
		deadline time.Time // until when carry waits
		lastData time.Time // when the last read returned events
	)
	pause := time.NewTimer(time.Hour)
	pause.Stop()
	defer pause.Stop()
	for {
		if w.stopped(ctx) {
			return nil
		}
		nr, err := unix.Read(w.fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			d := time.Time{}
			if carry != nil {
				d = deadline
			}
			if err := w.file.SetReadDeadline(d); err != nil {
				return fmt.Errorf("watch: set read deadline: %w", err)
			}
			// After the deadline is set, so that a wake cannot be
			// overwritten unseen.
			if w.stopped(ctx) {
				return nil
			}
			err := w.wait()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if carry != nil && !time.Now().Before(deadline) {
					b := w.process([]rawEvent{*carry})
					carry = nil
					if !w.send(ctx, b) {
						return nil
					}
				}
				continue
			}
			if err != nil {
				return fmt.Errorf("watch: wait: %w", err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("watch: read: %w", err)
		}
		now := time.Now()
		recs = recs[:0]
		if carry != nil {
			recs = append(recs, *carry)
			carry = nil
		}
		recs = parse(recs, buf[:nr], now)
		b := w.process(recs)
		if b.carry != nil {
			carry, deadline = b.carry, time.Now().Add(w.opts.MovePairTimeout)
		}
		if !w.send(ctx, b) {
			return nil
		}
		// Changes arriving steadily: let the next ones gather in the
		// kernel's queue, so they are read, and then committed, together.
		// Not after a read that filled much of the buffer (the queue is
		// busy enough), nor after a quiet spell (an isolated change
		// is read at once).
		steady := now.Sub(lastData) < 10*w.opts.ReadPause
		lastData = now
		if w.opts.ReadPause > 0 && steady && nr < len(buf)/2 {
			pause.Reset(w.opts.ReadPause)
			select {
			case <-pause.C:
			case <-w.stop:
				w.final(buf, carry)
				return nil
			case <-ctx.Done():
				w.final(buf, carry)
				return nil
			}
		}
	}
}

// final hands over, when a stop cuts a pause short, what the kernel queued
// during it (one read), so that changes made before the stop are reported
// as they happened rather than left to the next start's rescan. The
// consumer took the batch before the pause, so it is reading; it gets
// finalWait to take this one.
func (w *Watcher) final(buf []byte, carry *rawEvent) {
	var recs []rawEvent
	if carry != nil {
		recs = append(recs, *carry)
	}
	if nr, err := unix.Read(w.fd, buf); err == nil && nr > 0 {
		recs = parse(recs, buf[:nr], time.Now())
	}
	if len(recs) == 0 {
		return
	}
	b := w.process(recs)
	if b.carry != nil { // no read will pair it now: a move out of the tree
		b.events = append(b.events, w.process([]rawEvent{*b.carry}).events...)
	}
	if len(b.events) == 0 {
		return
	}
	t := time.NewTimer(finalWait)
	defer t.Stop()
	select {
	case w.events <- b.events:
	case <-t.C:
	}
}

// finalWait bounds how long Run's return may wait for the consumer to take
// the last batch.
const finalWait = 100 * time.Millisecond

// wait re-arms the inotify descriptor in w.ep and waits until it is
// readable, or the read deadline of w.file passes (os.ErrDeadlineExceeded).
func (w *Watcher) wait() error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(w.fd)}
	if err := unix.EpollCtl(w.ep, unix.EPOLL_CTL_MOD, w.fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	var evs [1]unix.EpollEvent
	var werr error
	err := w.conn.Read(func(fd uintptr) bool {
		n, err := unix.EpollWait(int(fd), evs[:], 0)
		switch {
		case err == unix.EINTR:
			return false
		case err != nil:
			werr = fmt.Errorf("epoll_wait: %w", err)
			return true
		}
		return n > 0
	})
	if err != nil {
		return err
	}
	return werr
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
