package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fso-project/fso/internal/event"
)

// enrich adds what stat(2) says of e.Path, and the content hash of a
// regular file no larger than hashLimit. A path that is gone gets no stat
// fields: the event itself still stands.
func enrich(e *event.Event, hashLimit int64) (unix.Stat_t, bool) {
	var st unix.Stat_t
	if err := unix.Lstat(e.Path, &st); err != nil {
		return st, false
	}
	size := st.Size
	mode := st.Mode & 0o7777
	uid, gid := st.Uid, st.Gid
	mtime := time.Unix(st.Mtim.Sec, st.Mtim.Nsec).UTC()
	e.Size, e.Mode, e.UID, e.GID, e.MTime = &size, &mode, &uid, &gid, &mtime
	e.IsDir = st.Mode&unix.S_IFMT == unix.S_IFDIR
	if st.Mode&unix.S_IFMT == unix.S_IFREG && size <= hashLimit && (e.Type == event.Create || e.Type == event.Modify || e.Type == event.Rename) {
		if sum, err := hashFile(e.Path, hashLimit); err == nil {
			e.SHA256 = sum
		}
	}
	return st, true
}

var errNotRegular = errors.New("not a regular file")

// hashFile hashes the regular file at p without following a symlink put in
// its place and without blocking on a FIFO.
func hashFile(p string, limit int64) (string, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
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
	n, err := io.Copy(h, io.LimitReader(f, limit+1))
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", p, err)
	}
	if n > limit {
		return "", fmt.Errorf("hash %s: grew past the hash limit", p)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
