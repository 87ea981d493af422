package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fso-project/fso/internal/cli"
)

// fsoCmd runs one fso command to completion.
func fsoCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = cli.Run(t.Context(), append([]string{"--log-level", "warn"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// TestControllerUpConfig: `fso up --config` applies fso.yaml to its own
// agent; `fso controller apply` refuses invalid files naming field and
// line, plans with --dry-run, and applies live; `agents` and `get` show
// the revision; the audit log records each configuration change.
func TestControllerUpConfig(t *testing.T) {
	root, extra, data := t.TempDir(), t.TempDir(), t.TempDir()
	audit := filepath.Join(data, "audit")
	addr := freePort(t)
	server := "nats://" + addr
	cfgFile := filepath.Join(t.TempDir(), "fso.yaml")
	write(t, cfgFile, fmt.Sprintf("defaults:\n  watch:\n    - path: %s\n", root))
	s := &upSystem{root: root, data: data, audit: audit}
	s.p = runFSO(t, "up", "--data", data, "--config", cfgFile, "--listen", addr, "--id", "e2e", "--label", "role=web")
	s.waitReady(t)

	// Invalid: refused, nothing written.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	write(t, bad, fmt.Sprintf("defaults:\n  watch:\n    - path: %s\n      events: [create, chmod]\n", extra))
	code, _, stderr := fsoCmd(t, "controller", "apply", "-f", bad, "--server", server)
	if code == 0 || !strings.Contains(stderr, bad+":4:") || !strings.Contains(stderr, "defaults.watch[0].events[1]") {
		t.Fatalf("invalid apply: exit %d, stderr %q; want non-zero naming %s:4 and defaults.watch[0].events[1]", code, stderr, bad)
	}

	next := filepath.Join(t.TempDir(), "fso.yaml")
	write(t, next, fmt.Sprintf("defaults:\n  watch:\n    - path: %s\nagents:\n  - match: {labels: {role: web}}\n    watch:\n      - path: %s\n        include: [\"**/*.txt\"]\n    important: [\"**/*.txt\"]\n", root, extra))
	code, out, stderr := fsoCmd(t, "controller", "apply", "--dry-run", "-f", next, "--server", server)
	if code != 0 || !strings.Contains(out, "+ watch "+extra) || !strings.Contains(out, "nothing written") {
		t.Fatalf("dry run: exit %d, out %q, stderr %q", code, out, stderr)
	}
	code, out, stderr = fsoCmd(t, "controller", "apply", "-f", next, "--server", server, "--json")
	var plan struct {
		Revision uint64 `json:"revision"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &plan) != nil || plan.Revision == 0 {
		t.Fatalf("apply: exit %d, out %q, stderr %q", code, out, stderr)
	}

	// The agent reports it applied.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, out, _ = fsoCmd(t, "controller", "agents", "--server", server, "--json")
		var rows []struct {
			ID      string   `json:"id"`
			Applied uint64   `json:"applied_revision"`
			Desired uint64   `json:"desired_revision"`
			Watched []string `json:"watched"`
		}
		json.Unmarshal([]byte(out), &rows)
		if len(rows) == 1 && rows[0].Applied == plan.Revision && rows[0].Desired == plan.Revision && len(rows[0].Watched) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent did not apply revision %d: %s", plan.Revision, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	code, out, _ = fsoCmd(t, "controller", "agents", "--server", server)
	if code != 0 || !strings.Contains(out, "role=web") || !strings.Contains(out, fmt.Sprintf("%d/%d", plan.Revision, plan.Revision)) {
		t.Errorf("agents table: %q", out)
	}
	code, out, _ = fsoCmd(t, "controller", "get", "--agent", "e2e", "--server", server, "--json")
	if code != 0 || !strings.Contains(out, fmt.Sprintf(`"revision": %d`, plan.Revision)) || !strings.Contains(out, extra) {
		t.Errorf("get --agent: %q", out)
	}

	// The new root is watched, with its pattern.
	write(t, filepath.Join(extra, "skip.log"), "x")
	f := filepath.Join(extra, "new.txt")
	write(t, f, "x")
	recs := waitLog(t, audit, 30*time.Second, has(nil, "create "+f))
	for _, r := range recs {
		if r.path == filepath.Join(extra, "skip.log") {
			t.Errorf("excluded by include pattern, yet recorded: %s", r.path)
		}
	}
	// important came from the controller: the file's diff is recorded.
	waitLog(t, audit, 30*time.Second, func(recs []rec) bool {
		for _, r := range recs {
			if r.Kind == "diff" && r.path == f {
				return true
			}
		}
		return false
	})

	// Both configuration changes are in the audit trail.
	recs = waitLog(t, audit, 30*time.Second, func(recs []rec) bool {
		n := 0
		for _, r := range recs {
			if r.Kind == "config" {
				n++
			}
		}
		return n == 2
	})
	raw, _ := os.ReadFile(filepath.Join(audit, "00000001.jsonl"))
	if !bytes.Contains(raw, []byte(fmt.Sprintf(`"kind":"config","revision":%d`, plan.Revision))) {
		t.Errorf("no config record of revision %d in the audit log", plan.Revision)
	}
	s.p.stop(t)
	checkIntegrity(t, audit, readLog(t, audit))
}
