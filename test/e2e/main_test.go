// Package e2e drives the whole product through cli.Run, in-process and as
// separate processes (this test binary re-executed as fso), against real
// embedded NATS servers on random loopback ports.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fso-project/fso/internal/auditlog"
	"github.com/fso-project/fso/internal/cli"
)

// TestMain lets a test start this binary as the fso command: with
// FSO_E2E_MAIN=1 it runs cli.Run on its arguments instead of the tests.
func TestMain(m *testing.M) {
	if os.Getenv("FSO_E2E_MAIN") == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// inproc is fso running inside the test process.
type inproc struct {
	cancel context.CancelFunc
	done   chan int
	out    *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runFSO starts `fso args...` in-process; stop() cancels it (as Ctrl-C
// would) and checks it exits 0.
func runFSO(t testing.TB, args ...string) *inproc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &inproc{cancel: cancel, done: make(chan int, 1), out: &syncBuffer{}}
	go func() { p.done <- cli.Run(ctx, append([]string{"--log-level", "warn"}, args...), p.out, p.out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
		}
	})
	return p
}

func (p *inproc) stop(t testing.TB) {
	t.Helper()
	p.cancel()
	select {
	case code := <-p.done:
		p.done <- code
		if code != 0 {
			t.Fatalf("fso exited %d:\n%s", code, p.out.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("fso did not stop within 60s:\n%s", p.out.String())
	}
}

// proc is fso as a separate process.
type proc struct {
	cmd *exec.Cmd
	out *syncBuffer
}

func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"--log-level", "warn"}, args...)...)
	cmd.Env = append(os.Environ(), "FSO_E2E_MAIN=1")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, out: out}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return p
}

// waitOutput waits up to a minute for the process to log substr; it fails
// the test with why and the log otherwise.
func (p *proc) waitOutput(t *testing.T, substr, why string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(p.out.String(), substr); {
		if time.Now().After(deadline) {
			t.Fatalf("%s:\n%s", why, p.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *proc) kill9(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
}

func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	errc := make(chan error, 1)
	go func() { errc <- p.cmd.Wait() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("%v exited: %v\n%s", p.cmd.Args, err, p.out.String())
		}
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		t.Fatalf("%v did not stop:\n%s", p.cmd.Args, p.out.String())
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// rec is the part of an audit record the tests look at.
type rec struct {
	Kind       string    `json:"kind"`
	ID         string    `json:"id"`
	Agent      string    `json:"agent"`
	Seq        uint64    `json:"seq"`
	FromSeq    uint64    `json:"from_seq"`
	ToSeq      uint64    `json:"to_seq"`
	Type       string    `json:"type"`
	Path       string    `json:"path"`
	OldPath    string    `json:"old_path"`
	IsDir      bool      `json:"is_dir"`
	Source     string    `json:"source"`
	SHA256     string    `json:"sha256"`
	Size       *int64    `json:"size"`
	Mode       *uint32   `json:"mode"`
	ObservedAt time.Time `json:"observed_at"`
	EmittedAt  time.Time `json:"emitted_at"`
	RecordedAt time.Time `json:"recorded_at"`
	// From auditlog.Record: paths decoded losslessly.
	path, oldPath string
}

func readLog(t testing.TB, dir string) []rec {
	t.Helper()
	var out []rec
	err := auditlog.Scan(t.Context(), dir, func(r auditlog.Record) error {
		var x rec
		if err := json.Unmarshal(r.Raw, &x); err != nil {
			return fmt.Errorf("%s:%d: %w", r.Segment, r.Line, err)
		}
		x.path, x.oldPath = r.Path, r.OldPath
		out = append(out, x)
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read audit log: %v", err)
	}
	return out
}

// waitLog polls the audit log until done says it holds what the test
// waits for, and returns it. It fails the test after timeout.
func waitLog(t testing.TB, dir string, timeout time.Duration, done func([]rec) bool) []rec {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		recs := readLog(t, dir)
		if done(recs) {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit log not complete after %v: %d records; last: %s", timeout, len(recs), tailDesc(recs, 5))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tailDesc(recs []rec, n int) string {
	var b strings.Builder
	for _, r := range recs[max(0, len(recs)-n):] {
		fmt.Fprintf(&b, "\n  %s %s %q %q", r.Kind, r.Type, r.path, r.oldPath)
	}
	return b.String()
}

// events returns the event records, keyed "type path" (rename: "rename old -> new").
func eventKeys(recs []rec) map[string]int {
	m := map[string]int{}
	for _, r := range recs {
		if r.Kind != "event" {
			continue
		}
		k := r.Type + " " + r.path
		if r.Type == "rename" {
			k = "rename " + r.oldPath + " -> " + r.path
		}
		m[k]++
	}
	return m
}

// checkIntegrity asserts the log verifies and each agent's seqs are
// 1..n exactly once, in order.
func checkIntegrity(t *testing.T, dir string, recs []rec) {
	t.Helper()
	rep, err := auditlog.Verify(t.Context(), dir, nil)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if rep.Problem != nil {
		t.Fatalf("verify: %+v", *rep.Problem)
	}
	for a, ar := range rep.Agents {
		if ar.MissingCount != 0 {
			t.Fatalf("agent %s: missing seqs %v", a, ar.Missing)
		}
	}
	last := map[string]uint64{}
	for _, r := range recs {
		if r.Agent == "" || r.Seq == 0 {
			continue
		}
		if r.Kind == "gap" && r.FromSeq == last[r.Agent]+1 && r.Seq == r.ToSeq+1 {
			last[r.Agent] = r.Seq // the gap accounts for the seqs it names
			continue
		}
		if r.Seq != last[r.Agent]+1 {
			t.Fatalf("agent %s: seq %d follows %d (want %d): duplicate or out of order", r.Agent, r.Seq, last[r.Agent], last[r.Agent]+1)
		}
		last[r.Agent] = r.Seq
	}
}

func write(t testing.TB, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// upSystem starts `fso up` on a temp tree and waits until it watches.
type upSystem struct {
	root, data, audit string
	p                 *inproc
}

func startUp(t testing.TB, extra ...string) *upSystem {
	t.Helper()
	s := &upSystem{root: t.TempDir(), data: t.TempDir()}
	s.audit = filepath.Join(s.data, "audit")
	s.start(t, extra...)
	return s
}

func (s *upSystem) start(t testing.TB, extra ...string) {
	t.Helper()
	args := append([]string{"up", "--data", s.data, "--watch", s.root, "--listen", "127.0.0.1:0", "--id", "e2e"}, extra...)
	s.p = runFSO(t, args...)
	s.waitReady(t)
}

// waitReady writes probe files until one is recorded: then the watch is armed.
func (s *upSystem) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		probe := filepath.Join(s.root, fmt.Sprintf(".probe-%d", i))
		write(t, probe, "probe")
		time.Sleep(100 * time.Millisecond)
		for _, r := range readLog(t, s.audit) {
			if r.path == probe {
				os.Remove(probe)
				return
			}
		}
		os.Remove(probe)
		if time.Now().After(deadline) {
			t.Fatalf("fso up not ready after 30s:\n%s", s.p.out.String())
		}
	}
}
