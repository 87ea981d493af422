package e2e

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/fso-project/fso/internal/cli"
)

// benchArgs is a tiny fso bench: the shape of its output is what is
// checked, never its timings.
var benchArgs = []string{"bench", "--quick", "--ops", "100", "--race-dirs", "3", "--ladder", "500",
	"--step", "200ms", "--deep-dirs", "300"}

// TestBenchCommand runs fso bench through cli.Run; its pipeline is this
// test binary started as fso (FSO_E2E_MAIN, main_test.go).
func TestBenchCommand(t *testing.T) {
	t.Setenv("FSO_E2E_MAIN", "1")
	t.Run("json", func(t *testing.T) {
		var out, errb bytes.Buffer
		args := append(append([]string{}, benchArgs...), "--json", "--dir", t.TempDir())
		if code := cli.Run(t.Context(), args, &out, &errb); code != 0 {
			t.Fatalf("fso bench exit %d: %s", code, errb.String())
		}
		var res struct {
			Workloads []struct {
				Name       string   `json:"name"`
				Ops        int      `json:"ops"`
				SeenPct    *float64 `json:"seen_pct"`
				Lost       *int     `json:"lost"`
				Duplicates *int     `json:"duplicates"`
				RightType  *float64 `json:"right_type_pct"`
				P50        *float64 `json:"latency_p50_ms"`
				P99        *float64 `json:"latency_p99_ms"`
				Max        *float64 `json:"latency_max_ms"`
				CPU        *float64 `json:"cpu_s_per_10k_ops"`
			} `json:"workloads"`
			MaxRate   *int     `json:"max_rate_kept_up"`
			PeakRSS   int64    `json:"peak_rss_bytes"`
			IdleRSS   int64    `json:"idle_rss_bytes"`
			DeepDirs  int      `json:"deep_dirs"`
			DeepReady *float64 `json:"deep_ready_s"`
			PerDir    *float64 `json:"rss_bytes_per_dir"`
		}
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out.String())
		}
		var names []string
		for _, w := range res.Workloads {
			names = append(names, w.Name)
			if w.SeenPct == nil || w.Lost == nil || w.Duplicates == nil || w.RightType == nil || w.P50 == nil ||
				w.P99 == nil || w.Max == nil || w.CPU == nil {
				t.Errorf("workload %q lacks a field: %s", w.Name, out.String())
				continue
			}
			if w.Ops == 0 || *w.SeenPct != 100 || *w.Lost != 0 || *w.Duplicates != 0 {
				t.Errorf("workload %q: ops %d, seen %v%%, lost %d, duplicates %d; want all seen once",
					w.Name, w.Ops, *w.SeenPct, *w.Lost, *w.Duplicates)
			}
		}
		want := []string{"burst mixed", "burst create-only", "new-dir race", "paced 500/s"}
		if strings.Join(names, ",") != strings.Join(want, ",") {
			t.Errorf("workloads: have %q, want %q", names, want)
		}
		if res.MaxRate == nil || res.PeakRSS <= 0 || res.IdleRSS <= 0 || res.DeepDirs != 300 || res.DeepReady == nil || res.PerDir == nil {
			t.Errorf("summary fields missing or zero: %s", out.String())
		}
	})
	t.Run("table", func(t *testing.T) {
		var out, errb bytes.Buffer
		args := append(append([]string{}, benchArgs...), "--no-deep", "--dir", t.TempDir())
		if code := cli.Run(t.Context(), args, &out, &errb); code != 0 {
			t.Fatalf("fso bench exit %d: %s", code, errb.String())
		}
		for _, s := range []string{"seen %", "lost", "dups", "right type %", "p50 ms", "p99 ms", "max ms", "CPU s/10k ops",
			"burst mixed", "burst create-only", "new-dir race", "paced 500/s", "highest paced rate kept up", "idle RSS", "peak RSS"} {
			if !strings.Contains(out.String(), s) {
				t.Errorf("table lacks %q:\n%s", s, out.String())
			}
		}
		if !strings.Contains(errb.String(), "fso bench: burst, mixed ops") {
			t.Errorf("no progress on stderr: %q", errb.String())
		}
	})
	// Flags after -- reach fso up; one it refuses ends the run at once,
	// with its own words, instead of a wait for a pipeline that is gone.
	t.Run("up flags", func(t *testing.T) {
		var out, errb bytes.Buffer
		args := append(append([]string{}, benchArgs...), "--no-deep", "--dir", t.TempDir(), "--", "--commit-delay", "soon")
		code := cli.Run(t.Context(), args, &out, &errb)
		if code == 0 || !strings.Contains(errb.String(), `exited before the benchmark ended`) ||
			!strings.Contains(errb.String(), `invalid argument "soon" for "--commit-delay"`) {
			t.Fatalf("exit %d, stderr %q: want the pipeline's refusal of --commit-delay", code, errb.String())
		}
	})
}
