//go:build !linux

package main

import "errors"

func noNewPrivileges() (bool, error) {
	return false, errors.New("no_new_privs exists on Linux only")
}

func reexecWithoutNewPrivileges(args []string) error {
	if len(args) < 2 || args[1] != "agent" || !wantsNoNewPrivileges(args[2:]) {
		return nil
	}
	return errors.New("--no-new-privileges: no_new_privs exists on Linux only")
}
