package baseline_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fso-project/fso/internal/baseline"
)

// TestPackedModel checks Packed against a plain map through random
// changes: enough of them that it repacks several times, on paths that
// share prefixes and hold the bytes a sort could trip over.
func TestPackedModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"a", "b", "a!", "a0", "é", "x\n", "\xff", "ab", "a b"}
	randPath := func() string {
		p := "/r"
		for range 1 + rng.IntN(4) {
			p += "/" + names[rng.IntN(len(names))]
		}
		return p
	}
	model := baseline.Baseline{}
	for range 3000 {
		model[randPath()] = baseline.Entry{Ino: rng.Uint64(), Size: rng.Int64N(1 << 40), Mtime: -rng.Int64(), Ctime: rng.Int64(), Mode: rng.Uint32(), UID: rng.Uint32()}
	}
	p := baseline.Pack(model)
	check := func(step int, what string) {
		t.Helper()
		if got := p.Unpack(); !maps.Equal(got, model) {
			t.Fatalf("step %d, after %s: %d entries, want %d", step, what, len(got), len(model))
		}
		for range 20 {
			q := randPath()
			e, ok := p.Get(q)
			we, wok := model[q]
			if ok != wok || e != we {
				t.Fatalf("step %d, after %s: Get(%q) = %v %v, want %v %v", step, what, q, e, ok, we, wok)
			}
		}
	}
	check(0, "Pack")
	for step := 1; step <= 6000; step++ {
		q := randPath()
		var what string
		switch r := rng.IntN(10); {
		case r < 6:
			e := baseline.Entry{Ino: uint64(step), Ctime: int64(step), UID: uint32(rng.IntN(3))}
			p.Set(q, e)
			model[q] = e
			what = "Set " + q
		case r < 8:
			tree := rng.IntN(2) == 0
			p.Delete(q, tree)
			for k := range model {
				if k == q || tree && strings.HasPrefix(k, q+"/") {
					delete(model, k)
				}
			}
			what = fmt.Sprintf("Delete %q tree=%v", q, tree)
		default:
			to := randPath()
			if to == q || strings.HasPrefix(to, q+"/") {
				continue // no file system moves a directory into itself
			}
			p.Rename(q, to)
			moved := baseline.Baseline{}
			for k, e := range model {
				if k == q || strings.HasPrefix(k, q+"/") {
					moved[to+k[len(q):]] = e
					delete(model, k)
				}
			}
			maps.Copy(model, moved)
			what = fmt.Sprintf("Rename %q %q", q, to)
		}
		if step%50 == 0 {
			check(step, what)
		}
	}
	check(-1, "the last change")
	if p.Len() != len(model) {
		t.Fatalf("Len %d, want %d", p.Len(), len(model))
	}

	path := filepath.Join(t.TempDir(), "baseline")
	if err := p.Save(path); err != nil {
		t.Fatal(err)
	}
	loaded, err := baseline.Load(path)
	if err != nil || !maps.Equal(loaded, model) {
		t.Fatalf("saved and loaded: %d entries, %v; want %d", len(loaded), err, len(model))
	}
}

// TestPackedSmall holds a 100,000-directory baseline in a third of the
// bytes the map needs, as the agent's memory budget counts on.
func TestPackedSmall(t *testing.T) {
	b := baseline.Baseline{}
	for i := range 100_000 {
		b[fmt.Sprintf("/var/lib/fso-bench/deep-100000/root/t%04d/s%04d", i/316, i%316)] = baseline.Entry{
			Ino: 1_000_000 + uint64(i), Size: 4096, Mtime: 1_790_000_000_123_456_789 + int64(i), Ctime: 1_790_000_000_123_456_789 + int64(i), Mode: 0o40755}
	}
	p := baseline.Pack(b)
	if n := p.Bytes(); n > 40*len(b) {
		t.Fatalf("packed %d entries into %d bytes (%d each), want at most 40 each", len(b), n, n/len(b))
	} else {
		t.Logf("%d entries, %d bytes each", len(b), n/len(b))
	}
}

// BenchmarkPackedChurn is the agent's use of its baseline in a burst of
// creates on a 100,000-entry tree: a lookup and a set per change, with the
// repacks that come with them.
func BenchmarkPackedChurn(b *testing.B) {
	base := baseline.Baseline{}
	for i := range 100_000 {
		base[fmt.Sprintf("/srv/data/t%04d/s%04d", i/316, i%316)] = baseline.Entry{Ino: uint64(i), Mtime: int64(i) * 1000, Ctime: int64(i) * 1000, Mode: 0o40755}
	}
	p := baseline.Pack(base)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		path := fmt.Sprintf("/srv/data/t%04d/new%07d", i%316, i)
		p.Get(path)
		p.Set(path, baseline.Entry{Ino: uint64(i), Size: 1, Mtime: int64(i), Ctime: int64(i), Mode: 0o100644})
	}
}
