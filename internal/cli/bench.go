package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/fso-project/fso/internal/bench"
)

func newBenchCmd(g *globals) *cobra.Command {
	var o bench.Options
	var asJSON, noDeep bool
	cmd := &cobra.Command{
		Use:   "bench [-- AGENT FLAGS]",
		Short: "Benchmark the pipeline on this machine's disk: completeness, latency, throughput, CPU, memory",
		Long: `Starts the pipeline (fso up, as a child process; or with --server only an
agent against that broker, reading the audit log in --audit-dir), makes
changes in a temporary tree under --dir and checks the audit log against
them: a burst of mixed operations, a burst of creates, new directories with
files created right after the mkdir, a paced ladder of mixed operations
(500 to 32,000 ops/s), and a deep tree of directories on a fresh pipeline.
It prints, per workload, seen %, lost, duplicates, right type %, latency from
the operation to its fsynced audit line, and the pipeline's CPU per 10,000
operations; then the highest paced rate kept up, RSS idle and peak, RSS per
watched directory and the time to be ready on the deep tree.
Flags after -- go to fso up, or with --server to fso agent (say,
-- --commit-delay 3ms).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.AgentArgs = args
			if noDeep {
				o.DeepDirs = -1
			}
			o.Progress = progressBar(cmd.ErrOrStderr(), asJSON)
			res, err := bench.Run(cmd.Context(), o)
			o.Progress("", -1, 0)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			return bench.WriteTable(cmd.OutOrStdout(), res)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.Quick, "quick", false, "smaller workloads (2,000-op bursts, ladder to 8,000 ops/s, 10,000-directory deep tree): about a minute")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	f.StringVar(&o.Dir, "dir", "", "where the temporary trees and data go; the disk measured (default: the system temp dir)")
	f.StringVar(&o.Server, "server", "", "run only an agent against this broker (NATS URLs) instead of fso up")
	f.StringVar(&o.AuditDir, "audit-dir", "", "with --server: the audit log the recorder on that broker writes")
	f.IntVar(&o.Ops, "ops", 0, "operations per burst (default 10,000; --quick 2,000)")
	f.IntVar(&o.RaceDirs, "race-dirs", 0, "new directories in the race, 10 files each (default 200; --quick 50)")
	f.IntSliceVar(&o.Ladder, "ladder", nil, "paced rates in ops/s (default 500,1000,2000,4000,8000,16000,32000; --quick 500,1000,2000,8000)")
	f.DurationVar(&o.Step, "step", 0, "duration of one paced step (default 1s; --quick 700ms)")
	f.IntVar(&o.DeepDirs, "deep-dirs", 0, "directories in the deep tree (default 100,000; --quick 10,000)")
	f.BoolVar(&noDeep, "no-deep", false, "skip the deep tree")
	f.BoolVar(&o.KeepFiles, "keep", false, "keep the temporary trees and data")
	return cmd
}

// progressBar draws the benchmark's progress on w: a bar redrawn in place
// on a terminal, one line per phase otherwise, nothing with quiet. A call
// with done < 0 ends it.
func progressBar(w io.Writer, quiet bool) func(phase string, done, total int) {
	f, ok := w.(*os.File)
	tty := ok && isTerminal(f)
	var mu sync.Mutex
	last := ""
	return func(phase string, done, total int) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case quiet:
		case done < 0:
			if tty {
				fmt.Fprint(w, "\r\033[K")
			}
		case tty:
			const width = 30
			n := 0
			if total > 0 {
				n = min(width, width*done/total)
			}
			fmt.Fprintf(w, "\r\033[K[%s%s] %s", strings.Repeat("#", n), strings.Repeat(".", width-n), phase)
		case phase != last:
			fmt.Fprintf(w, "fso bench: %s\n", phase)
		}
		last = phase
	}
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
