package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fso-project/fso/internal/event"
)

// enrich adds what stat(2) says of e.Path, and the content hash of a
// regular file no larger than hashLimit. A path that is gone gets no stat
// fields: the event itself still stands.
//
// Both the stat and the read go through rootDir, the watched root holding
// e.Path, as an [os.Root]: a symlink anywhere on the way (a parent
// directory swapped for a link to /etc, say) is never followed out of the
// root, so nothing outside it is described or hashed. A path outside
// rootDir gets no stat fields.
func enrich(e *event.Event, hashLimit int64, rootDir string) (unix.Stat_t, bool) {
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
	size := st.Size
	mode := st.Mode & 0o7777
	uid, gid := st.Uid, st.Gid
	mtime := time.Unix(st.Mtim.Sec, st.Mtim.Nsec).UTC()
	e.Size, e.Mode, e.UID, e.GID, e.MTime = &size, &mode, &uid, &gid, &mtime
	e.IsDir = st.Mode&unix.S_IFMT == unix.S_IFDIR
	if st.Mode&unix.S_IFMT == unix.S_IFREG && size <= hashLimit && (e.Type == event.Create || e.Type == event.Modify || e.Type == event.Rename) {
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
