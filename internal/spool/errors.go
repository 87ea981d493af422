package spool

import (
	"errors"
	"strconv"
	"strings"
)

// ErrFull is returned by [Spool.Append] when the batch would take the
// untrimmed records past [Options.MaxBytes]. Nothing was written.
var ErrFull = errors.New("spool: full")

// ErrCorrupt matches every [*CorruptError].
var ErrCorrupt = errors.New("spool: corrupt")

var errClosed = errors.New("spool: closed")

// CorruptError reports damaged segments: what was lost and where the damaged
// files went. It matches [ErrCorrupt] with errors.Is.
//
// [Open] returns it together with a usable [*Spool] after quarantining
// damaged segments; [Spool.Read] returns it for a frame damaged since Open.
type CorruptError struct {
	// Lost are the seq ranges lost, first and last inclusive, in order.
	Lost [][2]uint64
	// LostFrom, when not zero, says that seqs from LostFrom up to an
	// unknown end may be lost too: the newest segment was unreadable, so
	// NextSeq may be lower than it was.
	LostFrom uint64
	// Quarantined are the paths the damaged segment files were renamed to.
	Quarantined []string
	// Err says what was wrong with each file.
	Err error
}

func (e *CorruptError) Error() string {
	var b strings.Builder
	b.WriteString("spool: corrupt")
	if len(e.Lost) > 0 || e.LostFrom != 0 {
		b.WriteString(": lost seq ")
		b.WriteString(formatRanges(e.Lost, e.LostFrom))
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the error describing the damage.
func (e *CorruptError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrCorrupt].
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// add records lost ranges, given in increasing order across calls; a range
// may overlap the last one recorded (two checks seeing the same hole), and is
// merged with it.
func (e *CorruptError) add(lost [][2]uint64, err error) {
	for _, r := range lost {
		n := len(e.Lost)
		switch {
		case n == 0 || r[0] > e.Lost[n-1][1]+1:
			e.Lost = append(e.Lost, r)
		case r[1] > e.Lost[n-1][1]:
			e.Lost[n-1][1] = r[1]
		}
	}
	e.Err = errors.Join(e.Err, err)
}

// formatRanges writes ranges as "3-7, 9, 12-?".
func formatRanges(rs [][2]uint64, from uint64) string {
	var parts []string
	for _, r := range rs {
		s := strconv.FormatUint(r[0], 10)
		if r[1] != r[0] {
			s += "-" + strconv.FormatUint(r[1], 10)
		}
		parts = append(parts, s)
	}
	if from != 0 {
		parts = append(parts, strconv.FormatUint(from, 10)+"-?")
	}
	return strings.Join(parts, ", ")
}
