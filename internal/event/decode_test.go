package event

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// decodeCases are events as agents send them, in every shape the fast path
// must take: each optional field present and absent.
func decodeCases() []Event {
	size, neg, mode, uid, gid := int64(42), int64(-1), uint32(0o4755), uint32(1000), uint32(0)
	at := time.Date(2026, 11, 26, 1, 2, 3, 4000, time.UTC)
	whole := time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC)
	return []Event{
		{ID: "a:1", Agent: "a", Seq: 1, Type: Delete, Path: "/x", ObservedAt: at, EmittedAt: at, Source: SourceWatch},
		{ID: "web-1:99", Agent: "web-1", Host: "h", Seq: 99, Type: Rename, Path: "/srv/new", OldPath: "/srv/old",
			IsDir: true, ObservedAt: at, EmittedAt: whole, Source: SourceScan, ScanSince: &whole,
			Size: &size, Mode: &mode, UID: &uid, GID: &gid, MTime: &at, SHA256: strings.Repeat("ab", 32)},
		{ID: "a:18446744073709551615", Agent: "a", Seq: 18446744073709551615, Type: Modify, Path: "/a b/c.d",
			ObservedAt: at, EmittedAt: at, Source: SourceWatch, Size: &neg, GID: &gid},
	}
}

// TestDecodeFast: the hand parser takes the records agents send, and what
// it makes of them is what the strict encoding/json path makes of them.
func TestDecodeFast(t *testing.T) {
	for i, e := range decodeCases() {
		data, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, ok := decodeFast(data)
		if !ok {
			t.Fatalf("case %d: fast path refused %s", i, data)
		}
		var want Event
		if err := strict(data, &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("case %d:\nfast   %+v\nstrict %+v", i, got, want)
		}
	}
	// What only the strict path may take, or refuse: escapes, non-UTF-8
	// paths, other key orders, unknown fields, offsets, non-canonical
	// numbers and times, trailing bytes.
	base, _ := decodeCases()[0].Marshal()
	for _, data := range []string{
		strings.Replace(string(base), `"/x"`, `"/\u0078"`, 1),
		strings.Replace(string(base), `"/x"`, `"/<x>"`, 1),
		strings.Replace(string(base), `"/x"`, `"/é"`, 1),
		strings.Replace(string(base), `{"kind":"event","id":"a:1"`, `{"id":"a:1","kind":"event"`, 1),
		strings.Replace(string(base), `"source":"watch"`, `"source":"watch","extra":1`, 1),
		strings.Replace(string(base), `"seq":1`, `"seq":01`, 1),
		strings.Replace(string(base), `"seq":1`, `"seq":1.0`, 1),
		strings.Replace(string(base), `.000004Z"`, `.000004+00:00"`, 1),
		strings.Replace(string(base), `.000004Z"`, `.0000040Z"`, 1),
		string(base) + " ",
		string(base) + "{}",
		string(base[:len(base)-1]),
	} {
		if data == string(base) {
			t.Fatalf("case did not change the record: %s", data)
		}
		if _, ok := decodeFast([]byte(data)); ok {
			t.Errorf("fast path took %s", data)
		}
	}
}

// FuzzDecodeFast: decodeEvent, with its fast path, and the strict
// encoding/json path take and refuse the same records, and make the same of
// what they take.
func FuzzDecodeFast(f *testing.F) {
	for _, e := range decodeCases() {
		data, _ := e.Marshal()
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, gerr := decodeEvent(data)
		want, werr := decodeStrict(data)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("%q: decodeEvent: %v, strict: %v", data, gerr, werr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\nfast   %+v\nstrict %+v", data, got, want)
		}
	})
}

func BenchmarkDecodeEvent(b *testing.B) {
	data, _ := decodeCases()[1].Marshal()
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			if _, err := decodeEvent(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("strict", func(b *testing.B) {
		for b.Loop() {
			var e Event
			if err := strict(data, &e); err != nil {
				b.Fatal(err)
			}
			if _, err := e.Marshal(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
