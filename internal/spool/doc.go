// Package spool is the agent's durable on-disk FIFO of records the recorder
// has not yet made durable, and the keeper of the agent's per-agent seq.
//
// The agent gives each record the next seq ([Spool.NextSeq]), appends a batch
// with [Spool.Append] (one fsync or fdatasync per call: group commit), and only then
// publishes it. A batch the recorder will most likely make durable first
// (events, not gaps or diffs) may be appended with [Spool.AppendDeferred]
// instead, which skips the fsync; [Spool.Unsynced] and [Spool.Sync] let the
// agent fsync what the recorder has not confirmed in time. The agent bounds
// and declares what a machine crash can then lose (internal/agent,
// syncmark.go). [Spool.Read] returns what is still to be sent, in seq order;
// [Spool.Trim] forgets what the recorder's watermark covers. After a restart,
// [Open] rebuilds the index from the segment files and everything not trimmed
// is there to be sent again.
//
// # Files
//
// A spool is a directory (0700) of segment files (0600) named by the first seq
// they may hold, %020d.seg, so that names sort in seq order. New records go to
// the newest segment; a segment that already holds records and would grow past
// [Options.SegmentBytes] is closed and a new one started. A batch is never
// split across segments. A segment is created as <name>.tmp, its header is
// fsynced, and it is renamed into place and the directory fsynced, so a
// segment file always starts with a complete header.
//
// The newest segment is filled with zeros a MiB ahead of its last frame (not
// past SegmentBytes). An append then overwrites blocks the file already has,
// and fdatasync need not commit a new file size to the journal; only the
// append that extends the zeros fsyncs. A segment that is rolled over, and
// the newest one on Close, is truncated to its last frame.
//
// Trim deletes whole segment files whose records are all trimmed, oldest
// first, but never the newest segment: its header and records carry the
// highest seq ever used, so [Spool.NextSeq] survives trimming everything and
// restarts without a separate seq file. [Spool.SetNextSeq] starts a new
// segment whose header records the jump.
//
// # Segment format
//
// All integers are little endian. A segment starts with a 32-byte header:
//
//	off len
//	  0   8  magic "FSOSPOOL"
//	  8   2  version, 1
//	 10   2  flags, 0
//	 12   8  prev: the spool's NextSeq when the segment was created
//	 20   8  base: the seq of the segment's first record; the file name
//	 28   4  CRC-32C (Castagnoli) of bytes 0..27
//
// prev == base, except when [Spool.SetNextSeq] jumped or a damaged segment was
// salvaged: seqs in [prev, base) were then never written, or their loss was
// already reported. Between two adjacent segments A and B, B.prev must equal
// the seq after A's last record; a larger prev means seqs are missing, a
// smaller one that they overlap.
//
// The header is followed by frames, one per record, back to back, with seqs
// base, base+1, … and no gaps:
//
//	off len
//	  0   4  magic "\xf5SPF"
//	  4   8  seq
//	 12   4  data length (at most 8 MiB)
//	 16   1  subject length (at most 255)
//	 17   1  flags, 0
//	 18   2  reserved, 0
//	 20   4  index of the entry in its Append batch (0 for the first)
//	 24   4  CRC-32C of subject and data
//	 28   4  CRC-32C of bytes 0..27 of the frame
//	 32   …  subject, then data
//
// The header checksum lets a reader trust a frame's length before it reads
// the body, and find the next good frame after damage by searching for the
// magic, without being misled by payload bytes. The batch index tells
// the frames of the append a crash interrupted (see Recovery).
//
// # Recovery
//
// [Open] reads and checks every segment. Zeros from the last frame to the end
// of a segment are preallocation: the newest segment keeps them, an older one
// (a crash before its release) is truncated. An append that wrote nothing
// before a crash looks the same, and was never published. A bad region at
// the end of the newest segment (a torn append: partial frame, bad checksum,
// garbage) is truncated away and logged: that append never returned, so its
// records were never published. Both hold for Append; what AppendDeferred
// wrote may have been published and still be lost to a machine crash,
// which the agent's unsynced marker, not Open, detects. Good frames after the bad one still belong to
// the torn tail when they are of the same batch, since a crash may write a
// batch's pages in any order; a good frame of a later batch means the damage
// is not a torn append. The price: a bad frame in the last batch of the
// newest segment drops the rest of that batch without a report.
//
// Any other damage (a bad frame followed by good ones, a bad frame in an older
// segment, a bad header, a seq out of order, overlapping segments) never
// makes Open fail. The segment is renamed to <name>.corrupt-<unix time> and
// kept for inspection, the frames that still check out are copied into fresh
// segments, and Open returns the spool together with a [*CorruptError]
// (matching [ErrCorrupt]) that lists the seqs lost. Seqs missing between two
// segments (a deleted file) are reported the same way. Each loss is reported
// once: the prev fields of the fresh or following segments declare the holes,
// so the next Open finds a consistent spool.
//
// Damage the spool cannot see: a lost oldest segment looks trimmed; a lost
// newest segment, or lost records at the very end of it, make NextSeq smaller
// than it was. The agent guards against reusing seqs by moving past the
// recorder's watermark with [Spool.SetNextSeq]. Trimming is not persisted
// (only whole-segment deletion is), so a reported loss may include seqs the
// recorder already has: clip it at the watermark.
//
// # Bounds
//
// [Options.MaxBytes] bounds the encoded size of the untrimmed records; disk
// use can exceed it by the trimmed part of the oldest and newest segments
// (less than two segments), plus 32 bytes per segment and the newest
// segment's preallocation (at most 1 MiB).
package spool
