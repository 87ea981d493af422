// Package event defines the records FSO moves from agents to the audit log:
// events, diffs, gaps and overflow notices, the subjects they travel on, and
// their JSON encoding. It does no I/O.
//
// # Paths that are not UTF-8
//
// Linux file names are bytes; JSON strings are Unicode. A path that is valid
// UTF-8 is written as is in "path" (and "old_path"). A path that is not is
// written twice: "path" holds it with each invalid byte replaced by U+FFFD,
// for people and tools that only read text, and "path_b64" holds the exact
// bytes, base64 (RFC 4648, standard alphabet, padded). Decoding prefers
// "path_b64", so the round trip is lossless.
package event

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Kinds of record.
const (
	KindEvent    = "event"
	KindDiff     = "diff"
	KindGap      = "gap"
	KindOverflow = "overflow"
	KindRejected = "rejected"
)

// Type is what happened to a path.
type Type string

// The event types of the record contract.
const (
	Create Type = "create"
	Modify Type = "modify"
	Delete Type = "delete"
	Rename Type = "rename"
	Attrib Type = "attrib"
)

// Types lists every event type, in the contract's order.
var Types = []Type{Create, Modify, Delete, Rename, Attrib}

// ParseType returns the Type named s, or an error naming s.
func ParseType(s string) (Type, error) {
	for _, t := range Types {
		if string(t) == s {
			return t, nil
		}
	}
	return "", fmt.Errorf("event: unknown event type %q (want one of create, modify, delete, rename, attrib)", s)
}

// Sources of an event.
const (
	SourceWatch = "watch" // an inotify event
	SourceScan  = "scan"  // found by listing or rescanning a directory
)

// Event is one change to one path, as the agent publishes it.
type Event struct {
	Kind       string    `json:"kind"`
	ID         string    `json:"id"`
	Agent      string    `json:"agent"`
	Host       string    `json:"host"`
	Seq        uint64    `json:"seq"`
	Type       Type      `json:"type"`
	Path       string    `json:"path"`
	PathB64    string    `json:"path_b64,omitempty"`
	OldPath    string    `json:"old_path,omitempty"`
	OldPathB64 string    `json:"old_path_b64,omitempty"`
	IsDir      bool      `json:"is_dir"`
	ObservedAt time.Time `json:"observed_at"`
	EmittedAt  time.Time `json:"emitted_at"`
	Source     string    `json:"source"`
	// ScanSince, on a change found by a scan, is when the agent last knew
	// the path's state: the change happened between it and ObservedAt.
	ScanSince *time.Time `json:"scan_since,omitempty"`
	// The stat fields are absent when the path no longer exists.
	Size   *int64     `json:"size,omitempty"`
	Mode   *uint32    `json:"mode,omitempty"` // permission bits with setuid, setgid, sticky (st_mode & 07777)
	UID    *uint32    `json:"uid,omitempty"`
	GID    *uint32    `json:"gid,omitempty"`
	MTime  *time.Time `json:"mtime,omitempty"`
	SHA256 string     `json:"sha256,omitempty"` // regular files within the hash size limit
}

// Diff carries the content change of an important file; EventID links it to
// its event.
type Diff struct {
	Kind      string `json:"kind"`
	Agent     string `json:"agent"`
	Seq       uint64 `json:"seq"`
	EventID   string `json:"event_id"`
	Path      string `json:"path"`
	PathB64   string `json:"path_b64,omitempty"`
	Diff      string `json:"diff"`
	Truncated bool   `json:"truncated"`
	Binary    bool   `json:"binary"`
	Reason    string `json:"reason,omitempty"`
	OldSHA256 string `json:"old_sha256,omitempty"`
	NewSHA256 string `json:"new_sha256,omitempty"`
	OldSize   *int64 `json:"old_size,omitempty"`
	NewSize   *int64 `json:"new_size,omitempty"`
	// Object, when set, names the JetStream object ("<bucket>/<name>")
	// that holds Diff, which is then empty: the diff was larger than a
	// message may be. DiffSHA256 and DiffSize are of the diff text.
	Object     string    `json:"object,omitempty"`
	DiffSHA256 string    `json:"diff_sha256,omitempty"`
	DiffSize   int64     `json:"diff_size,omitempty"`
	EmittedAt  time.Time `json:"emitted_at"`
}

// Gap says that the agent's records FromSeq..ToSeq (inclusive) were lost,
// and why. It has a seq of its own.
type Gap struct {
	Kind      string    `json:"kind"`
	Agent     string    `json:"agent"`
	Seq       uint64    `json:"seq"`
	FromSeq   uint64    `json:"from_seq"`
	ToSeq     uint64    `json:"to_seq"`
	Reason    string    `json:"reason"`
	EmittedAt time.Time `json:"emitted_at"`
}

// Overflow says the kernel dropped events under Root: the agent's view of
// it was incomplete from ObservedAt until a rescan.
type Overflow struct {
	Kind       string    `json:"kind"`
	Agent      string    `json:"agent"`
	Seq        uint64    `json:"seq"`
	Root       string    `json:"root,omitempty"`
	RootB64    string    `json:"root_b64,omitempty"`
	Reason     string    `json:"reason"`
	ObservedAt time.Time `json:"observed_at"`
	EmittedAt  time.Time `json:"emitted_at"`
}

// ID is the event id of seq from agent.
func ID(agent string, seq uint64) string {
	return agent + ":" + strconv.FormatUint(seq, 10)
}

// EncodePath returns the text form of p and, when p is not valid UTF-8, its
// exact bytes in base64.
func EncodePath(p string) (text, b64 string) {
	if utf8.ValidString(p) {
		return p, ""
	}
	return strings.ToValidUTF8(p, "\uFFFD"), base64.StdEncoding.EncodeToString([]byte(p))
}

// DecodePath reverses EncodePath.
func DecodePath(text, b64 string) (string, error) {
	if b64 == "" {
		return text, nil
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", fmt.Errorf("event: decode path_b64: %w", err)
	}
	return string(b), nil
}

// Marshal encodes e with its paths in lossless form.
func (e Event) Marshal() ([]byte, error) {
	e.Kind = KindEvent
	e.Path, e.PathB64 = EncodePath(e.Path)
	if e.OldPath != "" {
		e.OldPath, e.OldPathB64 = EncodePath(e.OldPath)
	}
	e.ObservedAt = e.ObservedAt.UTC()
	e.EmittedAt = e.EmittedAt.UTC()
	if e.MTime != nil {
		t := e.MTime.UTC()
		e.MTime = &t
	}
	if b, ok := e.appendJSON(make([]byte, 0, 512)); ok {
		return b, nil
	}
	return json.Marshal(e)
}

// Marshal encodes d with its path in lossless form.
func (d Diff) Marshal() ([]byte, error) {
	d.Kind = KindDiff
	d.Path, d.PathB64 = EncodePath(d.Path)
	d.EmittedAt = d.EmittedAt.UTC()
	return json.Marshal(d)
}

// Marshal encodes g.
func (g Gap) Marshal() ([]byte, error) {
	g.Kind = KindGap
	g.EmittedAt = g.EmittedAt.UTC()
	return json.Marshal(g)
}

// Marshal encodes o with its root in lossless form.
func (o Overflow) Marshal() ([]byte, error) {
	o.Kind = KindOverflow
	o.Root, o.RootB64 = EncodePath(o.Root)
	o.ObservedAt = o.ObservedAt.UTC()
	o.EmittedAt = o.EmittedAt.UTC()
	return json.Marshal(o)
}

// ErrInvalid is wrapped by every decoding error: the bytes are not a record
// this version of FSO accepts.
var ErrInvalid = errors.New("event: invalid record")

// Rejected records a message the recorder could not accept: nothing that
// reaches an FSO subject is skipped silently. Data holds the raw bytes,
// base64, up to RejectedDataMax; SHA256 and Size are of all of them.
type Rejected struct {
	Kind      string `json:"kind"`
	Subject   string `json:"subject"`
	Reason    string `json:"reason"`
	Size      int    `json:"size"`
	SHA256    string `json:"sha256"`
	DataB64   string `json:"data_b64"`
	Truncated bool   `json:"truncated"`
	StreamSeq uint64 `json:"stream_seq,omitempty"`
}

// RejectedDataMax bounds the raw bytes kept in a Rejected record.
const RejectedDataMax = 64 << 10

// NewRejected describes data received on subject that failed with reason.
func NewRejected(subject string, data []byte, reason error, streamSeq uint64) Rejected {
	sum := sha256.Sum256(data)
	keep := data
	if len(keep) > RejectedDataMax {
		keep = keep[:RejectedDataMax]
	}
	subj, _ := EncodePath(subject)
	return Rejected{Kind: KindRejected, Subject: subj, Reason: strings.ToValidUTF8(reason.Error(), "\uFFFD"), Size: len(data),
		SHA256: hex.EncodeToString(sum[:]), DataB64: base64.StdEncoding.EncodeToString(keep),
		Truncated: len(keep) < len(data), StreamSeq: streamSeq}
}

// Marshal encodes r.
func (r Rejected) Marshal() ([]byte, error) { r.Kind = KindRejected; return json.Marshal(r) }
