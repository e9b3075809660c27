package sandbox

import (
	"fmt"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Refused are the system calls a workspace may not make; they fail with
// EPERM. None is needed to edit, build, run, test or debug code: they
// mount and change namespaces, load kernel code (modules, kexec, BPF),
// reach the kernel's keyrings (not namespaced), set the clock, swap,
// reboot, account processes, or trace the whole machine's performance.
// Most need a capability the workspace does not have anyway: the filter
// also closes the kernel code behind them.
var Refused = []string{
	"mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick",
	"move_mount", "open_tree", "mount_setattr", "setns",
	"init_module", "finit_module", "delete_module", "create_module", "query_module", "get_kernel_syms",
	"kexec_load", "kexec_file_load", "bpf", "perf_event_open", "lookup_dcookie",
	"add_key", "keyctl", "request_key",
	"acct", "quotactl", "quotactl_fd", "swapon", "swapoff", "reboot", "syslog",
	"settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime",
	"iopl", "ioperm", "vm86", "vm86old", "uselib", "ustat", "sysfs", "_sysctl", "nfsservctl",
	"open_by_handle_at", "userfaultfd", "vhangup", "fanotify_init",
}

// Unimplemented are system calls answered with ENOSYS, as on a kernel
// without them, so that programs fall back: clone3 (whose flags a filter
// cannot read; C libraries then use clone, which is checked) and io_uring.
var Unimplemented = []string{"clone3", "io_uring_setup", "io_uring_enter", "io_uring_register"}

// namespaceFlags are the clone and unshare flags that make namespaces:
// refused, the user namespace above all (in one, an unprivileged process
// holds every capability over what it makes).
const namespaceFlags = unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWNET |
	unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

// Filter returns the sandbox's seccomp program for this machine's
// architecture. System calls of another ABI (32-bit x86 from a 64-bit
// process, x32) are refused whole, so they cannot go round the list.
func Filter() ([]bpf.RawInstruction, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return nil, err
	}
	known := func(names []string) []string {
		var out []string
		for _, n := range names {
			if _, ok := info.SyscallNames[n]; ok {
				out = append(out, n)
			}
		}
		return out
	}
	var withFlags []seccomp.NameWithConditions
	for _, call := range []string{"clone", "unshare"} {
		if _, ok := info.SyscallNames[call]; !ok {
			continue
		}
		// BitsSet matches when any of the flags is set.
		withFlags = append(withFlags, seccomp.NameWithConditions{
			Name:       call,
			Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.BitsSet, Value: namespaceFlags}},
		})
	}
	policy := seccomp.Policy{
		DefaultAction: seccomp.ActionAllow,
		Syscalls: []seccomp.SyscallGroup{
			{Action: seccomp.ActionErrno, Names: known(Refused), NamesWithCondtions: withFlags},
			{Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS), Names: known(Unimplemented)},
		},
	}
	body, err := policy.Assemble()
	if err != nil {
		return nil, err
	}
	// The policy lets a foreign architecture through to its default
	// action; refuse it first.
	prog := append([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(info.ID), SkipTrue: 1},
		bpf.RetConstant{Val: uint32(seccomp.ActionErrno) | uint32(unix.ENOSYS)},
	}, body...)
	return bpf.Assemble(prog)
}

// LoadFilter installs Filter on every thread of this process, setting
// no_new_privs (which an unprivileged process needs to install one).
// Whatever the process starts inherits it, and it cannot be removed.
func LoadFilter() error {
	raw, err := Filter()
	if err != nil {
		return err
	}
	insts := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		insts[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	prog := unix.SockFprog{Len: uint16(len(insts)), Filter: &insts[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog)))
	if errno != 0 {
		return fmt.Errorf("load the filter: %w", errno)
	}
	if r != 0 { // with TSYNC: the thread that could not take it
		return fmt.Errorf("load the filter: thread %d could not take it", r)
	}
	return nil
}
