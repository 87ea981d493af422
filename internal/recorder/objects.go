package recorder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fso-project/fso/internal/broker"
	"github.com/fso-project/fso/internal/event"
)

// Large diffs
//
// A diff too large for one message reaches the recorder as a reference:
// object "fso-diffs/<sha256>" in the JetStream object store, with its
// diff_sha256 and diff_size. The recorder copies the object to
// AUDIT_DIR/objects/<sha256>.diff (fsynced) before it appends the diff's
// line, and deletes the object once the line is durable. The line keeps
// the reference and the hash, so the hash chain covers the content; the
// content stays out of the line because a diff of a 50 MB file can be
// larger than an audit line may be (64 MiB), and every query and verify
// would otherwise read it.

// ObjectsDir is the directory, inside the audit directory, of large diffs.
const ObjectsDir = "objects"

// ObjectPath is where the recorder keeps the diff whose sha256 is sum.
func ObjectPath(auditDir, sum string) string {
	return filepath.Join(auditDir, ObjectsDir, sum+".diff")
}

const objectTimeout = 2 * time.Minute

func objectName(d *event.Diff) (string, error) {
	name, ok := strings.CutPrefix(d.Object, broker.DiffsBucket+"/")
	if !ok || name != d.DiffSHA256 || len(name) != 64 {
		return "", fmt.Errorf("diff %s: object %q does not name %s/<diff_sha256>", d.EventID, d.Object, broker.DiffsBucket)
	}
	if _, err := hex.DecodeString(name); err != nil {
		return "", fmt.Errorf("diff %s: object %q: %w", d.EventID, d.Object, err)
	}
	return name, nil
}

// storeObjects makes the large diffs of ds durable next to the audit log.
// An error leaves the batch unwritten (it is retried); an object the store
// does not have is logged and its line written anyway, with its reference
// and hash.
func (r *Recorder) storeObjects(ds []*event.Diff) error {
	if len(ds) == 0 {
		return nil
	}
	dir := filepath.Join(r.cfg.AuditDir, ObjectsDir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("recorder: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), objectTimeout)
	defer cancel()
	var obs jetstream.ObjectStore
	for _, d := range ds {
		name, err := objectName(d)
		if err != nil {
			r.logger.Error("diff object reference is malformed; recorded as is", "err", err)
			continue
		}
		p := ObjectPath(r.cfg.AuditDir, name)
		if data, err := os.ReadFile(p); err == nil && sumOf(data) == name {
			continue // already here: a redelivery, or the same diff again
		}
		if obs == nil {
			if obs, err = r.js.ObjectStore(ctx, broker.DiffsBucket); err != nil {
				return fmt.Errorf("recorder: object store %s: %w", broker.DiffsBucket, err)
			}
		}
		data, err := obs.GetBytes(ctx, name)
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			r.logger.Error("diff object missing from the object store; its line keeps the reference and hash", "event_id", d.EventID, "object", d.Object)
			continue
		}
		if err != nil {
			return fmt.Errorf("recorder: get %s: %w", d.Object, err)
		}
		if sumOf(data) != name || int64(len(data)) != d.DiffSize {
			r.logger.Error("diff object does not match its hash; not kept", "event_id", d.EventID, "object", d.Object)
			continue
		}
		if err := writeFileSync(dir, p, data); err != nil {
			return fmt.Errorf("recorder: store %s: %w", d.Object, err)
		}
	}
	return nil
}

// dropObjects deletes, after their lines are durable, the objects of ds
// from the store. A failure only leaves an object behind.
func (r *Recorder) dropObjects(ds []*event.Diff) {
	if len(ds) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	obs, err := r.js.ObjectStore(ctx, broker.DiffsBucket)
	if err != nil {
		return
	}
	for _, d := range ds {
		if name, err := objectName(d); err == nil {
			if err := obs.Delete(ctx, name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
				r.logger.Warn("delete recorded diff object", "object", d.Object, "err", err)
			}
		}
	}
}

func sumOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// writeFileSync writes data to p through a fsynced temporary file and
// fsyncs dir.
func writeFileSync(dir, p string, data []byte) error {
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	_, err = bytes.NewReader(data).WriteTo(f)
	if err == nil {
		err = f.Chmod(0o640)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
