package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Run runs the benchmark: the workloads on one pipeline, then the deep
// tree on a fresh one. It fails when the pipeline cannot start or become
// ready; what it measures, lost events included, goes in the Result.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(o.Dir, "fso-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if !o.KeepFiles {
		defer os.RemoveAll(tmp)
	}
	res := &Result{Mode: "embedded: fso up (agent, broker, recorder in one process)"}
	if o.Server != "" {
		res.Mode = "agent only (fso agent --server " + o.Server + "); broker and recorder not counted"
	}
	if err := runWorkloads(ctx, &o, tmp, res); err != nil {
		return nil, err
	}
	if o.DeepDirs > 0 {
		if err := runDeep(ctx, &o, tmp, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func runWorkloads(ctx context.Context, o *Options, tmp string, res *Result) error {
	root, work := filepath.Join(tmp, "tree"), filepath.Join(tmp, "work")
	g, err := newGenerator(root)
	if err != nil {
		return err
	}
	phases := 5 + len(o.Ladder)
	phase := 0
	step := func(name string) {
		o.Progress(name, phase, phases)
		phase++
	}
	step("starting the pipeline")
	p, err := startPipeline(o, root, work)
	if err != nil {
		return err
	}
	os.MkdirAll(p.audit, 0o755)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := startCollector(cctx, p.audit)
	stopped := false
	defer func() {
		if !stopped {
			p.stop()
		}
	}()
	if _, err := waitReady(ctx, p, c, g.dirs[:20], 60*time.Second); err != nil {
		return err
	}
	step("idle")
	time.Sleep(500 * time.Millisecond)
	cpu0 := p.cpu()
	idle := 2 * time.Second
	time.Sleep(idle)
	res.IdleCPU = (p.cpu() - cpu0).Seconds() * float64(time.Minute/idle)
	res.IdleRSS, _ = p.mem()

	measure := func(name string, ops func() []op) (Workload, []op) {
		cpu0 := p.cpu()
		t0 := time.Now()
		done := ops()
		genEnd := time.Now()
		c.wait(ctx, done, time.Second, 120*time.Second)
		cpu := p.cpu() - cpu0
		w := Workload{Name: name, Check: c.check(done)}
		w.GenRate = float64(len(done)) / genEnd.Sub(t0).Seconds()
		w.CPU = cpu.Seconds()
		if len(done) > 0 {
			w.CPUPer10k = cpu.Seconds() * 10_000 / float64(len(done))
		}
		if !w.lastSeen.IsZero() {
			w.DrainS = max(0, w.lastSeen.Sub(genEnd).Seconds())
		}
		return w, done
	}
	prepare := func(n int) {
		c.wait(ctx, g.fill(needPool(n)), 2*time.Second, 60*time.Second)
		c.check(nil) // duplicates and overflows from here on count for the next workload
	}

	step("burst, mixed ops")
	prepare(o.Ops)
	w, _ := measure("burst mixed", func() []op { return g.burst(o.Ops, false) })
	res.Workloads = append(res.Workloads, w)
	step("burst, create only")
	w, _ = measure("burst create-only", func() []op { return g.burst(o.Ops, true) })
	res.Workloads = append(res.Workloads, w)
	step("new-directory race")
	c.check(nil)
	w, _ = measure("new-dir race", func() []op { return g.race(o.RaceDirs, 10) })
	res.Workloads = append(res.Workloads, w)

	for _, rate := range o.Ladder {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		step(fmt.Sprintf("paced %d ops/s", rate))
		prepare(int(float64(rate) * o.Step.Seconds()))
		var achieved float64
		w, _ := measure(fmt.Sprintf("paced %d/s", rate), func() []op {
			ops, r := g.paced(ctx, rate, o.Step)
			achieved = r
			return ops
		})
		w.GenRate = achieved
		kept := true
		switch {
		case w.Lost > 0:
			kept, w.Why = false, fmt.Sprintf("%d ops lost", w.Lost)
		case w.Overflows > 0:
			kept, w.Why = false, "inotify queue overflow"
		case growingLag(w.latencies):
			kept, w.Why = false, "growing lag"
		case w.DrainS > 1:
			kept, w.Why = false, fmt.Sprintf("drained in %.1fs", w.DrainS)
		}
		limited := kept && achieved < 0.9*float64(rate)
		if limited {
			w.Why = "generator limit"
		}
		w.KeptUp = &kept
		res.Workloads = append(res.Workloads, w)
		if !kept {
			break
		}
		if limited {
			res.MaxRateKeptUp, res.GenLimited = int(achieved), true
			break
		}
		res.MaxRateKeptUp = rate
	}
	res.GenFailures = g.fails
	_, res.PeakRSS = p.mem()
	step("stopping")
	stopped = true
	return p.stop()
}

func runDeep(ctx context.Context, o *Options, tmp string, res *Result) error {
	o.Progress(fmt.Sprintf("deep tree: making %d directories", o.DeepDirs), 0, 3)
	root, work := filepath.Join(tmp, "deep"), filepath.Join(tmp, "work-deep")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	dirs, err := deepTree(root, o.DeepDirs)
	if err != nil {
		return err
	}
	var sample []string
	for i := range 50 {
		sample = append(sample, dirs[(len(dirs)-1)*i/49])
	}
	o.Progress("deep tree: starting", 1, 3)
	p, err := startPipeline(o, root, work)
	if err != nil {
		return err
	}
	os.MkdirAll(p.audit, 0o755)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := startCollector(cctx, p.audit)
	readyAt, err := waitReady(ctx, p, c, sample, 120*time.Second)
	if err != nil {
		p.stop()
		return err
	}
	res.DeepDirs = o.DeepDirs
	res.DeepReadyS = readyAt.Sub(p.start).Seconds()
	res.DeepStartCPU = p.cpu().Seconds()
	o.Progress("deep tree: memory", 2, 3)
	time.Sleep(3 * time.Second) // let the start's garbage be collected and returned
	res.DeepRSS, _ = p.mem()
	if res.IdleRSS > 0 {
		res.RSSPerDir = float64(res.DeepRSS-res.IdleRSS) / float64(o.DeepDirs)
	}
	return errors.Join(p.stop())
}
