package main

import "syscall"

// childSysProcAttr puts a child in its own process group, so that a Ctrl-C
// in the terminal reaches loadgen alone and loadgen stops its children in
// order, and has the kernel send the child SIGTERM if loadgen dies without
// cleaning up.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
