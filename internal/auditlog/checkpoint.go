package auditlog

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// KindCheckpoint is the kind of a checkpoint record.
const KindCheckpoint = "checkpoint"

// Checkpoint is a signed statement by a recorder about the audit log: it
// held Records lines, the last of them line Line of Segment with hash Head.
// The recorder appends it to the log (so it is chained like any record)
// and publishes it to the broker, so that a log whose tail was cut off can
// be told from one that was never longer. Sig is the ed25519 signature, in
// base64, of [Checkpoint.SignedBytes]; KeyID names the key.
type Checkpoint struct {
	Kind     string    `json:"kind"`
	Recorder string    `json:"recorder"`
	Segment  string    `json:"segment"`
	Line     int64     `json:"line"`
	Records  int64     `json:"records"`
	Head     string    `json:"head"`
	At       time.Time `json:"at"`
	KeyID    string    `json:"key_id"`
	Sig      string    `json:"sig"`
}

// SignedBytes is what the signature covers.
func (c *Checkpoint) SignedBytes() []byte {
	return []byte(strings.Join([]string{"fso-checkpoint-v1", c.Recorder, c.Segment,
		strconv.FormatInt(c.Line, 10), strconv.FormatInt(c.Records, 10), c.Head,
		c.At.UTC().Format(time.RFC3339Nano), c.KeyID}, "\n"))
}

// Sign fills Kind, KeyID and Sig.
func (c *Checkpoint) Sign(key ed25519.PrivateKey) {
	c.Kind = KindCheckpoint
	c.KeyID = KeyID(key.Public().(ed25519.PublicKey))
	c.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(key, c.SignedBytes()))
}

// Valid reports whether Sig is pub's signature of c.
func (c *Checkpoint) Valid(pub ed25519.PublicKey) bool {
	sig, err := base64.StdEncoding.DecodeString(c.Sig)
	return err == nil && c.KeyID == KeyID(pub) && ed25519.Verify(pub, c.SignedBytes(), sig)
}

// Marshal returns the checkpoint as an audit record.
func (c *Checkpoint) Marshal() ([]byte, error) {
	c.Kind = KindCheckpoint
	return json.Marshal(c)
}

// KeyID is the short name of a public key: the first 16 hex digits of the
// sha256 of its raw bytes.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// LoadOrCreateKey reads the ed25519 private key (PKCS #8, PEM) at path, or
// creates one there (mode 0600, directory 0700) if there is none.
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("create key %s: %w", path, err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("create key %s: %w", path, err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("create key %s: %w", path, err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			if errors.Is(err, os.ErrExist) { // created meanwhile
				return LoadOrCreateKey(path)
			}
			return nil, fmt.Errorf("create key: %w", err)
		}
		err = pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("create key %s: %w", path, err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("key %s: not a PEM PRIVATE KEY", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key %s: not an ed25519 key", path)
	}
	return key, nil
}

// MarshalPublicKey returns pub as a PEM PUBLIC KEY (PKIX).
func MarshalPublicKey(pub ed25519.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// ParsePublicKey reads an ed25519 public key: PEM PUBLIC KEY, or the raw
// 32 bytes in base64 or hex.
func ParsePublicKey(b []byte) (ed25519.PublicKey, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("public key: %w", err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, errors.New("public key: not ed25519")
		}
		return pub, nil
	}
	s := strings.TrimSpace(string(b))
	for _, dec := range []func(string) ([]byte, error){base64.StdEncoding.DecodeString, hex.DecodeString} {
		if raw, err := dec(s); err == nil && len(raw) == ed25519.PublicKeySize {
			return ed25519.PublicKey(raw), nil
		}
	}
	return nil, errors.New("public key: want PEM, or 32 bytes in base64 or hex")
}

// VerifyOptions add checks to [VerifyWith].
type VerifyOptions struct {
	// Progress, when not nil, is called as the bytes are read.
	Progress func(doneBytes, totalBytes int64)
	// PublicKey, when set, is the recorder's key: every checkpoint record
	// must carry its valid signature.
	PublicKey ed25519.PublicKey
	// Published, when set, is the latest checkpoint the recorder published
	// to the broker: the log must still hold it, or its tail was cut off.
	Published *Checkpoint
}

// checkpointCheck is what the verifier tracks for checkpoints.
type checkpointCheck struct {
	opts           VerifyOptions
	count          int
	lastSeg        string // position of the previous line
	lastLine       int64
	foundPublished bool
}

// checkpoint checks a checkpoint record at seg:lineNo whose prev field is
// prev; records is how many lines precede it.
func (v *verifier) checkpoint(seg string, lineNo int64, line, prev []byte, records int64) {
	var c Checkpoint
	if err := json.Unmarshal(line, &c); err != nil {
		v.problemf(seg, lineNo, ReasonUnparsable, "checkpoint: %v", err)
		return
	}
	v.cp.count++
	if k := v.cp.opts.PublicKey; k != nil && !c.Valid(k) {
		v.problemf(seg, lineNo, ReasonBadSignature, "the checkpoint of %s (key %s) does not verify with key %s", c.Recorder, c.KeyID, KeyID(k))
	}
	if c.Head != string(prev) || c.Records != records || c.Segment != v.cp.lastSeg || c.Line != v.cp.lastLine {
		v.problemf(seg, lineNo, ReasonCheckpoint, "checkpoint says %d records up to %s line %d (%.12s), the log has %d up to %s line %d (%.12s)",
			c.Records, c.Segment, c.Line, c.Head, records, v.cp.lastSeg, v.cp.lastLine, prev)
	}
	if p := v.cp.opts.Published; p != nil && p.Sig == c.Sig {
		v.cp.foundPublished = true
	}
}

// published checks, at the end, that the log holds the published checkpoint.
func (v *verifier) published() {
	p := v.cp.opts.Published
	if p == nil {
		return
	}
	if k := v.cp.opts.PublicKey; k != nil && !p.Valid(k) {
		v.problemf(p.Segment, p.Line, ReasonBadSignature, "the checkpoint published by %s is not signed by key %s", p.Recorder, KeyID(k))
		return
	}
	if v.cp.foundPublished {
		return
	}
	if v.rep.Records <= p.Records {
		v.problemf(v.cp.lastSeg, v.cp.lastLine, ReasonTruncated, "the log ends after %d records; the checkpoint %s published at %s covers %d records up to %s line %d and is not in the log",
			v.rep.Records, p.Recorder, p.At.Format(time.RFC3339), p.Records+1, p.Segment, p.Line+1)
		return
	}
	v.problemf(p.Segment, p.Line+1, ReasonCheckpoint, "the checkpoint %s published at %s is not in the log", p.Recorder, p.At.Format(time.RFC3339))
}

// Reasons of a [Problem] found by the checkpoint checks.
const (
	ReasonBadSignature = "bad signature"       // a checkpoint not signed by the recorder's key
	ReasonCheckpoint   = "checkpoint mismatch" // a checkpoint's claims do not match the log before it
	ReasonTruncated    = "truncated"           // the log ends before the checkpoint the recorder published
)

func (v *verifier) problemf(seg string, line int64, reason, format string, args ...any) {
	if v.rep.Problem == nil {
		v.rep.Problem = &Problem{Segment: seg, Line: line, Reason: reason, Detail: fmt.Sprintf(format, args...)}
	}
}

// chainTrack tells a deleted line from an inserted or moved one when the
// chain breaks.
type chainTrack struct {
	prev2     [hexLen]byte // hash of the line before the previous one
	prev2Seg  string
	prev2Line int64
	want      []byte   // the unknown predecessor of the first break
	broken    *Problem // the first break, while want is looked for
}

// chainBroken reports line lineNo, whose prev is not the previous line's
// hash, and says why as far as the hashes tell.
func (v *verifier) chainBroken(seg string, lineNo int64, prev []byte) {
	if v.rep.Problem != nil {
		return
	}
	if string(prev) == string(v.ct.prev2[:]) {
		v.problemf(seg, lineNo, ReasonChainBroken, "inserted: this line links to %s line %d, so the line before it was inserted", v.ct.prev2Seg, v.ct.prev2Line)
		return
	}
	v.problemf(seg, lineNo, ReasonChainBroken, "deleted: this line links to a line that is not before it (deleted, or replaced)")
	v.ct.want, v.ct.broken = append([]byte(nil), prev...), v.rep.Problem
}

// linked notes the line's hash: it may be the one a break looked for.
func (v *verifier) linked(seg string, lineNo int64, hash []byte) {
	if v.ct.want != nil && string(hash) == string(v.ct.want) {
		v.ct.broken.Detail = fmt.Sprintf("reordered: this line links to %s line %d, which comes after it", seg, lineNo)
		v.ct.want = nil
	}
	v.ct.prev2, v.ct.prev2Seg, v.ct.prev2Line = v.prev, v.cp.lastSeg, v.cp.lastLine
}
