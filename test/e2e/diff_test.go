package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fso-project/fso/internal/auditlog"
	"github.com/fso-project/fso/internal/cli"
	"github.com/fso-project/fso/internal/event"
	"github.com/fso-project/fso/internal/history"
)

// diffRec is a diff record with the time of its event.
type diffRec struct {
	event.Diff
	EventType string
	At        time.Time
}

// readDiffs returns the diff records of path, in log order.
func readDiffs(t testing.TB, dir, path string) []diffRec {
	t.Helper()
	events := map[string]auditlog.Record{}
	var out []diffRec
	err := auditlog.Scan(t.Context(), dir, func(r auditlog.Record) error {
		switch r.Kind {
		case event.KindEvent:
			events[r.ID] = r
		case event.KindDiff:
			if r.Path != path {
				return nil
			}
			var d diffRec
			if err := json.Unmarshal(r.Raw, &d.Diff); err != nil {
				return err
			}
			d.Path = r.Path
			ev := events[d.EventID]
			d.EventType, d.At = ev.Type, ev.ObservedAt
			out = append(out, d)
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

func waitDiffs(t testing.TB, dir, path string, done func([]diffRec) bool) []diffRec {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ds := readDiffs(t, dir, path)
		if done(ds) {
			return ds
		}
		if time.Now().After(deadline) {
			t.Fatalf("diffs of %s not recorded after 60s: have %d", path, len(ds))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lastNew waits until the last diff of path has new_sha256 of content.
func waitContent(t testing.TB, dir, path string, content []byte) []diffRec {
	t.Helper()
	want := sum(content)
	return waitDiffs(t, dir, path, func(ds []diffRec) bool { return len(ds) > 0 && ds[len(ds)-1].NewSHA256 == want })
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// fso runs one fso command to completion and returns its output.
func fso(t testing.TB, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	if code := cli.Run(context.Background(), args, &out, &errb); code != 0 {
		return out.String(), fmt.Errorf("fso %v: exit %d: %s", args, code, errb.String())
	}
	return out.String(), nil
}

func reconstruct(t testing.TB, audit, path string, at time.Time) (string, error) {
	t.Helper()
	return fso(t, "audit", "reconstruct", path, "--audit-dir", audit, "--at", at.UTC().Format(time.RFC3339Nano))
}

// TestImportantDiffs: create, modify, an editor's atomic save, CRLF, no
// final newline, an empty file, delete; each yields a diff record linked to
// its event; show prints it; reconstruct rebuilds every version.
func TestImportantDiffs(t *testing.T) {
	s := startUp(t, "--important", "**/*.conf")
	p := filepath.Join(s.root, "app.conf")
	versions := []string{
		"a\nb\nc\n",
		"a\nB\nc\n",
		"a\r\nB\r\nc\r\nü 日本\r\n",
		"no final newline",
		"",
		"back\n",
	}
	var ds []diffRec
	for i, v := range versions {
		if i == 3 {
			// An editor's atomic save: write a temporary file, rename it over.
			tmp := filepath.Join(s.root, ".app.conf.swp")
			write(t, tmp, v)
			must(t, os.Rename(tmp, p))
		} else {
			write(t, p, v)
		}
		ds = waitContent(t, s.audit, p, []byte(v))
	}
	must(t, os.Remove(p))
	ds = waitDiffs(t, s.audit, p, func(ds []diffRec) bool { return len(ds) > 0 && ds[len(ds)-1].EventType == "delete" })
	s.p.stop(t)
	checkIntegrity(t, s.audit, readLog(t, s.audit))

	wantTypes := []string{"create", "modify", "modify", "rename", "modify", "modify", "delete"}
	if len(ds) != len(wantTypes) {
		for _, d := range ds {
			t.Logf("%s %s %q", d.EventID, d.EventType, d.Diff.Diff)
		}
		t.Fatalf("have %d diff records, want %d", len(ds), len(wantTypes))
	}
	for i, d := range ds {
		if d.EventType != wantTypes[i] {
			t.Errorf("diff %d: event type %s, want %s", i, d.EventType, wantTypes[i])
		}
		if d.Truncated || d.Binary {
			t.Errorf("diff %d: truncated %v binary %v (%s)", i, d.Truncated, d.Binary, d.Reason)
		}
	}
	if !strings.HasPrefix(ds[0].Diff.Diff, "--- /dev/null\n+++ "+p+"\n@@ -0,0 +1,3 @@\n+a\n") {
		t.Errorf("create diff:\n%s", ds[0].Diff.Diff)
	}
	if want := "--- " + p + "\n+++ " + p + "\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"; ds[1].Diff.Diff != want {
		t.Errorf("modify diff:\nhave\n%s\nwant\n%s", ds[1].Diff.Diff, want)
	}
	if !strings.Contains(ds[6].Diff.Diff, "+++ /dev/null\n") {
		t.Errorf("delete diff:\n%s", ds[6].Diff.Diff)
	}
	for i, v := range versions {
		got, err := reconstruct(t, s.audit, p, ds[i].At)
		if err != nil || got != v {
			t.Errorf("reconstruct at version %d: have %q, %v; want %q", i, got, err, v)
		}
	}
	if _, err := reconstruct(t, s.audit, p, ds[6].At); err == nil {
		t.Errorf("reconstruct after delete: no error")
	}
	out, err := fso(t, "audit", "show", ds[1].EventID, "--audit-dir", s.audit)
	if err != nil || !strings.Contains(out, "modify") || !strings.Contains(out, "    -b\n    +B\n") {
		t.Errorf("audit show: %v\n%s", err, out)
	}
	out, err = fso(t, "audit", "history", p, "--audit-dir", s.audit)
	if err != nil || strings.Count(out, "\n") != len(wantTypes) {
		t.Errorf("audit history: %v\n%s", err, out)
	}
	t.Logf("history:\n%s", out)
}

// TestDiffsAcrossRestart: the snapshot survives a restart, so the first
// diff after it is against the content recorded before.
func TestDiffsAcrossRestart(t *testing.T) {
	s := startUp(t, "--important", "*.conf")
	p := filepath.Join(s.root, "x.conf")
	write(t, p, "one\ntwo\nthree\n")
	waitContent(t, s.audit, p, []byte("one\ntwo\nthree\n"))
	s.p.stop(t)
	s.start(t, "--important", "*.conf")
	write(t, p, "one\n2\nthree\n")
	ds := waitContent(t, s.audit, p, []byte("one\n2\nthree\n"))
	s.p.stop(t)
	d := ds[len(ds)-1]
	if want := "--- " + p + "\n+++ " + p + "\n@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n"; d.Diff.Diff != want {
		t.Errorf("diff after restart:\nhave\n%s\nwant\n%s", d.Diff.Diff, want)
	}
}

// TestNoDiffSecrets: the content of a nodiff file appears nowhere in the
// audit log, the stream's store or the agent's state; its records carry
// hashes only.
func TestNoDiffSecrets(t *testing.T) {
	s := startUp(t, "--important", "**/*")
	const marker = "SECRET-MARKER-7f3a9c"
	key := filepath.Join(s.root, "server.key")
	env := filepath.Join(s.root, ".env")
	write(t, key, "-----BEGIN KEY-----\n"+marker+"\n")
	write(t, env, "TOKEN="+marker+"\n")
	waitContent(t, s.audit, key, []byte("-----BEGIN KEY-----\n"+marker+"\n"))
	ds := waitContent(t, s.audit, env, []byte("TOKEN="+marker+"\n"))
	s.p.stop(t)
	if d := ds[0]; d.Diff.Diff != "" || !d.Truncated || !strings.Contains(d.Reason, "nodiff") {
		t.Errorf("nodiff record: %+v", d.Diff)
	}
	filepath.WalkDir(s.data, func(p string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(marker)) {
			t.Errorf("%s holds the secret", p)
		}
		return nil
	})
}

// TestBinaryAndLimits: binary content gives hashes and sizes, a file over
// --diff-max gives a truncated record; a text version after either is a
// complete diff from /dev/null.
func TestBinaryAndLimits(t *testing.T) {
	s := startUp(t, "--important", "*.dat", "--diff-max", "1000")
	p := filepath.Join(s.root, "b.dat")
	bin := []byte("abc\x00def\n")
	must(t, os.WriteFile(p, bin, 0o644))
	waitContent(t, s.audit, p, bin)
	big := []byte(strings.Repeat("x\n", 1000))
	must(t, os.WriteFile(p, big, 0o644))
	waitContent(t, s.audit, p, big)
	must(t, os.WriteFile(p, []byte("text\n"), 0o644))
	ds := waitContent(t, s.audit, p, []byte("text\n"))
	s.p.stop(t)
	if d := ds[0]; !d.Binary || d.Diff.Diff != "" || d.NewSHA256 != sum(bin) || d.NewSize == nil || *d.NewSize != int64(len(bin)) {
		t.Errorf("binary record: %+v", d.Diff)
	}
	if d := ds[1]; !d.Truncated || d.Diff.Diff != "" || d.OldSHA256 != sum(bin) || d.NewSHA256 != sum(big) || !strings.Contains(d.Reason, "diff limit") {
		t.Errorf("over diff-max record: %+v", d.Diff)
	}
	if d := ds[2]; !strings.HasPrefix(d.Diff.Diff, "--- /dev/null\n") {
		t.Errorf("text after binary: %q", d.Diff.Diff)
	}
	if _, err := reconstruct(t, s.audit, p, ds[0].At); err == nil || !strings.Contains(err.Error(), sum(bin)) {
		t.Errorf("reconstruct binary version: want an error naming its sha256, have %v", err)
	}
	if got, err := reconstruct(t, s.audit, p, ds[2].At); err != nil || got != "text\n" {
		t.Errorf("reconstruct: %q, %v", got, err)
	}
}

// TestLargeDiffObjectStore: a diff larger than a message goes through the
// object store and is kept next to the audit log, referenced by hash.
func TestLargeDiffObjectStore(t *testing.T) {
	s := startUp(t, "--important", "*.txt")
	p := filepath.Join(s.root, "big.txt")
	var b bytes.Buffer
	for i := 0; b.Len() < 12<<20; i++ {
		fmt.Fprintf(&b, "line %d %s\n", i, strings.Repeat("y", i%50))
	}
	content := b.Bytes()
	must(t, os.WriteFile(p, content, 0o644))
	ds := waitContent(t, s.audit, p, content)
	changed := bytes.Replace(content, []byte("line 5 "), []byte("line five "), 1)
	must(t, os.WriteFile(p, changed, 0o644))
	ds = waitContent(t, s.audit, p, changed)
	s.p.stop(t)
	checkIntegrity(t, s.audit, readLog(t, s.audit))
	d := ds[0]
	if d.Object == "" || d.Diff.Diff != "" || d.DiffSize < 12<<20 || d.Truncated {
		t.Fatalf("large diff record: object %q, %d bytes inline, size %d, truncated %v", d.Object, len(d.Diff.Diff), d.DiffSize, d.Truncated)
	}
	if d := ds[1]; d.Object != "" || !strings.Contains(d.Diff.Diff, "+line five ") {
		t.Errorf("small diff after the large one: object %q diff %q", d.Object, d.Diff.Diff)
	}
	for i, want := range [][]byte{content, changed} {
		got, err := reconstruct(t, s.audit, p, ds[i].At)
		if err != nil || got != string(want) {
			t.Errorf("reconstruct version %d: %d bytes, %v; want %d bytes", i, len(got), err, len(want))
		}
	}
}

// TestDiffProperty: random edits (insert, delete, replace, truncate, CRLF,
// binary flips) of one important file through the real pipeline. Each
// version is waited for, so every one is recorded: reconstruct at each
// recorded time equals that version, and at the end equals the file.
func TestDiffProperty(t *testing.T) {
	s := startUp(t, "--important", "**/*.cfg")
	p := filepath.Join(s.root, "sub", "prop.cfg")
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	time.Sleep(200 * time.Millisecond) // the new directory is armed
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FSO_DIFF_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("edit sequence seed %d (replay with FSO_DIFF_SEED=%d)", seed, seed)
	r := rand.New(rand.NewPCG(7, seed))
	var versions [][]byte
	cur := []byte{}
	for range 40 {
		// A version equal to the last would be "recorded" at once, and the
		// next write would truncate the file while the agent still reads
		// this one: the agent would rightly record the truncated state.
		for next := mutate(r, cur); ; next = mutate(r, cur) {
			if !bytes.Equal(next, cur) {
				cur = next
				break
			}
		}
		must(t, os.WriteFile(p, cur, 0o644))
		versions = append(versions, cur)
		waitContent(t, s.audit, p, cur)
	}
	s.p.stop(t)
	ds := readDiffs(t, s.audit, p)
	bySum := map[string][]byte{}
	for _, v := range versions {
		bySum[sum(v)] = v
	}
	for i, d := range ds {
		want, ok := bySum[d.NewSHA256]
		if !ok {
			t.Fatalf("diff %d: new_sha256 %s is no version written", i, d.NewSHA256)
		}
		got, err := reconstruct(t, s.audit, p, d.At)
		if d.Binary {
			if err == nil || !strings.Contains(err.Error(), d.NewSHA256) {
				t.Errorf("diff %d (binary): reconstruct %v", i, err)
			}
			continue
		}
		if err != nil || got != string(want) {
			t.Fatalf("diff %d: reconstruct %q, %v; want %q", i, got, err, want)
		}
	}
	final, _ := os.ReadFile(p)
	if got, err := reconstruct(t, s.audit, p, time.Now()); diffIsText(final) && (err != nil || got != string(final)) {
		t.Errorf("final: reconstruct %q, %v; want %q", got, err, final)
	}
}

// TestDiffBurst: writes outpace the agent; whatever versions the agent
// saw, each diff applies to the content the previous one rebuilt, and the
// last equals the file.
func TestDiffBurst(t *testing.T) {
	s := startUp(t, "--important", "*.cfg")
	p := filepath.Join(s.root, "burst.cfg")
	r := rand.New(rand.NewPCG(9, 9))
	cur := []byte("start\n")
	for range 300 {
		cur = mutate(r, cur)
		if !diffIsText(cur) {
			cur = []byte("text again\n")
		}
		must(t, os.WriteFile(p, cur, 0o644))
	}
	waitContent(t, s.audit, p, cur)
	s.p.stop(t)
	n := 0
	err := history.Replay(t.Context(), s.audit, p, "", func(st history.Step) error {
		if st.HasDiff {
			n++
			if st.State != history.Text && !(st.Diff.Binary || st.Diff.Truncated) {
				return fmt.Errorf("step %s: %s (%s)", st.EventID, st.State, st.Reason)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := reconstruct(t, s.audit, p, time.Now())
	if err != nil || got != string(cur) {
		t.Errorf("final: %q, %v; want %q", got, err, cur)
	}
	t.Logf("%d diffs recorded for 300 writes", n)
}

func diffIsText(b []byte) bool { return bytes.IndexByte(b, 0) < 0 && utf8Valid(b) }

func utf8Valid(b []byte) bool { return strings.ToValidUTF8(string(b), "") == string(b) }

// mutate applies one random edit.
func mutate(r *rand.Rand, b []byte) []byte {
	binary := !diffIsText(b)
	b = bytes.TrimSuffix(b, binSuffix)
	lines := strings.SplitAfter(string(b), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	i := r.IntN(len(lines) + 1)
	word := fmt.Sprintf("line %d ü\n", r.IntN(1000))
	switch r.IntN(8) {
	case 0, 1: // insert
		lines = append(lines[:i], append([]string{word}, lines[i:]...)...)
	case 2: // delete
		if i < len(lines) {
			lines = append(lines[:i], lines[i+1:]...)
		}
	case 3: // replace
		if i < len(lines) {
			lines[i] = word
		}
	case 4: // CRLF
		if i < len(lines) {
			lines[i] = strings.TrimSuffix(strings.TrimSuffix(lines[i], "\n"), "\r") + "\r\n"
		}
	case 5: // no final newline
		if n := len(lines); n > 0 {
			lines[n-1] = strings.TrimSuffix(lines[n-1], "\n")
		}
	case 6: // truncate
		if r.IntN(4) == 0 {
			lines = nil
		} else {
			lines = append(lines, word)
		}
	case 7: // binary flip
		binary = !binary
	}
	out := []byte(strings.Join(lines, ""))
	if binary {
		out = append(out, binSuffix...)
	}
	return out
}

var binSuffix = []byte{0, 1, 2, '\n'}

// BenchmarkImportantBurst: one modification to each of 100 important files,
// until all 100 diffs are in the audit log.
func BenchmarkImportantBurst(b *testing.B) {
	s := startUp(b, "--important", "*.conf")
	paths := make([]string, 100)
	for i := range paths {
		paths[i] = filepath.Join(s.root, fmt.Sprintf("f%03d.conf", i))
		os.WriteFile(paths[i], []byte(strings.Repeat("line\n", 200)), 0o644)
	}
	for _, p := range paths {
		waitContent(b, s.audit, p, []byte(strings.Repeat("line\n", 200)))
	}
	round := 0
	for b.Loop() {
		round++
		content := []byte(strings.Repeat("line\n", 100) + fmt.Sprintf("round %d\n", round) + strings.Repeat("line\n", 100))
		for _, p := range paths {
			os.WriteFile(p, content, 0o644)
		}
		waitLog(b, s.audit, time.Minute, func(recs []rec) bool {
			n := 0
			for _, r := range recs {
				if r.Kind == "diff" {
					n++
				}
			}
			return n >= 100*(round+1)
		})
	}
	b.ReportMetric(float64(100*b.N)/b.Elapsed().Seconds(), "diffs/s")
	s.p.stop(b)
}
