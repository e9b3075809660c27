//go:build unix && !linux

package main

import "syscall"

// childSysProcAttr puts a child in its own process group, so that a Ctrl-C
// in the terminal reaches loadgen alone and loadgen stops its children in
// order. Only Linux can also tie the child's life to loadgen's.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
