package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Options size the run. Zero values take the full run's sizes; Quick
// smaller ones.
type Options struct {
	// Exe is the fso binary the pipeline runs as; default os.Executable.
	Exe string
	// Server, when set, runs only an agent (`fso agent --server`) against
	// this broker, and reads the audit log in AuditDir, written by the
	// recorder already running there. Empty runs `fso up` (embedded).
	Server   string
	AuditDir string
	// AgentArgs are more flags for `fso up`, or for `fso agent` with
	// Server (TLS, credentials; --commit-delay, --bundle to compare).
	AgentArgs []string
	// Dir is where the temporary trees and the pipeline's data go; the
	// disk it is on is the disk measured. Default: the system temp dir.
	Dir string

	Quick     bool
	Ops       int           // ops per burst; default 10,000 (quick 2,000)
	RaceDirs  int           // new directories in the race; default 200 (quick 50)
	Ladder    []int         // paced rates; default 500 … 32,000 (quick 500, 1,000, 2,000, 8,000)
	Step      time.Duration // one paced step; default 1s (quick 700ms)
	DeepDirs  int           // directories of the deep tree; default 100,000 (quick 10,000); <0 skips it
	Progress  func(phase string, done, total int)
	Log       io.Writer // the pipeline's stderr; default discarded
	KeepFiles bool      // leave the temporary dir in place
}

func (o *Options) setDefaults() error {
	if o.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		o.Exe = exe
	}
	if o.Server != "" && o.AuditDir == "" {
		return errors.New("bench: --server needs --audit-dir: the audit log the recorder on that broker writes")
	}
	def := func(v *int, full, quick int) {
		if *v == 0 {
			*v = full
			if o.Quick {
				*v = quick
			}
		}
	}
	def(&o.Ops, 10_000, 2_000)
	def(&o.RaceDirs, 200, 50)
	def(&o.DeepDirs, 100_000, 10_000)
	if len(o.Ladder) == 0 {
		o.Ladder = []int{500, 1000, 2000, 4000, 8000, 16000, 32000}
		if o.Quick {
			o.Ladder = []int{500, 1000, 2000, 8000}
		}
	}
	if o.Step == 0 {
		o.Step = time.Second
		if o.Quick {
			o.Step = 700 * time.Millisecond
		}
	}
	if o.Progress == nil {
		o.Progress = func(string, int, int) {}
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return nil
}

// Workload is the result of one workload.
type Workload struct {
	Name string `json:"name"`
	Check
	GenRate   float64 `json:"gen_ops_per_sec"`
	CPU       float64 `json:"cpu_s"`
	CPUPer10k float64 `json:"cpu_s_per_10k_ops"`
	DrainS    float64 `json:"drain_s"`
	KeptUp    *bool   `json:"kept_up,omitempty"` // paced steps
	Why       string  `json:"why,omitempty"`     // why a step was not kept up
}

// Result is one whole run.
type Result struct {
	Mode      string     `json:"mode"` // "embedded (fso up)" or "agent only, --server …"
	Workloads []Workload `json:"workloads"`
	// MaxRateKeptUp is the highest paced rate with nothing lost, no
	// growing lag and drained within 1s; GenLimited says the generator
	// could not go faster (the pipeline's limit is higher).
	MaxRateKeptUp int     `json:"max_rate_kept_up"`
	GenLimited    bool    `json:"generator_limited"`
	IdleRSS       int64   `json:"idle_rss_bytes"`
	IdleCPU       float64 `json:"idle_cpu_s_per_min"`
	PeakRSS       int64   `json:"peak_rss_bytes"`
	DeepDirs      int     `json:"deep_dirs,omitempty"`
	DeepReadyS    float64 `json:"deep_ready_s,omitempty"`
	DeepRSS       int64   `json:"deep_rss_bytes,omitempty"`
	DeepStartCPU  float64 `json:"deep_start_cpu_s,omitempty"`
	RSSPerDir     float64 `json:"rss_bytes_per_dir,omitempty"`
	GenFailures   int     `json:"generator_failures"`
}

// pipeline is the FSO processes under test.
type pipeline struct {
	cmds  []*exec.Cmd
	done  []chan struct{} // done[i] is closed when cmds[i] has exited
	audit string
	start time.Time
	out   *tail // the end of the processes' output, for the error if one dies

	stopping atomic.Bool   // stop was called: exits are expected
	died     chan struct{} // closed when a process exited before stop
	dieOnce  sync.Once
	why      error // why died was closed; read after it is
}

func startPipeline(o *Options, root, work string) (*pipeline, error) {
	p := &pipeline{audit: filepath.Join(work, "audit")}
	var args [][]string
	if o.Server == "" {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		args = append(args, []string{"up", "--data", filepath.Join(work, "data"), "--audit-dir", p.audit,
			"--watch", root, "--listen", "127.0.0.1:" + strconv.Itoa(port), "--id", "bench", "--log-level", "warn"})
		args[0] = append(args[0], o.AgentArgs...)
	} else {
		p.audit = o.AuditDir
		id := fmt.Sprintf("bench-%06d", rand.IntN(1_000_000))
		args = append(args, []string{"agent", "--server", o.Server, "--id", id, "--state", filepath.Join(work, "agent"),
			"--watch", root, "--log-level", "warn"})
		args[0] = append(args[0], o.AgentArgs...)
	}
	p.start = time.Now()
	p.out, p.died = &tail{}, make(chan struct{})
	for _, a := range args {
		cmd := exec.Command(o.Exe, a...)
		cmd.Stdout = io.MultiWriter(o.Log, p.out)
		cmd.Stderr = cmd.Stdout
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			p.stop()
			return nil, fmt.Errorf("bench: start %s: %w", a[0], err)
		}
		done := make(chan struct{})
		p.cmds, p.done = append(p.cmds, cmd), append(p.done, done)
		go func() {
			err := cmd.Wait()
			close(done)
			if p.stopping.Load() {
				return
			}
			p.dieOnce.Do(func() {
				if err == nil {
					err = errors.New("exit status 0")
				}
				p.why = fmt.Errorf("bench: fso %s exited before the benchmark ended (%v): %s", a[0], err, p.out.last(3))
				close(p.died)
			})
		}()
	}
	return p, nil
}

// dead returns why a process of p exited before stop, or nil.
func (p *pipeline) dead() error {
	select {
	case <-p.died:
		return p.why
	default:
		return nil
	}
}

// tail keeps the last bytes written to it.
type tail struct {
	mu sync.Mutex
	b  []byte
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, b...)
	if len(t.b) > 4096 {
		t.b = append(t.b[:0], t.b[len(t.b)-4096:]...)
	}
	return len(b), nil
}

// last returns up to n last lines, joined with "; ".
func (t *tail) last(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(t.b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return "no output"
	}
	return strings.Join(lines, "; ")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// cpu is the CPU time all pipeline processes have used.
func (p *pipeline) cpu() time.Duration {
	var t time.Duration
	for _, c := range p.cmds {
		d, _ := cpuTime(c.Process.Pid)
		t += d
	}
	return t
}

// mem is the summed RSS and high-water marks of the pipeline's processes.
func (p *pipeline) mem() (rss, hwm int64) {
	for _, c := range p.cmds {
		r, h, _ := memory(c.Process.Pid)
		rss, hwm = rss+r, hwm+h
	}
	return rss, hwm
}

// stop asks the pipeline to stop (SIGTERM) and kills what is left after
// 20s.
func (p *pipeline) stop() error {
	p.stopping.Store(true)
	errs := []error{p.dead()}
	for _, c := range p.cmds {
		c.Process.Signal(syscall.SIGTERM)
	}
	for i, c := range p.cmds {
		select {
		case <-p.done[i]:
		case <-time.After(20 * time.Second):
			c.Process.Kill()
			<-p.done[i]
		}
		if !c.ProcessState.Success() && p.dead() == nil {
			errs = append(errs, fmt.Errorf("bench: %s: %s", c.Args[1], c.ProcessState))
		}
	}
	return errors.Join(errs...)
}

// waitReady creates probe files in dirs until one from each is in the
// log, and returns when that was seen: changes in all of them reach the
// audit log (the shared harness measures ready the same way). Being armed
// is not enough: an agent that has armed its watches but is still walking
// the tree records nothing yet.
func waitReady(ctx context.Context, p *pipeline, c *collector, dirs []string, max time.Duration) (time.Time, error) {
	type probe struct {
		seen  bool
		paths []string
	}
	probes := make([]probe, len(dirs))
	var readyAt time.Time
	left := len(dirs)
	deadline := time.Now().Add(max)
	for n := 0; left > 0; n++ {
		if err := ctx.Err(); err != nil {
			return time.Time{}, err
		}
		if err := p.dead(); err != nil {
			return time.Time{}, err
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("bench: pipeline not ready after %v: no probe seen from %d of %d directories", max, left, len(dirs))
		}
		for i, d := range dirs {
			pr := &probes[i]
			if pr.seen {
				continue
			}
			for _, p := range pr.paths {
				if c.has(p) {
					readyAt = time.Now()
					pr.seen, left = true, left-1
					break
				}
			}
			if pr.seen || n%3 != 0 { // a new probe every 60ms
				continue
			}
			p := filepath.Join(d, fmt.Sprintf(".fsobench-probe-%d", n))
			os.WriteFile(p, nil, 0o644)
			pr.paths = append(pr.paths, p)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return readyAt, nil
}
