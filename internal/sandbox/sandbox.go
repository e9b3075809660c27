// Package sandbox runs a workspace's agent, and so everything its user
// starts, in a view of the machine of its own, enforced by the kernel:
//
//   - its own mount namespace, whose root is a fresh tmpfs holding
//     read-only binds of what an IDE needs (/usr and the /lib, /bin and
//     /sbin links, /etc without its secrets, the codehub and code-server
//     runtime), the workspace's home (read-write), and private /tmp,
//     /var/tmp, /run, /dev/shm and /dev. Nothing of the host's /run,
//     /var/run, /var/lib, other homes or the gateway's data is there, so
//     no host UNIX socket (databases, Docker, Nomad, Consul) can be
//     reached by path;
//   - its own PID namespace, with /proc mounted for it: the workspace sees
//     its own processes only, and when its first process (the sandbox's
//     init) ends, the kernel ends every other;
//   - its own UTS (hostname), IPC (System V shared memory, semaphores,
//     message queues) and cgroup namespaces, and the workspace's network
//     namespace when it has one (abstract UNIX sockets live there);
//   - a non-root account with an empty capability bounding set,
//     no_new_privs (set-uid programs do not elevate), and a seccomp filter
//     that refuses the system calls an IDE user never needs (mounting,
//     namespaces, kernel modules and keyrings, BPF, kexec, io_uring, ...).
//
// The gateway starts the sandbox as `codehub sandbox-init --spec FILE`
// with Command: the new mount, PID, UTS and IPC namespaces are made by the
// clone that starts it, and Init, running as root inside them, reads the
// Spec, waits for one byte on stdin (the gateway moves it into its cgroup
// first), builds the root, drops every privilege, loads the seccomp filter
// and starts Spec.Argv. It then stays as the namespace's PID 1: it reaps
// orphans, passes SIGTERM, SIGINT and SIGHUP on to the program, and exits
// with the program's status.
package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// InitCommand is the codehub subcommand that runs Init.
const InitCommand = "sandbox-init"

// Spec says what sandbox Init builds and what it runs there.
type Spec struct {
	// Root is an empty directory of the host on which Init mounts the new
	// root, in its own mount namespace (one directory serves every
	// sandbox: no mount is seen outside).
	Root string `json:"root"`
	// NetNS is the network namespace to join (a file such as
	// /run/netns/NAME); empty keeps the host's network.
	NetNS string `json:"netns,omitempty"`
	// ResolvConf is the file whose content becomes /etc/resolv.conf; empty
	// takes the host's /etc/resolv.conf (following links, read before the
	// host's /run is left behind).
	ResolvConf string `json:"resolvConf,omitempty"`
	// Hostname is the sandbox's host name (default "workspace").
	Hostname string `json:"hostname,omitempty"`
	// UID and GID are the account the program runs as; never 0.
	UID int `json:"uid"`
	GID int `json:"gid"`
	// HideUIDs, when set, is the range [from, to] of uids whose accounts
	// are left out of the sandbox's /etc/passwd and /etc/group (the other
	// workspaces' accounts), but for UID's own.
	HideUIDs [2]int `json:"hideUids,omitempty"`
	// ReadOnly are host paths (files or directories) bound read-only at
	// the same path inside, for what the program needs outside the
	// system directories (the codehub binary, code-server's runtime).
	ReadOnly []string `json:"readOnly,omitempty"`
	// Writable are host paths bound read-write at the same path (the
	// workspace's home).
	Writable []string `json:"writable,omitempty"`
	// Links are symbolic links made inside, path to target (the user's
	// <base>/<user-id> name of their home).
	Links map[string]string `json:"links,omitempty"`
	// Hide are paths under /etc left out (besides DefaultHidden), as
	// "name" or "dir/name".
	Hide []string `json:"hide,omitempty"`
	// Dir is the program's working directory inside.
	Dir string `json:"dir"`
	// Env is the program's whole environment.
	Env []string `json:"env"`
	// Argv is the program and its arguments; Argv[0] is a path inside.
	Argv []string `json:"argv"`
}

// DefaultHidden are the entries of the host's /etc that a sandbox never
// shows: password and group shadows and backups, the gateway's and the
// cluster agents' configuration, the network namespaces' own files, host
// keys and private certificates.
var DefaultHidden = []string{
	"shadow", "shadow-", "gshadow", "gshadow-", "passwd-", "group-",
	"subuid", "subuid-", "subgid", "subgid-", "sudoers", "sudoers.d",
	"codehub", "netns", "nomad.d", "consul.d", "vault.d", "openbao",
	"ssl/private", "ssh/ssh_host_rsa_key", "ssh/ssh_host_ecdsa_key", "ssh/ssh_host_ed25519_key",
	"krb5.keytab", "mysql/debian.cnf", "security/opasswd", "machine-id",
}

// Validate checks what Init relies on.
func (s *Spec) Validate() error {
	var errs []error
	if !filepath.IsAbs(s.Root) {
		errs = append(errs, fmt.Errorf("root %q is not an absolute path", s.Root))
	}
	if s.UID <= 0 || s.GID <= 0 {
		errs = append(errs, fmt.Errorf("uid %d and gid %d must be those of an account other than root", s.UID, s.GID))
	}
	if len(s.Argv) == 0 || !filepath.IsAbs(s.Argv[0]) {
		errs = append(errs, errors.New("argv must start with an absolute path"))
	}
	if !filepath.IsAbs(s.Dir) {
		errs = append(errs, fmt.Errorf("dir %q is not an absolute path", s.Dir))
	}
	for _, p := range append(append([]string{}, s.ReadOnly...), s.Writable...) {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" {
			errs = append(errs, fmt.Errorf("bind %q is not a clean absolute path below /", p))
		}
	}
	for p := range s.Links {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" {
			errs = append(errs, fmt.Errorf("link %q is not a clean absolute path below /", p))
		}
	}
	for _, h := range s.Hide {
		if h == "" || filepath.IsAbs(h) || strings.Contains(h, "..") {
			errs = append(errs, fmt.Errorf("hidden /etc entry %q must be a relative path under /etc", h))
		}
	}
	if s.HideUIDs[0] > s.HideUIDs[1] {
		errs = append(errs, fmt.Errorf("hidden uid range %d-%d is empty", s.HideUIDs[0], s.HideUIDs[1]))
	}
	return errors.Join(errs...)
}

// WriteSpec stores spec, for Init, in file (mode 0600; its directory
// must be root's alone, since the spec says what the sandbox shows).
func WriteSpec(file string, spec Spec) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// readSpec reads a spec WriteSpec stored.
func readSpec(file string) (Spec, error) {
	var s Spec
	b, err := os.ReadFile(file)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", file, err)
	}
	return s, s.Validate()
}

// Cloneflags are the namespaces the clone that starts Init creates; Init
// adds the cgroup namespace itself, once it has been moved into its
// cgroup, and joins the network namespace.
const Cloneflags = syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC

// Command returns the command that starts a sandbox: self (the codehub
// binary, which must be reachable at that path) run as `self
// sandbox-init --spec specFile`, in a session of its own so that it
// outlives the gateway. The caller sets its standard files and
// environment, starts it, places it in its cgroup, then writes one byte
// to its stdin.
func Command(self, specFile string) *exec.Cmd {
	cmd := exec.Command(self, InitCommand, "--spec", specFile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: Cloneflags}
	return cmd
}

// IsInit reports whether cmdline (a /proc/<pid>/cmdline, NUL-separated)
// is that of a sandbox's init started by Command with self.
func IsInit(cmdline []byte, self string) bool {
	args := strings.Split(string(cmdline), "\x00")
	return len(args) >= 2 && filepath.Base(args[0]) == filepath.Base(self) && args[1] == InitCommand
}
