package nomad

import (
	"errors"
	"fmt"
	"os/exec"
	"os/user"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/nomad/api"
)

// What the exec and docker drivers do to a task's process, and the fake
// with it: the task's user, and the Linux capabilities Nomad computes from
// the driver's defaults, its allow_caps, and the task's cap_add and
// cap_drop. exec gives them to the process as ambient capabilities, so
// that a task running as an unprivileged user holds them (the exec task of
// a default job, user "nobody", holds these 13: CapEff 0xa80405fb); docker
// bounds the container with them, and a container user other than root
// holds none of them unless the image's files grant them. Only docker has
// a no-new-privileges switch (security_opt).

// defaultCaps is Nomad's capabilities.NomadDefaults(), also the drivers'
// default allow_caps: Docker's defaults without net_raw.
var defaultCaps = []string{"audit_write", "chown", "dac_override", "fowner", "fsetid", "kill", "mknod",
	"net_bind_service", "setfcap", "setgid", "setpcap", "setuid", "sys_chroot"}

// knownCaps are the capability names the fake accepts in cap_add and
// cap_drop (the kernel's, lower case, without CAP_).
var knownCaps = []string{"audit_control", "audit_read", "audit_write", "block_suspend", "bpf", "checkpoint_restore",
	"chown", "dac_override", "dac_read_search", "fowner", "fsetid", "ipc_lock", "ipc_owner", "kill", "lease",
	"linux_immutable", "mac_admin", "mac_override", "mknod", "net_admin", "net_bind_service", "net_broadcast",
	"net_raw", "perfmon", "setfcap", "setgid", "setpcap", "setuid", "sys_admin", "sys_boot", "sys_chroot",
	"sys_module", "sys_nice", "sys_pacct", "sys_ptrace", "sys_rawio", "sys_resource", "sys_time",
	"sys_tty_config", "syslog", "wake_alarm"}

// execConfigKeys are the exec driver's task configuration, and the Nomad
// version that added each.
var execConfigKeys = map[string]string{"command": "", "args": "", "pid_mode": "", "ipc_mode": "", "cap_add": "1.1.0",
	"cap_drop": "1.1.0", "work_dir": "1.8.0"}

// validateDriverConfig checks a task's config as the exec driver's
// schema does on the client (Nomad's servers do not): an argument the
// driver does not know fails the task.
func (s *Server) validateDriverConfig(t *api.Task) error {
	if t.Driver != "exec" {
		return nil
	}
	var errs []string
	keys := make([]string, 0, len(t.Config))
	for k := range t.Config {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		since, ok := execConfigKeys[k]
		if !ok || since != "" && VersionBefore(s.opts.Version, since) {
			errs = append(errs, fmt.Sprintf("* Invalid label: No argument or block type is named %q.", k))
		}
	}
	for _, k := range []string{"cap_add", "cap_drop"} {
		for _, c := range capList(t.Config[k]) {
			if c != "all" && !slices.Contains(knownCaps, c) {
				errs = append(errs, fmt.Sprintf("* %s configured with capabilities not supported by system: %s", k, c))
			}
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

// capList reads cap_add or cap_drop, lower case without CAP_, as Nomad
// normalizes them.
func capList(v any) []string {
	list, _ := v.([]any)
	var out []string
	for _, x := range list {
		c := strings.ToLower(strings.TrimPrefix(strings.ToUpper(fmt.Sprint(x)), "CAP_"))
		out = append(out, c)
	}
	return out
}

// security is how a task's process is started.
type security struct {
	raw      bool // raw_exec: as the fake's own process
	uid, gid int
	setUser  bool
	caps     []string // bounding set (and ambient, when ambient)
	ambient  bool
	noNew    bool
}

// driverSecurity computes a task's user and capabilities for its driver.
func (s *Server) driverSecurity(t *api.Task) (*security, error) {
	if t.Driver == "raw_exec" {
		return &security{raw: true}, nil
	}
	sec := &security{ambient: t.Driver == "exec"}
	name := t.User
	if name == "" && t.Driver == "exec" {
		name = "nobody"
	}
	if name != "" {
		uid, gid, err := s.lookupUser(name)
		if err != nil {
			return nil, err
		}
		sec.uid, sec.gid, sec.setUser = uid, gid, true
	}
	caps := slices.Clone(defaultCaps)
	drop := capList(t.Config["cap_drop"])
	if slices.Contains(drop, "all") {
		caps = nil
	} else {
		caps = slices.DeleteFunc(caps, func(c string) bool { return slices.Contains(drop, c) })
	}
	for _, c := range capList(t.Config["cap_add"]) {
		if c == "all" || !slices.Contains(defaultCaps, c) {
			return nil, fmt.Errorf("driver does not allow the following capabilities: %s", c)
		}
		if !slices.Contains(caps, c) {
			caps = append(caps, c)
		}
	}
	sec.caps = caps
	if opts, ok := t.Config["security_opt"].([]any); ok && t.Driver == "docker" {
		for _, o := range opts {
			if o == "no-new-privileges" || o == "no-new-privileges:true" {
				sec.noNew = true
			}
		}
	}
	return sec, nil
}

// lookupUser resolves a task's user: "uid[:gid]", a name of
// Options.Users, or one of this machine's accounts.
func (s *Server) lookupUser(name string) (int, int, error) {
	if u, g, ok := strings.Cut(name, ":"); ok || isDigits(name) {
		uid, err := strconv.Atoi(u)
		if err != nil {
			return 0, 0, fmt.Errorf("invalid user %q", name)
		}
		gid := uid
		if ok {
			if gid, err = strconv.Atoi(g); err != nil {
				return 0, 0, fmt.Errorf("invalid group in user %q", name)
			}
		}
		return uid, gid, nil
	}
	if a, ok := s.opts.Users[name]; ok {
		return a.UID, a.GID, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, fmt.Errorf("failed to identify user %q: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// command is the task's process: through setpriv (util-linux), which sets
// the user, the capability sets and no_new_privs before it execs the
// task's command, for the whole tree the task starts.
func (sec *security) command(command string, args []string) *exec.Cmd {
	if sec.raw {
		return exec.Command(command, args...)
	}
	set := "-all"
	for _, c := range sec.caps {
		set += ",+" + c
	}
	pa := []string{"--bounding-set=" + set, "--inh-caps=-all", "--ambient-caps=-all"}
	if sec.ambient {
		pa = []string{"--bounding-set=" + set, "--inh-caps=" + set, "--ambient-caps=" + set}
	}
	if sec.setUser {
		pa = append(pa, "--reuid="+strconv.Itoa(sec.uid), "--regid="+strconv.Itoa(sec.gid), "--clear-groups")
	}
	if sec.noNew {
		pa = append(pa, "--no-new-privs")
	}
	pa = append(pa, "--", command)
	return exec.Command("setpriv", append(pa, args...)...)
}
