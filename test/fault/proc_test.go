package fault

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// proc is one fso process in its own process group.
type proc struct {
	name string
	args []string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
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

// start runs `fso args...`; t.Cleanup kills it (and its group) if it still runs.
// Its output is logged when the test fails.
func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, args: args, out: &syncBuffer{}}
	p.launch(t)
	t.Cleanup(func() {
		p.signal(syscall.SIGCONT)
		p.kill()
		if t.Failed() {
			t.Logf("--- %s output:\n%s", p.name, p.out.String())
		}
	})
	return p
}

func (p *proc) launch(t *testing.T) {
	t.Helper()
	level := os.Getenv("FSO_FAULT_LOG_LEVEL") // debug a failing test with info
	if level == "" {
		level = "warn"
	}
	p.cmd = exec.Command(fsoBin, append([]string{"--log-level", level}, p.args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	p.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		cmd.Wait()
		close(done)
	}(p.cmd, p.done)
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) signal(sig syscall.Signal) {
	if p.running() {
		syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

func (p *proc) kill() {
	p.signal(syscall.SIGKILL)
	<-p.done
}

// kill9 kills the process group with SIGKILL and waits for it.
func (p *proc) kill9(t *testing.T) {
	t.Helper()
	t.Logf("kill -9 %s (pid %d)", p.name, p.cmd.Process.Pid)
	p.kill()
}

// restart starts the process again with the same arguments.
func (p *proc) restart(t *testing.T) {
	t.Helper()
	if p.running() {
		t.Fatalf("restart %s: still running", p.name)
	}
	p.out.Write([]byte("--- restart ---\n"))
	p.launch(t)
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if !p.cmd.ProcessState.Success() {
			t.Errorf("%s exited with %v", p.name, p.cmd.ProcessState)
		}
	case <-time.After(60 * time.Second):
		p.kill()
		t.Errorf("%s did not stop within 60s", p.name)
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

// jsConnect connects a test client to the broker(s) at urls.
func jsConnect(t *testing.T, urls string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(urls, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// eventually polls f until it returns true, failing after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kvGet reads a key of the fso-agents bucket; "" when it cannot.
func kvGet(ctx context.Context, js jetstream.JetStream, key string) string {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, "fso-agents")
	if err != nil {
		return ""
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		return ""
	}
	return string(e.Value())
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

const (
	sigStop = syscall.SIGSTOP
	sigCont = syscall.SIGCONT
)

// streamMsgs is how many messages the FSO stream holds; 0 when unknown.
func streamMsgs(t *testing.T, js jetstream.JetStream) uint64 {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "FSO")
	if err != nil {
		return 0
	}
	return s.CachedInfo().State.Msgs
}
