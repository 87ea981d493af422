package auditlog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

const segmentExt = ".jsonl"

// segName is the file name of segment n: 00000001.jsonl, …
func segName(n uint64) string { return fmt.Sprintf("%08d%s", n, segmentExt) }

// parseSegName returns the number of the segment named name.
func parseSegName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentExt)
	if !ok || len(digits) < 8 {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || n == 0 || segName(n) != name {
		return 0, false
	}
	return n, true
}

type segment struct {
	n    uint64
	name string
	size int64
}

// listSegments returns the segments in dir in order. Other files are
// ignored.
func listSegments(dir string) ([]segment, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []segment
	for _, e := range ents {
		n, ok := parseSegName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, err
		}
		segs = append(segs, segment{n: n, name: e.Name(), size: info.Size()})
	}
	slices.SortFunc(segs, func(a, b segment) int {
		switch {
		case a.n < b.n:
			return -1
		case a.n > b.n:
			return 1
		}
		return 0
	})
	return segs, nil
}

// lineReader reads lines of any length up to maxLineBytes with one large
// buffer.
type lineReader struct {
	r    *bufio.Reader
	long []byte
}

const readBufferSize = 1 << 20

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, readBufferSize)}
}

// next returns the next line with its "\n" and its length n. At the end of
// the input, a last piece without "\n" is returned with complete false, and
// after it io.EOF. A line longer than maxLineBytes is consumed but returned
// as nil with its length. The line is valid until the next call.
func (lr *lineReader) next() (line []byte, n int64, complete bool, err error) {
	s, err := lr.r.ReadSlice('\n')
	switch {
	case err == nil:
		return s, int64(len(s)), true, nil
	case err == io.EOF:
		if len(s) == 0 {
			return nil, 0, false, io.EOF
		}
		return s, int64(len(s)), false, nil
	case err != bufio.ErrBufferFull:
		return nil, 0, false, err
	}
	lr.long = append(lr.long[:0], s...)
	n = int64(len(s))
	over := false
	for {
		s, err = lr.r.ReadSlice('\n')
		n += int64(len(s))
		if !over {
			if n > maxLineBytes {
				over = true
				lr.long = lr.long[:0]
			} else {
				lr.long = append(lr.long, s...)
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err != nil && err != io.EOF:
			return nil, 0, false, err
		}
		line = lr.long
		if over {
			line = nil
		}
		return line, n, err == nil, nil
	}
}

var errTornSegment = errors.New("last line has no newline")

// lastLine returns the last line of the segment f of size bytes, without
// its "\n"; nil when the segment is empty.
func lastLine(f *os.File, size int64) ([]byte, error) {
	if size == 0 {
		return nil, nil
	}
	var b [1]byte
	if _, err := f.ReadAt(b[:], size-1); err != nil {
		return nil, err
	}
	if b[0] != '\n' {
		return nil, errTornSegment
	}
	end := size - 1
	for window := int64(64 << 10); ; window *= 4 {
		start := max(0, end-window)
		buf := make([]byte, end-start)
		if _, err := f.ReadAt(buf, start); err != nil {
			return nil, err
		}
		if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
			return buf[i+1:], nil
		}
		if start == 0 {
			return buf, nil
		}
		if window > maxLineBytes {
			return nil, errors.New("last line too long")
		}
	}
}

// countLines counts the lines of the file at path.
func countLines(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, readBufferSize)
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

func segPath(dir string, n uint64) string { return filepath.Join(dir, segName(n)) }
