package event

import (
	"encoding/json"
	"testing"
	"time"
)

// TestAppendJSON checks that the hand-written encoding of an event is
// byte for byte what encoding/json makes of it.
func TestAppendJSON(t *testing.T) {
	size, mode, uid, gid := int64(42), uint32(0o4755), uint32(1000), uint32(0)
	mt := time.Date(2026, 11, 26, 1, 2, 3, 4000, time.UTC)
	local := time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("x", 3600))
	tests := []struct {
		name string // what the case covers
		e    Event
	}{
		{"minimal", Event{Kind: KindEvent, ID: "a:1", Agent: "a", Seq: 1, Type: Delete, Path: "/x"}},
		{"full", Event{Kind: KindEvent, ID: "web-1:99", Agent: "web-1", Host: "h", Seq: 99, Type: Rename, Path: "/srv/new",
			OldPath: "/srv/old", IsDir: true, ObservedAt: mt, EmittedAt: mt.Add(time.Second), Source: SourceScan,
			ScanSince: &local, Size: &size, Mode: &mode, UID: &uid, GID: &gid, MTime: &mt, SHA256: "ab12"}},
		{"escapes", Event{Kind: KindEvent, Path: "/a \"b\"\\c\n\t<&>\u2028é\x01", Host: "<script>", PathB64: "L2E=",
			OldPath: "/é", OldPathB64: "xx=="}},
		{"invalid utf-8 outside paths", Event{Host: "\xff\xfe", Source: "s\x7f"}},
		{"year out of range", Event{ObservedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"negative size", Event{Size: new(int64(-1))}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want, werr := json.Marshal(tc.e)
			have, ok := tc.e.appendJSON(nil)
			if !ok {
				if werr == nil {
					t.Fatalf("appendJSON gave up where encoding/json succeeds: %s", want)
				}
				return
			}
			if werr != nil || string(have) != string(want) {
				t.Errorf("have %s\nwant %s (err %v)", have, want, werr)
			}
		})
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("/a/b", "host", "", uint64(7), int64(3), int64(1700000000123456789), true)
	f.Add("/\xff<>&\u2029", "h\n", "/o", uint64(1<<63), int64(-5), int64(-62135596800000000), false)
	f.Fuzz(func(t *testing.T, path, host, old string, seq uint64, size, ns int64, dir bool) {
		ts := time.Unix(0, ns).UTC()
		e := Event{Kind: KindEvent, ID: "a:1", Agent: "a", Host: host, Seq: seq, Type: Modify, Path: path, OldPath: old,
			IsDir: dir, ObservedAt: ts, EmittedAt: ts, MTime: &ts, Size: &size, Source: SourceWatch}
		want, werr := json.Marshal(e)
		have, ok := e.appendJSON(nil)
		if ok && (werr != nil || string(have) != string(want)) {
			t.Errorf("have %s\nwant %s (err %v)", have, want, werr)
		}
	})
}

func BenchmarkEventMarshal(b *testing.B) {
	size, mode, uid, gid := int64(42), uint32(0o644), uint32(1000), uint32(1000)
	now := time.Now().UTC()
	e := Event{Kind: KindEvent, ID: "bench:123456", Agent: "bench", Host: "host-1", Seq: 123456, Type: Create,
		Path: "/tmp/fso-bench/tree/d042/f0001234", ObservedAt: now, Source: SourceWatch, Size: &size, Mode: &mode,
		UID: &uid, GID: &gid, MTime: &now, SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			json.Marshal(e)
		}
	})
	b.Run("Marshal", func(b *testing.B) {
		for b.Loop() {
			e.Marshal()
		}
	})
}
