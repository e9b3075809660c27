package main

import (
	"fmt"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// noNewPrivileges reports whether the process runs with no_new_privs:
// after execve nothing it starts can gain privileges (set-uid and
// set-gid bits, file capabilities are ignored).
func noNewPrivileges() (bool, error) {
	v, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
	if err != nil {
		return false, fmt.Errorf("read no_new_privs: %w", err)
	}
	return v == 1, nil
}

// reexecWithoutNewPrivileges makes `codehub agent --no-new-privileges`
// run with no_new_privs in every thread: the flag is per thread, and a Go
// program's threads exist before main, so it is set on one locked thread
// which then executes the program again; every thread of the new image
// descends from it. It returns (nil) without doing anything for any other
// command, or when no_new_privs is already set.
func reexecWithoutNewPrivileges(args []string) error {
	if len(args) < 2 || args[1] != "agent" || !wantsNoNewPrivileges(args[2:]) {
		return nil
	}
	set, err := noNewPrivileges()
	if err != nil || set {
		return err
	}
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("--no-new-privileges: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("--no-new-privileges: %w", err)
	}
	return fmt.Errorf("--no-new-privileges: execute %s again: %w", exe, syscall.Exec(exe, args, os.Environ()))
}
