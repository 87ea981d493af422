package cli

import (
	"fmt"
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
		if cpu != "" {
			f, err := os.Create(cpu)
			if err != nil {
				return fmt.Errorf("--cpuprofile: %w", err)
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return fmt.Errorf("--cpuprofile: %w", err)
			}
			defer pprof.StopCPUProfile()
		}
		if tr != "" {
			f, err := os.Create(tr)
			if err != nil {
				return fmt.Errorf("--trace: %w", err)
			}
			defer f.Close()
			if err := trace.Start(f); err != nil {
				return fmt.Errorf("--trace: %w", err)
			}
			defer trace.Stop()
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
