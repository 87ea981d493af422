// Command fso is the File System Observer: agent, broker, recorder,
// controller and audit tools in one binary. See the README.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/fso-project/fso/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
