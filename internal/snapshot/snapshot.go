// Package snapshot keeps, in the agent's state directory, the last content
// the agent reported of each important file, so that the next diff is
// taken from exactly what the audit log holds, across restarts.
//
// # Files
//
// A snapshot is one file "<sha256 of the path>.<seq>.snap", mode 0600,
// zstd-compressed: a JSON header line (path, seq, state, sha256, size),
// then the content. seq is the seq of the record that reported this
// version. A version is written to a temporary file, fsynced, renamed into
// place and the directory fsynced before [Store.Put] returns, so a crash
// leaves either the old or the new version, complete.
//
// # Crash safety with the spool
//
// Writing a snapshot and appending the diff to the spool are not atomic
// together. The agent writes the snapshot first, then appends the diff. A
// crash between the two leaves a version whose seq the spool never took:
// [Open] is given the spool's next seq and deletes every version at or past
// it, falling back to the previous version, which is what the audit log
// has. [Store.Put] keeps the previous version for that reason. A version
// that cannot be read back (damaged) is reported as [Unknown], never
// replaced by an older one: the next diff is then taken from /dev/null,
// which is correct whatever the audit log holds.
package snapshot

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/fso-project/fso/internal/atomicfile"
)

// State says what a snapshot knows of the file.
type State string

const (
	// Text: the content is known and stored.
	Text State = "text"
	// Opaque: only the hash and size are known (binary, nodiff, too large).
	Opaque State = "opaque"
	// Absent: the file does not exist (deleted, or renamed away).
	Absent State = "absent"
	// Unknown: nothing is known (no snapshot, or a damaged one).
	Unknown State = "unknown"
)

// Snapshot is one version of a file.
type Snapshot struct {
	Path    string `json:"path"`
	Seq     uint64 `json:"seq"`
	State   State  `json:"state"`
	SHA256  string `json:"sha256,omitempty"`
	Size    int64  `json:"size"`
	Content []byte `json:"-"` // State Text only
}

// Store is a directory of snapshots. It is safe for concurrent use.
type Store struct {
	dir string
	mu  sync.Mutex
	// versions maps a path key to its versions' seqs, ascending.
	versions map[string][]uint64
	enc      *zstd.Encoder
	dec      *zstd.Decoder
}

const ext = ".snap"

// Open opens (creating it 0700) the store in dir. Versions with a seq at or
// past validBelow were written but never spooled: they are deleted, as are
// stray temporary files.
func Open(dir string, validBelow uint64) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	dec, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<34))
	s := &Store{dir: dir, versions: map[string][]uint64{}, enc: enc, dec: dec}
	for _, e := range ents {
		name := e.Name()
		key, seq, ok := parseName(name)
		if !ok || seq >= validBelow {
			if strings.HasSuffix(name, ext) || strings.HasPrefix(name, ".tmp-") {
				os.Remove(filepath.Join(dir, name))
			}
			continue
		}
		s.versions[key] = append(s.versions[key], seq)
	}
	for k := range s.versions {
		slices.Sort(s.versions[k])
	}
	return s, nil
}

// Close releases the compressor.
func (s *Store) Close() error {
	s.enc.Close()
	s.dec.Close()
	return nil
}

func key(path string) string {
	h := sha256.Sum256([]byte(path))
	return hex.EncodeToString(h[:])
}

func name(key string, seq uint64) string { return key + "." + strconv.FormatUint(seq, 10) + ext }

func parseName(n string) (key string, seq uint64, ok bool) {
	base, found := strings.CutSuffix(n, ext)
	if !found {
		return "", 0, false
	}
	key, s, found := strings.Cut(base, ".")
	if !found || len(key) != 64 {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(s, 10, 64)
	return key, seq, err == nil
}

// Get returns the latest version of path. A path never snapshotted, or
// whose latest version is damaged, is State Unknown (err says why for the
// latter).
func (s *Store) Get(path string) (Snapshot, error) {
	s.mu.Lock()
	k := key(path)
	vs := s.versions[k]
	s.mu.Unlock()
	if len(vs) == 0 {
		return Snapshot{Path: path, State: Unknown}, nil
	}
	seq := vs[len(vs)-1]
	snap, err := s.read(filepath.Join(s.dir, name(k, seq)))
	if err == nil && (snap.Path != path || snap.Seq != seq) {
		err = errors.New("header does not match the file name")
	}
	if err != nil {
		return Snapshot{Path: path, State: Unknown}, fmt.Errorf("snapshot: %s version %d: %w", path, seq, err)
	}
	return snap, nil
}

func (s *Store) read(p string) (Snapshot, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return Snapshot{}, err
	}
	raw, err := s.dec.DecodeAll(data, nil)
	if err != nil {
		return Snapshot{}, err
	}
	head, content, ok := bytes.Cut(raw, []byte("\n"))
	if !ok {
		return Snapshot{}, errors.New("no header")
	}
	var snap Snapshot
	if err := json.Unmarshal(head, &snap); err != nil {
		return Snapshot{}, err
	}
	if snap.State == Text {
		sum := sha256.Sum256(content)
		if hex.EncodeToString(sum[:]) != snap.SHA256 || int64(len(content)) != snap.Size {
			return Snapshot{}, errors.New("content does not match its hash")
		}
		snap.Content = content
	}
	return snap, nil
}

// Put writes snap as the latest version of snap.Path, durably, and deletes
// all but the previous version. snap.Seq must be higher than any version
// of the path written before.
func (s *Store) Put(snap Snapshot) error {
	if snap.State == Text {
		sum := sha256.Sum256(snap.Content)
		snap.SHA256, snap.Size = hex.EncodeToString(sum[:]), int64(len(snap.Content))
	}
	head, err := json.Marshal(snap)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	k := key(snap.Path)
	final := filepath.Join(s.dir, name(k, snap.Seq))
	f, err := os.CreateTemp(s.dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	tmp := f.Name()
	err = func() error {
		bw := bufio.NewWriterSize(f, 1<<16)
		s.mu.Lock()
		s.enc.Reset(bw)
		_, err := s.enc.Write(head)
		if err == nil {
			_, err = s.enc.Write([]byte("\n"))
		}
		if err == nil && snap.State == Text {
			_, err = s.enc.Write(snap.Content)
		}
		if cerr := s.enc.Close(); err == nil {
			err = cerr
		}
		s.mu.Unlock()
		if err == nil {
			err = bw.Flush()
		}
		if err == nil {
			err = f.Chmod(0o600)
		}
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp, final)
		}
		if err == nil {
			err = atomicfile.SyncDir(s.dir)
		}
		return err
	}()
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("snapshot: write %s: %w", snap.Path, err)
	}
	s.mu.Lock()
	vs := append(s.versions[k], snap.Seq)
	// Keep the new version and the one before it: the new one's diff may
	// not reach the spool (see the package comment).
	for len(vs) > 2 {
		os.Remove(filepath.Join(s.dir, name(k, vs[0])))
		vs = vs[1:]
	}
	s.versions[k] = vs
	s.mu.Unlock()
	return nil
}

var _ io.Closer = (*Store)(nil)
