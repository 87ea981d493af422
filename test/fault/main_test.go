// Package fault injects real faults into FSO running as separate processes
// (kill -9 and SIGSTOP of recorder and broker, a full disk under the audit
// log, the loss of a cluster's stream leader) and checks, Jepsen style, the
// operations the test performed against the audit log: nothing lost,
// nothing duplicated, nothing unexpected, and a chain that verifies.
//
// TestMain builds fso once (without -race) into a temporary directory;
// FSO_FAULT_BIN names a prebuilt binary instead.
package fault

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// fsoBin is the fso binary the tests run.
var fsoBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if b := os.Getenv("FSO_FAULT_BIN"); b != "" {
		fsoBin = b
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "fso-fault-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	fsoBin = filepath.Join(dir, "fso")
	cmd := exec.Command("go", "build", "-o", fsoBin, "github.com/fso-project/fso/cmd/fso")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build fso:", err)
		return 1
	}
	return m.Run()
}
