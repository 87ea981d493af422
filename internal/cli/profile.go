package cli

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"

	"github.com/spf13/cobra"
)

// addProfileFlags gives cmd the hidden --cpuprofile, --memprofile and --trace
// flags: pprof profiles and an execution trace of the whole run, written when it returns. They are for
// performance work (docs/performance.md), not for users.
func addProfileFlags(cmd *cobra.Command) {
	var cpu, mem, tr string
	cmd.Flags().StringVar(&cpu, "cpuprofile", "", "write a CPU profile of the run to `FILE`")
	cmd.Flags().StringVar(&tr, "trace", "", "write an execution trace of the run to `FILE`")
	cmd.Flags().MarkHidden("trace")
	cmd.Flags().StringVar(&mem, "memprofile", "", "write a heap profile when the run is asked to stop to `FILE`")
	cmd.Flags().MarkHidden("cpuprofile")
	cmd.Flags().MarkHidden("memprofile")
	run := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		for _, r := range []struct {
			flag, path string
			start      func(io.Writer) error
			stop       func()
		}{
			{"--cpuprofile", cpu, pprof.StartCPUProfile, pprof.StopCPUProfile},
			{"--trace", tr, trace.Start, trace.Stop},
		} {
			if r.path == "" {
				continue
			}
			f, err := os.Create(r.path)
			if err != nil {
				return fmt.Errorf("%s: %w", r.flag, err)
			}
			defer f.Close()
			if err := r.start(f); err != nil {
				return fmt.Errorf("%s: %w", r.flag, err)
			}
			defer r.stop()
		}
		if mem != "" {
			// Taken when the stop is asked for, before anything is torn
			// down, so that it shows what a running process holds.
			done, returned := make(chan struct{}), make(chan struct{})
			defer func() { close(returned); <-done }()
			go func() {
				defer close(done)
				select {
				case <-c.Context().Done():
				case <-returned:
				}
				f, err := os.Create(mem)
				if err != nil {
					return
				}
				defer f.Close()
				runtime.GC()
				pprof.WriteHeapProfile(f)
			}()
		}
		return run(c, args)
	}
}
