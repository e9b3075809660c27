package sandbox

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary is both the sandbox's init (as `codehub sandbox-init`
// is) and the program the sandbox runs: a probe that tries, from inside,
// what a workspace user would try, and prints what it found as JSON.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case InitCommand:
			Init(os.Args[3], os.Stdin, os.Stderr)
		case "probe":
			os.Exit(probe(os.Args[2:]))
		}
	}
	os.Exit(m.Run())
}

// findings is what the probe reports.
type findings struct {
	UID, GID, PID   int
	Hostname        string
	Status          map[string]string // /proc/self/status lines
	Processes       []int             // /proc's pids
	Errors          map[string]string // what each attempt got ("" for success)
	Passwd          string
	Etc             []string
	Run, VarLib     []string
	Groups          []int
	MountsWithSetID []string // mount points without nosuid
	SysVShm         string   // /proc/sysvipc/shm
	Cgroup          string   // /proc/self/cgroup
	Ptys            []string // /dev/pts
}

func probe(args []string) int {
	f := findings{UID: os.Getuid(), GID: os.Getgid(), PID: os.Getpid(), Status: map[string]string{}, Errors: map[string]string{}}
	f.Hostname, _ = os.Hostname()
	f.Groups, _ = os.Getgroups()
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ":")
			f.Status[k] = strings.TrimSpace(v)
		}
	}
	if ents, err := os.ReadDir("/proc"); err == nil {
		for _, e := range ents {
			if pid, err := strconv.Atoi(e.Name()); err == nil {
				f.Processes = append(f.Processes, pid)
			}
		}
	}
	try := func(what string, err error) {
		if err == nil {
			f.Errors[what] = ""
		} else {
			f.Errors[what] = err.Error()
		}
	}
	// args: a host UNIX socket, a host pid, a file of the host.
	hostSock, hostPID, hostFile, hostShm := args[0], args[1], args[2], args[3]
	if key, err := strconv.Atoi(hostShm); err == nil {
		_, err := unix.SysvShmGet(key, 0, 0)
		try("host shared memory", err)
	}
	b, _ := os.ReadFile("/proc/sysvipc/shm")
	f.SysVShm = string(b)
	b, _ = os.ReadFile("/proc/self/cgroup")
	f.Cgroup = string(b)
	if ents, err := os.ReadDir("/dev/pts"); err == nil {
		for _, e := range ents {
			f.Ptys = append(f.Ptys, e.Name())
		}
	}
	c, err := net.Dial("unix", hostSock)
	if err == nil {
		c.Close()
	}
	try("dial host socket", err)
	_, err = os.ReadFile("/proc/" + hostPID + "/cmdline")
	try("read host process", err)
	_, err = os.Stat(hostFile)
	try("stat host file", err)
	try("mount", unix.Mount("tmpfs", "/tmp", "tmpfs", 0, ""))
	try("unshare user namespace", unix.Unshare(unix.CLONE_NEWUSER))
	_, _, e := unix.Syscall(unix.SYS_CLONE3, 0, 0, 0)
	try("clone3", errnoErr(e))
	_, _, e = unix.Syscall(unix.SYS_KEYCTL, 0, 0, 0) // KEYCTL_GET_KEYRING_ID
	try("keyctl", errnoErr(e))
	_, _, e = unix.Syscall(unix.SYS_BPF, 0, 0, 0)
	try("bpf", errnoErr(e))
	_, _, e = unix.Syscall6(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0, 0)
	try("perf_event_open", errnoErr(e))
	_, _, e = unix.Syscall(unix.SYS_USERFAULTFD, 0, 0, 0)
	try("userfaultfd", errnoErr(e))
	_, _, e = unix.Syscall(unix.SYS_IO_URING_SETUP, 1, 0, 0)
	try("io_uring_setup", errnoErr(e))
	_, _, e = unix.Syscall(unix.SYS_SYSLOG, 3, 0, 0) // SYSLOG_ACTION_READ_ALL
	try("syslog", errnoErr(e))
	try("ptrace init", unix.PtraceAttach(1))
	// The kernel does not deliver SIGKILL to a namespace's init from
	// inside: the sandbox, and the probe with it, must live on.
	_ = unix.Kill(1, unix.SIGKILL)
	time.Sleep(100 * time.Millisecond)
	try("init survives SIGKILL", unix.Kill(1, 0))
	try("hard link /etc/passwd", os.Link("/etc/passwd", "/tmp/passwd-link"))
	try("mknod", unix.Mknod("/tmp/null", unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	try("write /usr", os.WriteFile("/usr/codehub-probe", nil, 0o644))
	try("write /etc", os.WriteFile("/etc/codehub-probe", nil, 0o644))
	try("write /", os.WriteFile("/codehub-probe", nil, 0o644))
	try("write /tmp", os.WriteFile("/tmp/codehub-probe", nil, 0o644))
	try("write home", os.WriteFile(filepath.Join(os.Getenv("HOME"), "probe"), nil, 0o644))
	try("setuid 0", syscall.Setuid(0))
	_, err = os.ReadFile("/etc/shadow")
	try("read /etc/shadow", err)
	// A child process: forks must keep working under the filter.
	try("run a child", exec.Command("/bin/sh", "-c", "exit 0").Run())
	b, _ = os.ReadFile("/etc/passwd")
	f.Passwd = string(b)
	for dir, out := range map[string]*[]string{"/etc": &f.Etc, "/run": &f.Run, "/var/lib": &f.VarLib} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			*out = append(*out, e.Name())
		}
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) > 5 && !strings.Contains(fields[5], "nosuid") {
				f.MountsWithSetID = append(f.MountsWithSetID, fields[4])
			}
		}
	}
	_ = json.NewEncoder(os.Stdout).Encode(f)
	return 0
}

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// needRoot skips tests that build sandboxes, which only root can.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("building a sandbox needs root")
	}
}

// run builds a sandbox for spec and returns what its program printed.
func run(t *testing.T, spec Spec) (string, error) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "spec.json")
	if err := WriteSpec(file, spec); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := Command(self, file)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Stdin = strings.NewReader("\n")
	err = cmd.Run()
	if errb.Len() > 0 {
		t.Logf("sandbox stderr: %s", errb.String())
	}
	return out.String(), err
}

// testSpec is a sandbox for nobody with a home of its own, running the
// test binary as the probe.
func testSpec(t *testing.T, argv ...string) Spec {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(t.TempDir(), "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	return Spec{
		Root: root, UID: 65534, GID: 65534, Hostname: "probe-host",
		ReadOnly: []string{self}, Writable: []string{home}, Dir: home,
		Env:  []string{"HOME=" + home, "PATH=/usr/bin:/bin"},
		Argv: append([]string{self}, argv...),
	}
}

// TestSandboxFromInside: everything a workspace user would try from a
// shell of theirs, tried from inside a sandbox as an unprivileged user.
func TestSandboxFromInside(t *testing.T) {
	needRoot(t)
	// The host has a UNIX socket in /run (as a database's would be), a
	// process of another user with a secret on its command line, and
	// files under /var/lib.
	sockPath := fmt.Sprintf("/run/codehub-sandbox-test-%d.sock", os.Getpid())
	ln, err := net.Listen("unix", sockPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.Chmod(sockPath, 0o777); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	victim := exec.Command("sleep", "600", "--password=hunter2")
	victim.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65533, Gid: 65533}}
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = victim.Process.Kill(); _ = victim.Wait() }()
	hostFile := filepath.Join("/var/lib", fmt.Sprintf("codehub-sandbox-test-%d", os.Getpid()))
	if err := os.WriteFile(hostFile, []byte("host data"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(hostFile)
	// Without the sandbox, nobody reaches all three: the test is sound.
	if c, err := net.Dial("unix", sockPath); err != nil {
		t.Fatalf("the host socket does not answer on the host: %v", err)
	} else {
		c.Close()
	}

	// And a System V shared memory segment anyone may attach.
	shmKey := 0x7c000000 | os.Getpid()&0xffffff
	shmID, err := unix.SysvShmGet(shmKey, 4096, unix.IPC_CREAT|0o666)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = unix.SysvShmCtl(shmID, unix.IPC_RMID, nil) }()
	// A pseudo-terminal of the host's.
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()

	spec := testSpec(t, "probe", sockPath, strconv.Itoa(victim.Process.Pid), hostFile, strconv.Itoa(shmKey))
	spec.HideUIDs = [2]int{65000, 65534}
	out, err := run(t, spec)
	if err != nil {
		t.Fatalf("sandbox: %v; output %s", err, out)
	}
	t.Logf("from inside: %s", out)
	var f findings
	if err := json.Unmarshal([]byte(out), &f); err != nil {
		t.Fatalf("probe output %q: %v", out, err)
	}

	if f.UID != 65534 || f.GID != 65534 || len(f.Groups) != 0 {
		t.Errorf("runs as uid %d gid %d groups %v, want 65534 65534 none", f.UID, f.GID, f.Groups)
	}
	for k, want := range map[string]string{
		"CapInh": "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000",
		"CapBnd": "0000000000000000", "CapAmb": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2",
	} {
		if got := f.Status[k]; got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if f.Hostname != "probe-host" {
		t.Errorf("hostname %q, want the sandbox's", f.Hostname)
	}
	// Its own PID namespace: init (1) and the probe only.
	if len(f.Processes) > 3 || f.PID > 10 {
		t.Errorf("the probe (pid %d) sees processes %v: not a PID namespace of its own", f.PID, f.Processes)
	}
	mustFail := map[string]string{
		"dial host socket":       "no such file",
		"read host process":      "",
		"stat host file":         "no such file",
		"mount":                  "operation not permitted",
		"unshare user namespace": "operation not permitted",
		"clone3":                 "function not implemented",
		"keyctl":                 "operation not permitted",
		"bpf":                    "operation not permitted",
		"write /usr":             "read-only file system",
		"write /etc":             "read-only file system",
		"write /":                "read-only file system",
		"setuid 0":               "operation not permitted",
		"perf_event_open":        "operation not permitted",
		"userfaultfd":            "operation not permitted",
		"io_uring_setup":         "function not implemented",
		"syslog":                 "operation not permitted",
		"ptrace init":            "operation not permitted",
		"hard link /etc/passwd":  "",
		"mknod":                  "operation not permitted",
		"read /etc/shadow":       "no such file",
		"host shared memory":     "no such file",
	}
	for what, want := range mustFail {
		got, ok := f.Errors[what]
		switch {
		case !ok:
			t.Errorf("%s: not tried", what)
		case got == "":
			t.Errorf("%s: succeeded from inside the sandbox", what)
		case !strings.Contains(got, want):
			t.Errorf("%s: %s, want an error containing %q", what, got, want)
		}
	}
	for _, what := range []string{"write /tmp", "write home", "run a child", "init survives SIGKILL"} {
		if got := f.Errors[what]; got != "" {
			t.Errorf("%s: %s, want it to work", what, got)
		}
	}
	for _, name := range []string{"shadow", "gshadow", "codehub", "netns"} {
		for _, e := range f.Etc {
			if e == name {
				t.Errorf("/etc/%s is visible inside", name)
			}
		}
	}
	if strings.Contains(f.Passwd, ":65533:") || !strings.Contains(f.Passwd, ":65534:") || !strings.Contains(f.Passwd, "root:x:0:") {
		t.Errorf("/etc/passwd shows hidden accounts or lacks its own:\n%s", f.Passwd)
	}
	if len(f.VarLib) != 0 {
		t.Errorf("/var/lib shows the host's %v", f.VarLib)
	}
	for _, e := range f.Run {
		if e != "user" {
			t.Errorf("/run shows %q", e)
		}
	}
	if strings.Contains(f.SysVShm, fmt.Sprintf("%d", shmKey)) {
		t.Errorf("the host's shared memory segment is listed inside:\n%s", f.SysVShm)
	}
	for _, line := range strings.Split(strings.TrimSpace(f.Cgroup), "\n") {
		if !strings.HasSuffix(line, ":/") { // each hierarchy's path is the namespace's root
			t.Errorf("/proc/self/cgroup names a host cgroup: %q", line)
		}
	}
	for _, p := range f.Ptys {
		if p != "ptmx" {
			t.Errorf("/dev/pts shows the pseudo-terminal %s", p)
		}
	}
	for _, m := range f.MountsWithSetID {
		t.Errorf("%s is mounted without nosuid", m)
	}
}

// TestSandboxEndsEverything: when the program ends, every process it
// left behind ends with the sandbox, orphans included.
func TestSandboxEndsEverything(t *testing.T) {
	needRoot(t)
	spec := testSpec(t)
	mark := fmt.Sprintf("CODEHUB_SANDBOX_TEST=%d", time.Now().UnixNano())
	spec.Env = append(spec.Env, mark)
	spec.Argv = []string{"/bin/sh", "-c", "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo started"}
	out, err := run(t, spec)
	if err != nil || !strings.Contains(out, "started") {
		t.Fatalf("sandbox: %v, output %q", err, out)
	}
	// The orphaned sleep was in the PID namespace: it is gone already.
	if pids := marked(t, mark); len(pids) > 0 {
		t.Errorf("processes %v outlived their sandbox", pids)
	}
}

// TestSandboxExitStatus: the sandbox ends with its program's status.
func TestSandboxExitStatus(t *testing.T) {
	needRoot(t)
	spec := testSpec(t)
	spec.Argv = []string{"/bin/sh", "-c", "exit 7"}
	_, err := run(t, spec)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Fatalf("exit: %v, want status 7", err)
	}
}

// TestSandboxRefusesBadSpecs: a spec that would run as root, or bind
// relative paths, is refused before anything is built.
func TestSandboxRefusesBadSpecs(t *testing.T) {
	for name, mutate := range map[string]func(*Spec){
		"root":          func(s *Spec) { s.UID = 0 },
		"relative bind": func(s *Spec) { s.ReadOnly = []string{"usr"} },
		"bind of /":     func(s *Spec) { s.Writable = []string{"/"} },
		"unclean bind":  func(s *Spec) { s.Writable = []string{"/home/../etc"} },
		"hide escape":   func(s *Spec) { s.Hide = []string{"../root"} },
		"no argv":       func(s *Spec) { s.Argv = nil },
	} {
		t.Run(name, func(t *testing.T) {
			s := Spec{Root: "/r", UID: 1000, GID: 1000, Dir: "/", Argv: []string{"/bin/true"}}
			mutate(&s)
			if err := WriteSpec(filepath.Join(t.TempDir(), "s.json"), s); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestFilterRefusesForeignABI: the filter starts by refusing any system
// call of another architecture, so the list cannot be gone round.
func TestFilterRefusesForeignABI(t *testing.T) {
	raw, err := Filter()
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) < 3 || raw[0].K != 4 {
		t.Fatalf("the filter does not start by loading the architecture: %+v", raw[:3])
	}
}

func marked(t *testing.T, mark string) []int {
	t.Helper()
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if bytes.Contains(env, []byte(mark)) {
			pids = append(pids, pid)
		}
	}
	return pids
}
