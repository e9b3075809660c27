package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// The sandbox's init joins the network and cgroup namespaces from the
// thread it runs on, and /proc/<pid>/ns shows those of a process's main
// thread: init's must be that thread. Only an init function runs there
// for certain, and locking in one keeps the main goroutine on it.
func init() {
	if len(os.Args) > 1 && os.Args[1] == InitCommand {
		runtime.LockOSThread()
	}
}

// Init is the sandbox's first process (`codehub sandbox-init --spec
// FILE`): see the package documentation. It never returns: it exits with
// the program's status, or with 1 (after saying why on stderr) when the
// sandbox cannot be built.
func Init(specFile string, stdin io.Reader, stderr io.Writer) {
	code, err := initMain(specFile, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "codehub sandbox: %v\n", err)
	}
	os.Exit(code)
}

func initMain(specFile string, stdin io.Reader) (int, error) {
	// Joining a network namespace, dropping the bounding set and setting
	// no_new_privs are per thread, and the program is forked from this
	// thread: it must stay this goroutine's (the main thread, see init).
	runtime.LockOSThread()
	if unix.Gettid() != os.Getpid() {
		return 1, errors.New("not running on the main thread (start it as `codehub " + InitCommand + "`)")
	}
	if os.Getpid() != 1 {
		return 1, errors.New("not the first process of a new PID namespace (start it with sandbox.Command)")
	}
	spec, err := readSpec(specFile)
	if err != nil {
		return 1, fmt.Errorf("read the sandbox spec: %w", err)
	}
	// The gateway places this process in the workspace's cgroup, then
	// says go: nothing is built, and nothing started, outside its limits.
	var b [1]byte
	if _, err := io.ReadFull(stdin, b[:]); err != nil {
		return 1, fmt.Errorf("waiting for the start byte: %w (the gateway went away)", err)
	}
	if err := enter(&spec); err != nil {
		return 1, err
	}
	if err := buildRoot(&spec); err != nil {
		return 1, fmt.Errorf("build the workspace's file system: %w", err)
	}
	if err := dropPrivileges(spec.UID, spec.GID); err != nil {
		return 1, fmt.Errorf("drop privileges: %w", err)
	}
	if err := LoadFilter(); err != nil {
		return 1, fmt.Errorf("seccomp: %w", err)
	}
	return supervise(&spec)
}

// enter joins the workspace's network namespace, takes a cgroup namespace
// rooted at the workspace's cgroup, and names the host.
func enter(spec *Spec) error {
	if spec.NetNS != "" {
		fd, err := unix.Open(spec.NetNS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open the network namespace: %w", err)
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("join the network namespace %s: %w", spec.NetNS, err)
		}
	}
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return fmt.Errorf("cgroup namespace: %w", err)
	}
	host := spec.Hostname
	if host == "" {
		host = "workspace"
	}
	if err := unix.Sethostname([]byte(host)); err != nil {
		return fmt.Errorf("host name: %w", err)
	}
	return nil
}

// dropPrivileges empties the capability bounding set, then becomes uid and
// gid with no supplementary groups: the change of uid from 0 clears the
// effective and permitted capabilities, and the empty bounding set keeps
// any program from getting one back.
func dropPrivileges(uid, gid int) error {
	for c := 0; c <= capLast(); c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	// syscall's credential calls apply to every thread of the process.
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return fmt.Errorf("setresgid %d: %w", gid, err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return fmt.Errorf("setresuid %d: %w", uid, err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	return nil
}

// capLast is the highest capability the kernel knows.
func capLast() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		var n int
		if _, err := fmt.Sscan(string(b), &n); err == nil && n > 0 {
			return n
		}
	}
	return 63
}

// supervise starts the program and stays PID 1 until it ends: reaping
// every process that ends in the namespace, passing termination signals
// on. It returns the program's exit status (128+signal when killed).
func supervise(spec *Spec) (int, error) {
	// The program may wait for a start byte of its own (the agent's
	// --wait-start): the sandbox is ready, so it gets one at once.
	r, w, err := os.Pipe()
	if err != nil {
		return 1, err
	}
	if _, err := w.Write([]byte{'\n'}); err != nil {
		return 1, err
	}
	w.Close()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	proc, err := os.StartProcess(spec.Argv[0], spec.Argv, &os.ProcAttr{
		Dir:   spec.Dir,
		Env:   spec.Env,
		Files: []*os.File{r, os.Stdout, os.Stderr},
	})
	r.Close()
	if err != nil {
		return 1, fmt.Errorf("start %s: %w", spec.Argv[0], err)
	}
	main := proc.Pid
	go func() {
		for s := range sigs {
			_ = syscall.Kill(main, s.(syscall.Signal))
		}
	}()
	for {
		var st syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &st, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return 1, fmt.Errorf("wait: %w", err)
		}
		if pid != main {
			continue // an orphan, reaped
		}
		switch {
		case st.Exited():
			return st.ExitStatus(), nil
		case st.Signaled():
			return 128 + int(st.Signal()), nil
		}
	}
}
