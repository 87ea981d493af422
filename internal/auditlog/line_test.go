package auditlog

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"testing"
	"time"
)

var fuzzTime = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func FuzzVerifyLine(f *testing.F) {
	valid, _ := appendLine(nil, []byte(`{"kind":"event","agent":"a","seq":1,"path":"/x"}`), fuzzTime, &zeroHash)
	f.Add(valid[:len(valid)-1])
	f.Add(valid[:len(valid)/2])
	f.Add([]byte(`{"kind":"event","path":"a\"b\\","nested":{"x":[1,2,{"y":"}"}]},"seq":18446744073709551615}`))
	f.Add([]byte(`{"a":1}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"h\u0061sh":1}`))
	f.Add([]byte(`{"a":"\\\\\"","b":"\u00e9"}`))
	f.Add([]byte(`,"recorded_at":"x","prev":"` + string(zeroHash[:]) + `","hash":"` + string(zeroHash[:]) + `"}`))
	f.Add(make([]byte, 200))
	f.Fuzz(func(t *testing.T, line []byte) {
		// Reading never panics, whatever the bytes.
		if p, err := splitLine(line); err == nil {
			p.sealed()
		}
		var fl fields
		scanFields(line, &fl)
		parseRecord(line)

		// A record the writer accepts makes a line that reads back.
		if validateRecord(line) != nil {
			return
		}
		out, h := appendLine(nil, line, fuzzTime, &zeroHash)
		body := out[:len(out)-1]
		p, err := splitLine(body)
		if err != nil || !p.sealed() || !bytes.Equal(p.hash, h[:]) || !bytes.Equal(p.prev, zeroHash[:]) {
			t.Fatalf("line of %q does not verify: %v", line, err)
		}
		if !json.Valid(out) {
			t.Fatalf("line of %q is not JSON", line)
		}
		// The chain fields are at the top level exactly once.
		counts := topLevelKeys(t, body)
		for _, k := range []string{"recorded_at", "prev", "hash"} {
			if counts[k] != 1 {
				t.Fatalf("line of %q has %d top-level %q", line, counts[k], k)
			}
		}
		r, err := parseRecord(body)
		if err != nil || r.Hash != string(h[:]) || !r.RecordedAt.Equal(fuzzTime) {
			t.Fatalf("line of %q parses as %+v, %v", line, r, err)
		}
	})
}

// topLevelKeys counts the top-level keys of a JSON object, with encoding/json.
func topLevelKeys(t *testing.T, b []byte) map[string]int {
	dec := json.NewDecoder(bytes.NewReader(b))
	counts := map[string]int{}
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		counts[k.(string)]++
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
	return counts
}

func TestScanFieldsMatchesEncodingJSON(t *testing.T) {
	line := []byte(`{"kind":"ev\u0065nt", "nested":{"agent":"no","seq":9},"agent":"a\"b","list":["x",{"a":"]"}],"seq": 42 ,"from_seq":1e3,"t":true,"n":null,"path":"caf\u00e9"}`)
	var f fields
	if err := scanFields(line, &f); err != nil {
		t.Fatal(err)
	}
	var want struct {
		Kind, Agent, Path string
		Seq               uint64
	}
	if err := json.Unmarshal(line, &want); err != nil {
		t.Fatal(err)
	}
	seq, _ := jsonUint(f.seq)
	have := struct {
		Kind, Agent, Path string
		Seq               uint64
	}{str(f.kind), str(f.agent), str(f.path), seq}
	if !reflect.DeepEqual(have, want) {
		t.Errorf("have %+v, want %+v", have, want)
	}
	if _, ok := jsonUint(f.fromSeq); ok {
		t.Error("1e3 taken for a seq")
	}
}

func TestIntervals(t *testing.T) {
	var s intervals
	steps := []struct {
		lo, hi  uint64
		overlap bool
		want    intervals
	}{
		{5, 5, false, intervals{{5, 5}}},
		{6, 6, false, intervals{{5, 6}}},
		{9, 10, false, intervals{{5, 6}, {9, 10}}},
		{1, 2, false, intervals{{1, 2}, {5, 6}, {9, 10}}},
		{6, 6, true, intervals{{1, 2}, {5, 6}, {9, 10}}},
		{3, 4, false, intervals{{1, 6}, {9, 10}}},
		{8, 20, true, intervals{{1, 6}, {8, 20}}},
		{7, 7, false, intervals{{1, 20}}},
		{^uint64(0), ^uint64(0), false, intervals{{1, 20}, {^uint64(0), ^uint64(0)}}},
	}
	for _, st := range steps {
		if overlap := s.add(st.lo, st.hi); overlap != st.overlap || !reflect.DeepEqual(s, st.want) {
			t.Fatalf("add(%d, %d) = %v, %v; want %v, %v", st.lo, st.hi, overlap, s, st.overlap, st.want)
		}
	}
}

func TestLineReaderLongLines(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 3*readBufferSize)
	in := append(append([]byte("a\n"), long...), "\nend"...)
	lr := newLineReader(bytes.NewReader(in))
	want := []struct {
		n        int64
		complete bool
	}{{2, true}, {int64(len(long)) + 1, true}, {3, false}}
	for i, w := range want {
		line, n, complete, err := lr.next()
		if err != nil || n != w.n || complete != w.complete || int64(len(line)) != n {
			t.Fatalf("line %d: have %d bytes (n %d), complete %v, %v; want %d, %v", i+1, len(line), n, complete, err, w.n, w.complete)
		}
	}
	if _, _, _, err := lr.next(); err != io.EOF {
		t.Fatalf("have %v, want EOF", err)
	}
}
