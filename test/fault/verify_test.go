package fault

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A log written by a recorder with signed checkpoints (every 100 records),
// then tampered with in each way an attacker could: `fso audit verify
// --pubkey K --server URL` exits non-zero naming the first bad line and why.
func TestVerifyTamper(t *testing.T) {
	addr := freePort(t)
	s := &system{t: t, urls: "nats://" + addr}
	s.brokers = []*proc{start(t, "broker", "broker", "--data", t.TempDir(), "--listen", addr)}
	keyFile := filepath.Join(t.TempDir(), "recorder.key")
	s.startClients(t, filepath.Join(t.TempDir(), "audit"), "--key", keyFile, "--checkpoint-every", "100")
	w := startWriter(t, s.root, "burst", 500, time.Millisecond)
	truth := w.all()
	out, err := exec.Command(fsoBin, "recorder", "pubkey", "--key", keyFile).Output()
	if err != nil || !bytes.Contains(out, []byte("PUBLIC KEY")) {
		t.Fatalf("fso recorder pubkey: %v: %s", err, out)
	}
	pub := filepath.Join(t.TempDir(), "recorder.pub")
	if err := os.WriteFile(pub, out, 0o644); err != nil {
		t.Fatal(err)
	}
	waitRecorded(t, s.audit, truth, 60*time.Second)
	s.agent.stop(t)
	s.recorder.stop(t) // writes and publishes a last checkpoint
	check(t, "none (tamper test's log)", s.audit, truth, "--pubkey", pub, "--server", s.urls)

	seg := "00000001.jsonl"
	lines := readLines(t, filepath.Join(s.audit, seg))
	n := len(lines)
	if n < 500 || !bytes.Contains(lines[n-1], []byte(`"kind":"checkpoint"`)) {
		t.Fatalf("%d lines, last %s: want a final checkpoint", n, lines[n-1])
	}
	// An attacker can compute sha256 but has no signing key.
	tests := []struct {
		name   string
		tamper func(l [][]byte) [][]byte
		want   string // in the one-line error
	}{
		{"edited", func(l [][]byte) [][]byte {
			l[9] = bytes.Replace(l[9], []byte("burst-"), []byte("burzt-"), 1)
			return l
		}, seg + " line 10: edited"},
		{"deleted", func(l [][]byte) [][]byte { return append(l[:9:9], l[10:]...) }, seg + " line 10: chain broken: deleted"},
		{"inserted", func(l [][]byte) [][]byte {
			forged := reseal(bytes.Replace(l[9], []byte("burst-"), []byte("forged-"), 1), hashOf(l[8]))
			return append(l[:9:9], append([][]byte{forged}, l[9:]...)...)
		}, seg + " line 11: chain broken: inserted"},
		{"reordered", func(l [][]byte) [][]byte {
			l[9], l[10] = l[10], l[9]
			return l
		}, seg + " line 10: chain broken: reordered"},
		{"edited and re-chained", func(l [][]byte) [][]byte {
			l[9] = bytes.Replace(l[9], []byte("burst-"), []byte("burzt-"), 1)
			for i := 9; i < len(l); i++ {
				l[i] = reseal(l[i], hashOf(l[i-1]))
			}
			return l
		}, ": checkpoint mismatch"},
		{"bad signature", func(l [][]byte) [][]byte {
			last := l[len(l)-1]
			i := bytes.Index(last, []byte(`"sig":"`)) + len(`"sig":"`)
			last[i] ^= 1 // still base64
			l[len(l)-1] = reseal(last, hashOf(l[len(l)-2]))
			return l
		}, seg + " line " + itoa(n) + ": bad signature"},
		{"truncated", func(l [][]byte) [][]byte { return l[:n-3] }, ": truncated"},
	}
	for _, tc := range tests {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			dir := t.TempDir()
			l := readLines(t, filepath.Join(s.audit, seg))
			writeLines(t, filepath.Join(dir, seg), tc.tamper(l))
			cmd := exec.Command(fsoBin, "audit", "verify", "--audit-dir", dir, "--pubkey", pub, "--server", s.urls)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Errorf("fso audit verify: %v, want non-zero exit and %q in:\n%s", err, tc.want, out)
			}
			t.Logf("%s: %s", tc.name, lastLine(out))
		})
	}
}

func lastLine(b []byte) string { return tail(string(b), 1) }

func itoa(n int) string { return strconv.Itoa(n) }

func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var l [][]byte
	for _, x := range bytes.SplitAfter(b, []byte("\n")) {
		if len(x) > 0 {
			l = append(l, x)
		}
	}
	return l
}

func writeLines(t *testing.T, path string, l [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(l, nil), 0o640); err != nil {
		t.Fatal(err)
	}
}

// hashOf is the hash field of a line.
func hashOf(line []byte) string {
	i := bytes.LastIndex(line, []byte(`,"hash":"`))
	return string(line[i+len(`,"hash":"`) : i+len(`,"hash":"`)+64])
}

// reseal gives line the prev field prev and a hash that matches: what
// anyone can compute.
func reseal(line []byte, prev string) []byte {
	line = bytes.TrimSuffix(line, []byte("\n"))
	payload := line[:bytes.LastIndex(line, []byte(`,"hash":"`))]
	p := bytes.LastIndex(payload, []byte(`,"prev":"`))
	payload = append(append([]byte(nil), payload[:p]...), []byte(`,"prev":"`+prev+`"`)...)
	sum := sha256.Sum256(payload)
	return append(payload, []byte(`,"hash":"`+hex.EncodeToString(sum[:])+`"}`+"\n")...)
}
