package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteTable prints res as the table of `fso bench`.
func WriteTable(w io.Writer, res *Result) error {
	fmt.Fprintf(w, "pipeline: %s\n\n", res.Mode)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tops\tgen ops/s\tseen %\tlost\tdups\tright type %\tp50 ms\tp99 ms\tmax ms\tdrain s\tCPU s/10k ops\tkept up\t")
	for _, x := range res.Workloads {
		kept := ""
		if x.KeptUp != nil {
			kept = "yes"
			if !*x.KeptUp {
				kept = "no: " + x.Why
			} else if x.Why != "" {
				kept = "yes (" + x.Why + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.2f\t%d\t%d\t%.2f\t%.1f\t%.1f\t%.1f\t%.2f\t%.2f\t%s\t\n", x.Name, x.Ops, x.GenRate,
			x.SeenPct, x.Lost, x.Duplicates, x.RightType, x.LatencyP50, x.LatencyP99, x.LatencyMax, x.DrainS, x.CPUPer10k, kept)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	rate := fmt.Sprintf("%d ops/s", res.MaxRateKeptUp)
	if res.GenLimited {
		rate = "≥ " + rate + " (the generator's limit)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nhighest paced rate kept up   %s\n", rate)
	fmt.Fprintf(&b, "idle RSS                     %.1f MB, idle CPU %.2f s/min\n", mb(res.IdleRSS), res.IdleCPU)
	fmt.Fprintf(&b, "peak RSS (workloads)         %.1f MB\n", mb(res.PeakRSS))
	if res.DeepDirs > 0 {
		fmt.Fprintf(&b, "deep tree                    %d directories: ready in %.2f s, startup CPU %.2f s, RSS %.1f MB\n",
			res.DeepDirs, res.DeepReadyS, res.DeepStartCPU, mb(res.DeepRSS))
		fmt.Fprintf(&b, "RSS per watched directory    %.0f B (deep-tree RSS minus idle RSS, per directory)\n", res.RSSPerDir)
	}
	if res.GenFailures > 0 {
		fmt.Fprintf(&b, "generator failures           %d operations failed\n", res.GenFailures)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }
