package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// streamMsgs is how many messages the FSO stream holds.
func streamMsgs(t *testing.T, url string) uint64 {
	t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err != nil {
		return 0
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "FSO")
	if err != nil {
		return 0
	}
	return s.CachedInfo().State.Msgs
}

func waitProbe(t *testing.T, root, audit, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		p := filepath.Join(root, fmt.Sprintf("%s-%d.conf", name, i))
		write(t, p, "probe")
		time.Sleep(200 * time.Millisecond)
		if eventKeys(readLog(t, audit))["create "+p] > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never recorded", p)
		}
	}
}

// The system as separate processes: filters apply, restarts of agent and
// recorder keep seq and duplicate nothing, and events the broker acked
// survive kill -9 of the broker (and of the agent that sent them).
func TestSeparateProcesses(t *testing.T) {
	addr := freePort(t)
	url := "nats://" + addr
	bdata, state, audit, root := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	brk := startProc(t, "broker", "--data", bdata, "--listen", addr)
	agentArgs := []string{"agent", "--server", url, "--id", "web-1", "--state", state, "--watch", root,
		"--include", "**/*.conf", "--exclude", "**/*.swp", "--events", "create,modify,delete,rename"}
	ag := startProc(t, agentArgs...)
	rec := startProc(t, "recorder", "--server", url, "--audit-dir", audit)
	waitProbe(t, root, audit, "probe")

	conf, swp, txt := filepath.Join(root, "x.conf"), filepath.Join(root, "x.conf.swp"), filepath.Join(root, "x.txt")
	write(t, swp, "s")
	write(t, txt, "t")
	write(t, conf, "c")
	must(t, chmod(conf))
	waitLog(t, audit, 10*time.Second, has(nil, "create "+conf))

	// Graceful restarts of both.
	rec.stop(t)
	ag.stop(t)
	ag = startProc(t, agentArgs...)
	rec = startProc(t, "recorder", "--server", url, "--audit-dir", audit)
	waitProbe(t, root, audit, "again")

	// Recorder down: the broker holds what the agent publishes.
	rec.stop(t)
	base := streamMsgs(t, url)
	const n = 100
	for i := range n {
		write(t, filepath.Join(root, fmt.Sprintf("k%03d.conf", i)), "k")
	}
	deadline := time.Now().Add(30 * time.Second)
	for streamMsgs(t, url) < base+n {
		if time.Now().After(deadline) {
			t.Fatalf("stream holds %d messages, want %d", streamMsgs(t, url), base+n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Only the broker has them now: kill the agent, then the broker, hard.
	ag.kill9(t)
	brk.kill9(t)
	brk = startProc(t, "broker", "--data", bdata, "--listen", addr)
	rec = startProc(t, "recorder", "--server", url, "--audit-dir", audit)
	want := make([]string, n)
	for i := range n {
		want[i] = "create " + filepath.Join(root, fmt.Sprintf("k%03d.conf", i))
	}
	waitLog(t, audit, 30*time.Second, has(nil, want...))
	rec.stop(t)
	brk.stop(t)

	recs := readLog(t, audit)
	checkIntegrity(t, audit, recs)
	k := eventKeys(recs)
	for _, w := range want {
		if k[w] != 1 {
			t.Errorf("%s recorded %d times", w, k[w])
		}
	}
	for key := range k {
		if filepath.Ext(key) != ".conf" {
			t.Errorf("filtered path recorded: %s", key)
		}
		if key[:6] == "attrib" {
			t.Errorf("attrib recorded although --events excludes it: %s", key)
		}
	}
}

func chmod(p string) error { return os.Chmod(p, 0o600) }

// With no broker for a long time the spool fills; the agent then drops
// what it cannot keep and says so with a gap record naming the exact seqs,
// and the audit log accounts for every seq.
func TestSpoolBoundGap(t *testing.T) {
	addr := freePort(t)
	url := "nats://" + addr
	bdata, state, audit, root := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	brk := startProc(t, "broker", "--data", bdata, "--listen", addr)
	ag := startProc(t, "agent", "--server", url, "--id", "tiny", "--state", state, "--watch", root, "--spool-max-bytes", "65536")
	recp := startProc(t, "recorder", "--server", url, "--audit-dir", audit)
	waitProbe(t, root, audit, "probe")
	// Broker and recorder down: the agent spools until its bound, then
	// drops with a gap record.
	recp.stop(t)
	brk.kill9(t)
	const n = 500
	for i := range n {
		write(t, filepath.Join(root, fmt.Sprintf("f%03d", i)), "x")
	}
	// Wait until the agent has dropped some (its log says so); the declared
	// loss must then survive the agent dying before it could report it.
	ag.waitOutput(t, "changes dropped", "the agent never reached its spool bound")
	ag.kill9(t)
	ag = startProc(t, "agent", "--server", url, "--id", "tiny", "--state", state, "--watch", root, "--spool-max-bytes", "65536")
	time.Sleep(500 * time.Millisecond)
	brk = startProc(t, "broker", "--data", bdata, "--listen", addr)
	recp = startProc(t, "recorder", "--server", url, "--audit-dir", audit)
	var gaps []rec
	waitLog(t, audit, 30*time.Second, func(recs []rec) bool {
		gaps = gaps[:0]
		for _, r := range recs {
			if r.Kind == "gap" {
				gaps = append(gaps, r)
			}
		}
		return len(gaps) > 0
	})
	// Files written later still get through.
	last := filepath.Join(root, "after")
	write(t, last, "x")
	waitLog(t, audit, 30*time.Second, has(nil, "create "+last))
	ag.stop(t)
	recp.stop(t)
	brk.stop(t)
	recs := readLog(t, audit)
	checkIntegrity(t, audit, recs) // every seq is recorded or inside a gap record
	// Each file is recorded, or one of the seqs a gap record declares lost
	// was its change.
	files, declared := 0, uint64(0)
	for _, r := range recs {
		if r.Kind == "event" && r.Type == "create" && filepath.Dir(r.path) == root && strings.HasPrefix(filepath.Base(r.path), "f") {
			files++
		}
		if r.Kind == "gap" {
			declared += r.ToSeq - r.FromSeq + 1
		}
	}
	if uint64(files)+declared < n {
		t.Fatalf("%d files recorded and %d seqs declared lost: %d changes unaccounted for", files, declared, n-files-int(declared))
	}
	t.Logf("%d records, %d gap records; %d files recorded, %d seqs declared lost", len(recs), len(gaps), files, declared)
}

// agentStatus reads an agent's status from the broker.
func agentStatus(t *testing.T, url, id string) map[string]any {
	t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err != nil {
		return nil
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, "fso-agents")
	if err != nil {
		return nil
	}
	e, err := kv.Get(ctx, "status."+id)
	if err != nil {
		return nil
	}
	var st map[string]any
	json.Unmarshal(e.Value(), &st)
	return st
}

// A root that does not exist yet is reported in the agent's status while
// the other roots work; once it appears it is watched, and what it holds
// is reported.
func TestMissingRootReportedThenWatched(t *testing.T) {
	addr := freePort(t)
	data, ok := t.TempDir(), t.TempDir()
	missing := filepath.Join(t.TempDir(), "later")
	audit := filepath.Join(data, "audit")
	p := runFSO(t, "up", "--data", data, "--watch", ok, "--watch", missing, "--listen", addr, "--id", "roots")
	waitProbe(t, ok, audit, "ok")
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := agentStatus(t, "nats://"+addr, "roots")
		if st != nil && strings.Contains(fmt.Sprint(st["roots"]), "no such file") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status does not report the missing root: %v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	must(t, os.Mkdir(missing, 0o755))
	early := filepath.Join(missing, "early")
	write(t, early, "x")
	waitLog(t, audit, 20*time.Second, has(nil, "create "+early))
	late := filepath.Join(missing, "late")
	time.Sleep(500 * time.Millisecond)
	write(t, late, "x")
	waitLog(t, audit, 20*time.Second, has(nil, "create "+late))
	p.stop(t)
	checkIntegrity(t, audit, readLog(t, audit))
}

// A diff too large for one message, made while the broker is away, is not
// waited for: the diff record says why it is missing, and the next diff of
// the file is a full copy, so reconstruct stays right.
func TestLargeDiffWhileBrokerAway(t *testing.T) {
	addr := freePort(t)
	url := "nats://" + addr
	bdata, state, audit, root := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	brk := startProc(t, "broker", "--data", bdata, "--listen", addr)
	ag := startProc(t, "agent", "--server", url, "--id", "big", "--state", state, "--watch", root, "--important", "*.txt")
	recp := startProc(t, "recorder", "--server", url, "--audit-dir", audit)
	waitProbe(t, root, audit, "probe")
	brk.kill9(t)
	p := filepath.Join(root, "big.txt")
	big := bytes.Repeat([]byte("0123456789abcdef\n"), (12<<20)/17)
	must(t, os.WriteFile(p, big, 0o644))
	// The broker stays away until the agent has made the diff (its log says
	// so: hashing and diffing 12 MB takes a while under -race).
	ag.waitOutput(t, "broker not connected", "the agent never tried to store the large diff")
	brk = startProc(t, "broker", "--data", bdata, "--listen", addr)
	final := append([]byte("small now\n"), big[:100]...)
	var diffs []map[string]any
	// Keep rewriting until the small version's diff is recorded.
	waitLog(t, audit, 60*time.Second, func(recs []rec) bool {
		diffs = diffs[:0]
		for _, l := range rawLines(t, audit) {
			if l["kind"] == "diff" && l["path"] == p {
				diffs = append(diffs, l)
			}
		}
		if len(diffs) < 2 {
			if len(diffs) == 1 {
				os.WriteFile(p, final, 0o644)
			}
			return false
		}
		return true
	})
	ag.stop(t)
	recp.stop(t)
	brk.stop(t)
	first := diffs[0]
	if first["truncated"] != true || !strings.Contains(fmt.Sprint(first["reason"]), "broker not connected") {
		t.Fatalf("diff made while the broker was away: truncated %v reason %q; want truncated, naming the broker", first["truncated"], first["reason"])
	}
	if d := fmt.Sprint(diffs[len(diffs)-1]["diff"]); !strings.HasPrefix(d, "--- /dev/null") || !strings.Contains(d, "+small now") {
		t.Fatalf("the diff after a missing one is not a full copy: %.200q", d)
	}
	checkIntegrity(t, audit, readLog(t, audit))
}
