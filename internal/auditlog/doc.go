// Package auditlog is FSO's system of record: a hash-chained JSON Lines
// log in numbered segments, 00000001.jsonl, 00000002.jsonl, … in one
// directory. The recorder appends with a [Writer]; [Verify] checks the
// chain; [Scan], [Query] and [Tail] read records back.
//
// # Line format
//
// Each line is one record, a compact JSON object, to which the writer
// appends three members. For a record {…} it builds
//
//	P    = {… ,"recorded_at":"<RFC 3339, UTC, 9 fractional digits>","prev":"<64 hex>"
//	line = P ,"hash":"<hex SHA-256 of P>"}\n
//
// prev is the hash of the line before, across segments; the very first
// line of the log has 64 zeros. So a line is checked by cutting its
// trailing ,"hash":"<64 hex>"}, hashing the rest and comparing, then
// comparing its prev with the hash of the line before. Other tools depend
// on these exact bytes: the chain fields are always last, in this order,
// and records may not carry members of the same names.
//
// Paths that are not valid UTF-8 are kept losslessly as package event
// encodes them: "path" holds a readable form and "path_b64" the exact
// bytes; [Record] decodes them.
//
// # Guarantees
//
// Nothing is durable until [Writer.Sync] returns nil: it writes the
// buffered lines, syncs the segment (and the directory when it created the
// segment), and only then may the caller acknowledge them. A Sync that
// fails (a full disk, an I/O error) truncates the segment back to its last
// durable line and leaves the chain head there, so no partial line stays
// on disk and the caller can retry. Space is reserved with fallocate
// before writing where the file system supports it, so a full disk
// usually refuses the whole batch before writing any of it.
//
// A crash during Sync can leave a torn tail: an incomplete last line, or
// trailing bytes that are not a sealed line. [Open] truncates it away and
// logs how many bytes it removed. A bad line followed by a valid one is
// not a torn tail but tampering or media damage: Open returns an error
// wrapping [ErrCorrupt] and changes nothing.
//
// Editing, dropping, inserting or reordering any line, in any segment,
// and removing a segment, are detected by [Verify]. The chain has no key:
// whoever can rewrite the whole log after a line can also recompute every
// hash after it, which only a copy of a recent [Writer.Head] kept
// elsewhere detects.
//
// # Completeness
//
// Every record an agent publishes (event, diff, gap, overflow) carries the
// next number of one per-agent sequence, seq. [Verify] reports, per agent,
// numbers missing between the first and the last it saw that no gap
// record (from_seq..to_seq) accounts for.
package auditlog
