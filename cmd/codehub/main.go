// Command codehub is a gateway that gives each member of a team their own
// browser IDE (code-server). Run `codehub --help` for usage.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// Before anything runs: setting no_new_privs needs the process
	// started again (see reexecWithoutNewPrivileges).
	if err := reexecWithoutNewPrivileges(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "codehub: %v\n", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(os.Stderr, "codehub: %v\nRun 'codehub --help' for usage.\n", err)
			os.Exit(2)
		}
		if !errors.Is(err, errSilent) {
			fmt.Fprintf(os.Stderr, "codehub: %v\n", err)
		}
		os.Exit(1)
	}
}
