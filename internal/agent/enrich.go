package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fso-project/fso/internal/event"
)

// enrich adds what stat(2) says of e.Path, and the content hash of a
// regular file no larger than hashLimit. A path that is gone gets no stat
// fields: the event itself still stands.
//
// Both the stat and the read resolve e.Path beneath rootDir, the watched
// root holding it (openat2 with RESOLVE_BENEATH, or [os.Root] where that
// is refused): a symlink anywhere on the way (a parent directory swapped
// for a link to /etc, say) is never followed out of the root, so nothing
// outside it is described or hashed. A path outside rootDir gets no stat
// fields.
func enrich(e *event.Event, hashLimit int64, rootDir string) (unix.Stat_t, bool) {
	if noOpenat2.Load() || !openat2Works() {
		return enrichRoot(e, hashLimit, rootDir)
	}
	var st unix.Stat_t
	rel, ok := relWithin(e.Path, rootDir)
	if !ok {
		return st, false
	}
	// Opened for each change, never kept: an open descriptor of the root
	// would hold back the watch's IN_DELETE_SELF when the root is removed
	// (TestRecreatedRootDescribed) and make unmounting it fail.
	rootFD, err := unix.Open(rootDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return st, false
	}
	defer unix.Close(rootFD)
	if err := lstatBeneath(rootFD, rel, &st); err != nil {
		return st, false
	}
	describe(e, &st)
	if wantsHash(e, &st, hashLimit) {
		if sum, err := hashBeneath(rootFD, rel, hashLimit, &st); err == nil {
			e.SHA256 = sum
		}
	}
	return st, true
}

// describe sets e's stat fields from st.
func describe(e *event.Event, st *unix.Stat_t) {
	size := st.Size
	mode := st.Mode & 0o7777
	uid, gid := st.Uid, st.Gid
	mtime := time.Unix(st.Mtim.Sec, st.Mtim.Nsec).UTC()
	e.Size, e.Mode, e.UID, e.GID, e.MTime = &size, &mode, &uid, &gid, &mtime
	e.IsDir = st.Mode&unix.S_IFMT == unix.S_IFDIR
}

// wantsHash reports whether e's file gets a content hash: a regular file
// within the limit whose content may have changed.
func wantsHash(e *event.Event, st *unix.Stat_t, limit int64) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size <= limit &&
		(e.Type == event.Create || e.Type == event.Modify || e.Type == event.Rename)
}

// noOpenat2 makes enrich go through os.Root, which resolves one component
// at a time (tests set it to cover that path).
var noOpenat2 atomic.Bool

// openat2Works probes openat2(2) once: a kernel before 5.6 lacks it and a
// seccomp filter may refuse it (ENOSYS or EPERM); enrich then uses os.Root.
// Probing up front, not on a failure, matters: a file directly in a root
// is stat'ed without openat2, so only its hash would fail, silently.
var openat2Works = sync.OnceValue(func() bool {
	fd, err := unix.Openat2(unix.AT_FDCWD, ".", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH})
	if err == nil {
		unix.Close(fd)
	}
	return !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM)
})

// openBeneath opens rel below the directory rootFD without leaving it:
// no absolute or ".." escape, no symlink out of it, no magic link. One
// system call whatever the depth, where os.Root walks each component; at
// thousands of changes per second enrich was a quarter of the pipeline.
func openBeneath(rootFD int, rel string, flags int) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS}
	for try := 0; ; try++ {
		fd, err := unix.Openat2(rootFD, rel, &how)
		if (err == unix.EAGAIN || err == unix.EINTR) && try < 3 {
			continue // a rename raced the lookup
		}
		return fd, err
	}
}

// lstatBeneath is lstat(2) of rel below rootFD, never following a symlink
// out of it.
func lstatBeneath(rootFD int, rel string, st *unix.Stat_t) error {
	if rel == "." {
		return unix.Fstat(rootFD, st)
	}
	dir, base := filepath.Split(rel)
	if dir == "" {
		return unix.Fstatat(rootFD, base, st, unix.AT_SYMLINK_NOFOLLOW)
	}
	dfd, err := openBeneath(rootFD, dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	return unix.Fstatat(dfd, base, st, unix.AT_SYMLINK_NOFOLLOW)
}

// hashBeneath hashes the regular file rel below rootFD, if it is still the
// file st describes, without following a symlink in its place and without
// blocking on a FIFO.
func hashBeneath(rootFD int, rel string, limit int64, st *unix.Stat_t) (string, error) {
	fd, err := openBeneath(rootFD, rel, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	var now unix.Stat_t
	if err := unix.Fstat(fd, &now); err != nil {
		return "", err
	}
	if now.Mode&unix.S_IFMT != unix.S_IFREG {
		return "", errNotRegular
	}
	if now.Ino != st.Ino || now.Dev != st.Dev {
		return "", fmt.Errorf("hash %s: replaced since its lstat", rel)
	}
	h := sha256.New()
	bp := hashBufs.Get().(*[]byte)
	defer hashBufs.Put(bp)
	buf := *bp
	var n int64
	for n <= limit {
		r, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("hash %s: %w", rel, err)
		}
		if r == 0 {
			return hex.EncodeToString(h.Sum(nil)), nil
		}
		h.Write(buf[:r])
		n += int64(r)
	}
	return "", fmt.Errorf("hash %s: grew past the hash limit", rel)
}

// enrichRoot is enrich through an [os.Root], for kernels without openat2.
func enrichRoot(e *event.Event, hashLimit int64, rootDir string) (unix.Stat_t, bool) {
	var st unix.Stat_t
	rel, ok := relWithin(e.Path, rootDir)
	if !ok {
		return st, false
	}
	root, err := os.OpenRoot(rootDir)
	if err != nil {
		return st, false
	}
	defer root.Close()
	fi, err := root.Lstat(rel)
	if err != nil {
		return st, false
	}
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return st, false
	}
	st = unix.Stat_t{Dev: sys.Dev, Ino: sys.Ino, Nlink: sys.Nlink, Mode: sys.Mode, Uid: sys.Uid, Gid: sys.Gid,
		Rdev: sys.Rdev, Size: sys.Size, Blksize: sys.Blksize, Blocks: sys.Blocks,
		Atim: unix.Timespec{Sec: sys.Atim.Sec, Nsec: sys.Atim.Nsec},
		Mtim: unix.Timespec{Sec: sys.Mtim.Sec, Nsec: sys.Mtim.Nsec},
		Ctim: unix.Timespec{Sec: sys.Ctim.Sec, Nsec: sys.Ctim.Nsec}}
	describe(e, &st)
	if wantsHash(e, &st, hashLimit) {
		if sum, err := hashFile(root, rel, hashLimit); err == nil {
			e.SHA256 = sum
		}
	}
	return st, true
}

// relWithin returns p relative to dir, if p is dir or below it.
func relWithin(p, dir string) (string, bool) {
	if dir == "" || !within(p, dir) {
		return "", false
	}
	if p == dir {
		return ".", true
	}
	return strings.TrimPrefix(p[len(strings.TrimSuffix(dir, "/")):], "/"), true
}

var errNotRegular = errors.New("not a regular file")

// hashBufs spares each hash the 32 KiB buffer io.Copy would allocate: at
// thousands of changes per second that garbage alone kept the collector
// busy.
var hashBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// hashFile hashes the regular file rel inside root without following a
// symlink out of the root or in its place, and without blocking on a FIFO.
func hashFile(root *os.Root, rel string, limit int64) (string, error) {
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", errNotRegular
	}
	h := sha256.New()
	bp := hashBufs.Get().(*[]byte)
	defer hashBufs.Put(bp)
	n, err := io.CopyBuffer(h, io.LimitReader(f, limit+1), *bp)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", rel, err)
	}
	if n > limit {
		return "", fmt.Errorf("hash %s: grew past the hash limit", rel)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
