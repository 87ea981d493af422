package spool

// Sizes of the format, for tests that damage files at chosen places.
const (
	SegHeaderSize   = segHeaderSize
	FrameHeaderSize = frameHeaderSize
)

// Fsyncs returns how many file and directory fsyncs s has done.
func Fsyncs(s *Spool) uint64 { return s.fsyncs.Load() }

// Datasyncs returns how many of those were fdatasyncs of an append into
// preallocated space.
func Datasyncs(s *Spool) uint64 { return s.datasyncs.Load() }
