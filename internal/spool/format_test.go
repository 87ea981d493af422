package spool

import (
	"bytes"
	"errors"
	"testing"
)

// testSegment encodes a segment holding count entries from seq base.
func testSegment(base uint64, count int) []byte {
	b := appendSegHeader(nil, segHeader{prev: base, base: base})
	for i := range count {
		e := Entry{Seq: base + uint64(i), Subject: "fso.events.a", Data: bytes.Repeat([]byte{byte(i), 0xf5}, i*7)}
		b = appendFrame(b, &e, uint32(i))
	}
	return b
}

func TestFrameRoundTrip(t *testing.T) {
	for _, e := range []Entry{
		{Seq: 1},
		{Seq: 1<<64 - 1, Subject: string(bytes.Repeat([]byte{'x'}, maxSubject)), Data: []byte("data")},
		{Seq: 42, Subject: "s", Data: make([]byte, maxData)},
	} {
		b := appendFrame([]byte("prefix"), &e, 0)
		f, err := parseFrame(b, len("prefix"))
		if err != nil {
			t.Fatalf("seq %d: %v", e.Seq, err)
		}
		if f.seq != e.Seq || f.end() != len(b) || f.size != frameSize(&e) ||
			string(f.subject(b)) != e.Subject || !bytes.Equal(f.data(b), e.Data) {
			t.Errorf("seq %d: have %+v", e.Seq, f)
		}
		for i := range b[len("prefix"):] {
			if _, err := parseFrame(b[:len(b)-i-1], len("prefix")); err == nil {
				t.Fatalf("seq %d: frame cut to %d bytes decodes", e.Seq, len(b)-i-1)
			}
			if len(b) > 1000 {
				break
			}
		}
	}
}

func TestDecodeSegment(t *testing.T) {
	good := testSegment(7, 5)
	tests := []struct {
		name   string
		b      []byte
		hdrOK  bool
		frames int
		stop   error // nil: decoded to the end
	}{
		{"good", good, true, 5, nil},
		{"header only", good[:segHeaderSize], true, 0, nil},
		{"short header", good[:segHeaderSize-1], false, 0, nil},
		{"empty", nil, false, 0, nil},
		{"torn", good[:len(good)-1], true, 4, errShort},
		{"zeros after", append(bytes.Clone(good), make([]byte, 100)...), true, 5, errMagic},
		{"wrong seq", append(bytes.Clone(good), testSegment(7, 1)[segHeaderSize:]...), true, 5, errSeq},
		{"batch entry out of order", append(bytes.Clone(good), appendFrame(nil, &Entry{Seq: 12}, 2)...), true, 5, errSeq},
		{"batch entry past its seq", append(bytes.Clone(good), appendFrame(nil, &Entry{Seq: 12}, 12)...), true, 5, errFrameField},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc := decodeSegment(tc.b)
			if (sc.hdrErr == nil) != tc.hdrOK {
				t.Fatalf("header error: %v", sc.hdrErr)
			}
			if !tc.hdrOK {
				return
			}
			if len(sc.frames) != tc.frames || !errors.Is(sc.stop, tc.stop) && sc.stop != tc.stop {
				t.Errorf("have %d frames, stop %v; want %d, %v", len(sc.frames), sc.stop, tc.frames, tc.stop)
			}
		})
	}
}

// FuzzDecode checks that no input makes the decoders panic, and that what
// they return holds together.
func FuzzDecode(f *testing.F) {
	good := testSegment(3, 4)
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add(good[:segHeaderSize])
	f.Add(append(bytes.Clone(good[:100]), good[150:]...))
	f.Add(append(bytes.Clone(good), make([]byte, 64)...))
	f.Add([]byte(segMagic))
	f.Add([]byte(frameMagic + frameMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		sc := decodeSegment(b)
		if sc.hdrErr == nil {
			off := segHeaderSize
			for i, fr := range sc.frames {
				if fr.off != off || fr.seq != sc.hdr.base+uint64(i) || fr.end() > len(b) {
					t.Fatalf("frame %d: %+v", i, fr)
				}
				off = fr.end()
			}
			if sc.end != off || (sc.stop == nil) != (sc.end == len(b)) {
				t.Fatalf("end %d of %d, stop %v", sc.end, len(b), sc.stop)
			}
		}
		for _, from := range []int{0, segHeaderSize} {
			last, end := uint64(0), from
			for _, fr := range salvageFrames(b, from, 1, 0) {
				if fr.off < end || fr.seq <= last && last != 0 || fr.end() > len(b) {
					t.Fatalf("salvaged %+v after seq %d, offset %d", fr, last, end)
				}
				if _, err := parseFrame(b, fr.off); err != nil {
					t.Fatalf("salvaged a bad frame: %v", err)
				}
				last, end = fr.seq, fr.end()
			}
		}
	})
}
