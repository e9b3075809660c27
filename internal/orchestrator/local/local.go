// Package local runs workspaces as processes on the gateway's machine. With
// the "process" strategy each workspace is its own Unix account (from a uid
// range), in its own cgroup (memory, CPU and pids limits from the policy),
// on a home that is an ext4 image of the policy's size (the kernel enforces
// the quota), and in its own network namespace (its ports are its own),
// from which it cannot open connections to the host and, with Egress,
// reaches the internet through NAT.
// With the "directory" strategy, for installations without root, every
// workspace runs as the gateway's own account in a directory of its own:
// nothing but the layout separates users.
package local

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/cgroup"
	"github.com/codehub-dev/codehub/internal/netns"
	"github.com/codehub-dev/codehub/internal/osuser"
	"github.com/codehub-dev/codehub/internal/procenv"
	"github.com/codehub-dev/codehub/internal/quota"
	"github.com/codehub-dev/codehub/internal/sandbox"
	"github.com/codehub-dev/codehub/internal/userfs"
	"github.com/codehub-dev/codehub/internal/workspace"
	"github.com/hashicorp/go-hclog"
)

// Strategies.
const (
	StrategyProcess   = "process"
	StrategyDirectory = "directory"
)

// agentPort is where an agent listens inside its network namespace.
const agentPort = 7070

// Config configures the orchestrator.
type Config struct {
	// Strategy is StrategyProcess or StrategyDirectory.
	Strategy string
	// BasePath holds the workspaces' homes (and, for the process strategy,
	// their images under .images/).
	BasePath string
	// RuntimeDir holds each workspace's secret file; root-owned.
	RuntimeDir string
	// Agent is the codehub binary; CodeServer the code-server launcher.
	// Both must be reachable by the workspaces' accounts (see Runtime).
	Agent, CodeServer string
	// UIDMin and UIDMax bound the workspace accounts' uids.
	UIDMin, UIDMax int
	// Network gives each workspace its own network namespace (process
	// strategy): code-server's port forwarding then reaches only the
	// user's own servers, and the workspace cannot open connections to
	// the host (that needs iptables; without it New warns).
	Network bool
	// Egress, with Network, lets workspaces open connections to the
	// outside world: at each start the namespace is NATed through the
	// interface of the host's default route (netns.EnableNAT, which turns
	// on the host's IPv4 forwarding), and given a resolv.conf it can use
	// (netns.SetupDNS). With no default route the workspace starts
	// without egress, and the log says so.
	Egress bool
	// ExtraArgs are extra code-server arguments.
	ExtraArgs []string
	// Env is added to every agent's environment (LANG, proxies...).
	Env []string
	// ReadOnlyPaths are further host paths the process strategy's
	// sandboxes show, read-only (tools under /opt...).
	ReadOnlyPaths []string
	// CleanupGrace is how long Sweep waits before it deletes the account,
	// storage and home of an unclaimed workspace the registry no longer
	// has (default 1h; negative: at once).
	CleanupGrace time.Duration
	// ReadyTimeout bounds the wait for an agent to listen (default 30s).
	ReadyTimeout time.Duration
}

// Orchestrator is the local workspace.Orchestrator.
type Orchestrator struct {
	cfg Config
	log hclog.Logger

	mu     sync.Mutex
	netIdx map[int]string // network namespace index -> workspace

	// runtime are the paths of the agent and code-server that the
	// sandboxes bind read-only.
	runtime []string

	// firewall: iptables works, so namespaces are kept from the host and
	// can have egress.
	firewall bool
	// Problems of the host's, logged once rather than at every start.
	warnedNoRoute, warnedDNS atomic.Bool
}

var _ workspace.Orchestrator = (*Orchestrator)(nil)

// New returns an orchestrator; it creates the base and runtime directories.
func New(cfg Config, log hclog.Logger) (*Orchestrator, error) {
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 30 * time.Second
	}
	if cfg.CleanupGrace == 0 {
		cfg.CleanupGrace = time.Hour
	}
	switch cfg.Strategy {
	case StrategyProcess:
		if os.Geteuid() != 0 {
			return nil, errors.New(`isolation strategy "process" needs root (it creates accounts, cgroups and mounts); run as root or use "directory"`)
		}
		for _, tool := range []string{"useradd", "userdel", "mkfs.ext4", "mount", "ip"} {
			if _, err := exec.LookPath(tool); err != nil {
				return nil, fmt.Errorf(`isolation strategy "process" needs %s (Debian packages passwd, util-linux, e2fsprogs, iproute2)`, tool)
			}
		}
		if cfg.UIDMin <= 0 || cfg.UIDMax < cfg.UIDMin {
			return nil, fmt.Errorf("workspace uid range %d-%d is empty", cfg.UIDMin, cfg.UIDMax)
		}
	case StrategyDirectory:
	default:
		return nil, fmt.Errorf("unknown isolation strategy %q", cfg.Strategy)
	}
	if err := os.MkdirAll(cfg.BasePath, 0o711); err != nil {
		return nil, fmt.Errorf("workspace base path: %w", err)
	}
	if err := os.Chmod(cfg.BasePath, 0o711); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.RuntimeDir, 0o711); err != nil {
		return nil, fmt.Errorf("runtime directory: %w", err)
	}
	if cfg.Strategy == StrategyProcess {
		if err := reachable(cfg.BasePath); err != nil {
			return nil, fmt.Errorf("workspace base path %s: %w (workspace accounts must be able to reach their homes)", cfg.BasePath, err)
		}
		for _, p := range []string{cfg.Agent, cfg.CodeServer} {
			if err := reachable(p); err != nil {
				return nil, fmt.Errorf("%s is not reachable by workspace accounts: %w", p, err)
			}
		}
		if err := os.MkdirAll(filepath.Join(cfg.BasePath, ".images"), 0o700); err != nil {
			return nil, err
		}
	}
	o := &Orchestrator{cfg: cfg, log: log, netIdx: map[int]string{}}
	if cfg.Strategy == StrategyProcess {
		for _, d := range []string{o.sandboxRoot(), filepath.Dir(o.specFile(&workspace.Workspace{ID: "x"}))} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return nil, fmt.Errorf("sandbox directory: %w", err)
			}
			if err := os.Chmod(d, 0o700); err != nil {
				return nil, err
			}
		}
		paths, warn := runtimePaths(cfg.Agent, cfg.CodeServer)
		if warn != "" {
			log.Warn(warn)
		}
		o.runtime = paths
	}
	if cfg.Strategy == StrategyProcess && cfg.Network {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := netns.CheckFirewall(ctx); err != nil {
			log.Warn("iptables is not usable, so workspaces CAN open connections to this host: every service "+
				"listening on 0.0.0.0 (databases, Redis, Nomad or Consul agents...) is reachable from them, "+
				"and they get no internet access (egress). Install iptables (Debian package iptables) to close this",
				"error", err)
		} else {
			o.firewall = true
		}
	}
	return o, nil
}

// Name implements workspace.Orchestrator.
func (o *Orchestrator) Name() string { return "local" }

// Describe says, for the start-up log, what the strategy isolates and
// what it does not.
func (o *Orchestrator) Describe() string {
	if o.cfg.Strategy == StrategyDirectory {
		return "workspaces run as this account, one directory each, with NO isolation: every user can read and change " +
			"the others' files and this gateway's data, see and signal their processes and read their command lines, " +
			"reach their ports and every service of this host (its UNIX sockets included: databases, Docker, Nomad, Consul), " +
			"and no memory, CPU, process or storage limit applies. Run as root with isolation.strategy = \"process\" " +
			"for real isolation"
	}
	net := "share this host's network: they reach its services on every address, and its abstract UNIX sockets"
	switch {
	case o.cfg.Network && !o.firewall:
		net = "each have a network namespace of their own, without egress, from which THIS HOST'S SERVICES ARE REACHABLE " +
			"over TCP (no iptables)"
	case o.cfg.Network && o.cfg.Egress:
		net = "each have a network namespace of their own, reaching the internet through NAT (egress) but not this host"
	case o.cfg.Network:
		net = "each have a network namespace of their own, without egress (reaching neither the internet nor this host)"
	}
	return fmt.Sprintf("workspaces run as their own accounts (uid %d-%d) in sandboxes: their own mount namespace showing "+
		"only the system directories, /etc without its secrets, their home and the IDE runtime (no host UNIX socket, "+
		"no other home, nothing of /run or /var/lib), their own PID, IPC, UTS and cgroup namespaces, no capabilities, "+
		"no_new_privs and a seccomp filter; cgroups limit memory, CPU and processes, per-user ext4 images the storage; "+
		"they %s", o.cfg.UIDMin, o.cfg.UIDMax, net)
}

func short(id string) string { return strings.TrimPrefix(id, "ws-") }

func (o *Orchestrator) accountName(w *workspace.Workspace) string { return "codehub-" + short(w.ID) }
func (o *Orchestrator) cgroupName(w *workspace.Workspace) string  { return "codehub/" + w.ID }
func (o *Orchestrator) netnsName(w *workspace.Workspace) string   { return "codehub-" + short(w.ID) }
func (o *Orchestrator) imagePath(w *workspace.Workspace) string {
	return filepath.Join(o.cfg.BasePath, ".images", w.ID+".img")
}
func (o *Orchestrator) runDir(w *workspace.Workspace) string {
	return filepath.Join(o.cfg.RuntimeDir, w.ID)
}

// sandboxRoot is the empty directory every sandbox mounts its root on,
// each in its own mount namespace.
func (o *Orchestrator) sandboxRoot() string { return filepath.Join(o.cfg.RuntimeDir, ".sandbox-root") }

// specFile is where a workspace's sandbox spec is kept while it runs, in
// a directory of root's alone.
func (o *Orchestrator) specFile(w *workspace.Workspace) string {
	return filepath.Join(o.cfg.RuntimeDir, ".sandbox", w.ID+".json")
}

// Start implements workspace.Orchestrator.
func (o *Orchestrator) Start(ctx context.Context, spec workspace.Spec, progress func(string)) (_ workspace.Launched, err error) {
	w, p := spec.Workspace, spec.Policy
	if w.Home == "" {
		return workspace.Launched{}, errors.New("the workspace has no home path")
	}
	meta := map[string]string{"strategy": o.cfg.Strategy}
	uid, gid := os.Getuid(), os.Getgid()
	var (
		cg *cgroup.Group
		ns *netns.NS
	)
	defer func() {
		if err != nil { // leave nothing half made behind
			o.release(context.WithoutCancel(ctx), w, cg, ns)
		}
	}()

	progress("Preparing your home")
	if o.cfg.Strategy == StrategyProcess {
		acct, err := osuser.Ensure(ctx, osuser.Config{Name: o.accountName(w), UIDMin: o.cfg.UIDMin, UIDMax: o.cfg.UIDMax, Home: w.Home})
		if err != nil {
			return workspace.Launched{}, fmt.Errorf("workspace account: %w", err)
		}
		uid, gid = acct.UID, acct.GID
		meta["user"], meta["uid"], meta["gid"] = acct.Name, strconv.Itoa(uid), strconv.Itoa(gid)
		if err := o.mountHome(ctx, w, p, uid, gid); err != nil {
			return workspace.Launched{}, err
		}
		meta["image"] = o.imagePath(w)
	} else if err := os.MkdirAll(w.Home, 0o700); err != nil {
		return workspace.Launched{}, fmt.Errorf("workspace home: %w", err)
	}
	if err := ensureLayout(w.Home, uid, gid); err != nil {
		return workspace.Launched{}, fmt.Errorf("workspace layout: %w", err)
	}
	if w.UserID != "" {
		if err := o.linkUser(w, w.UserID); err != nil {
			return workspace.Launched{}, err
		}
	}

	listen := "127.0.0.1:0"
	if o.cfg.Strategy == StrategyProcess {
		cg, err = o.newCgroup(w, p)
		if err != nil {
			return workspace.Launched{}, err
		}
		meta["cgroup"] = cg.Name()
		if o.cfg.Network {
			ns, err = o.newNetns(ctx, w)
			if err != nil {
				return workspace.Launched{}, err
			}
			meta["netns"], meta["netns_index"] = ns.Name(), strconv.Itoa(ns.Index())
			if o.cfg.Egress && o.firewall {
				uplink, err := o.enableEgress(ctx, w, ns)
				if err != nil {
					return workspace.Launched{}, err
				}
				if uplink != "" {
					meta["egress"] = uplink
				}
			}
			listen = net.JoinHostPort(ns.Addr(), strconv.Itoa(agentPort))
		}
	}

	secretFile, err := o.writeSecret(w, uid, gid)
	if err != nil {
		return workspace.Launched{}, err
	}
	layout := workspace.Layout{Home: w.Home}
	args := []string{o.cfg.Agent, "agent",
		"--listen", listen,
		"--secret-file", secretFile,
		"--code-server", o.cfg.CodeServer,
		"--user-data-dir", layout.State(),
		"--extensions-dir", layout.Extensions(),
		"--folder", layout.Workspaces(),
		"--storage-path", w.Home,
		"--storage-limit", strconv.FormatInt(int64(p.StorageMB)<<20, 10),
		"--wait-start",
		"--log-format", "json",
	}
	for _, a := range o.cfg.ExtraArgs {
		args = append(args, "--extra-arg", a)
	}
	env := append([]string{
		"HOME=" + w.Home,
		"USER=" + filepath.Base(w.Home),
		"SHELL=/bin/bash",
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"TERM=xterm-256color",
		workspaceMark(w),
	}, o.cfg.Env...)

	var cmd *exec.Cmd
	if o.cfg.Strategy == StrategyProcess {
		// The agent starts inside the workspace's sandbox: its own
		// mount, PID, IPC, UTS and cgroup namespaces, as its account,
		// without privileges, under the seccomp filter.
		sb := sandbox.Spec{
			Root:     o.sandboxRoot(),
			Hostname: "workspace",
			UID:      uid, GID: gid,
			HideUIDs: [2]int{o.cfg.UIDMin, o.cfg.UIDMax},
			ReadOnly: append(append([]string{o.runDir(w)}, o.runtime...), o.cfg.ReadOnlyPaths...),
			Writable: []string{w.Home},
			Dir:      w.Home,
			Env:      env,
			Argv:     args,
		}
		if w.UserID != "" {
			sb.Links = map[string]string{filepath.Join(o.cfg.BasePath, w.UserID): filepath.Base(w.Home)}
		}
		if ns != nil {
			sb.NetNS = ns.Path()
			sb.ResolvConf = filepath.Join(netns.EtcDir, ns.Name(), "resolv.conf")
		}
		specFile := o.specFile(w)
		if err := sandbox.WriteSpec(specFile, sb); err != nil {
			return workspace.Launched{}, fmt.Errorf("workspace sandbox: %w", err)
		}
		cmd = sandbox.Command(o.cfg.Agent, specFile)
		cmd.Env = []string{workspaceMark(w)}
	} else {
		cmd = exec.Command(args[0], args[1:]...)
		cmd.Env = env
		// Its own session: the agent outlives a gateway restart.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	cmd.Dir = w.Home

	progress("Starting your editor")
	launched, err := o.launch(ctx, w, cmd, uid, gid, cg)
	if err != nil {
		return workspace.Launched{}, err
	}
	launched.Meta = meta
	return launched, nil
}

// mountHome gives the workspace its storage: an ext4 image that holds the
// policy's storage, mounted on its home, owned by its account, mode 0700.
func (o *Orchestrator) mountHome(ctx context.Context, w *workspace.Workspace, p workspace.Policy, uid, gid int) error {
	// The user gets the policy's storage to write; the image is larger by
	// ext4's own. It grows with the policy (offline, which needs no
	// CAP_SYS_RESOURCE), never shrinking under a user's files.
	err := quota.Provision(ctx, o.imagePath(w), w.Home, int64(p.StorageMB)<<20,
		quota.CreateOptions{UID: uid, GID: gid}, quota.MountOptions{NoSuid: true, NoDev: true})
	if errors.Is(err, quota.ErrShort) {
		o.log.Warn("could not give the workspace all of its storage; it keeps what it has", "workspace", w.ID, "error", err)
	} else if err != nil {
		return fmt.Errorf("storage of %d MiB: %w", p.StorageMB, err)
	}
	if err := os.Chown(w.Home, uid, gid); err != nil {
		return err
	}
	return os.Chmod(w.Home, 0o700)
}

// ensureLayout creates the per-user tree (through the scoped file layer):
// the files code-server reads live in state/User, linked from the top.
func ensureLayout(home string, uid, gid int) error {
	fsys, err := userfs.Open(home)
	if err != nil {
		return err
	}
	defer fsys.Close()
	for _, d := range []string{"extensions", "workspaces", "state/User", "logs"} {
		if err := fsys.MkdirAll(d, 0o700); err != nil {
			return err
		}
		if err := fsys.Chown(d, uid, gid); err != nil {
			return err
		}
	}
	if err := fsys.Chown("state", uid, gid); err != nil {
		return err
	}
	for _, f := range []string{"settings.json", "keybindings.json"} {
		real := "state/User/" + f
		if _, err := fsys.Lstat(real); errors.Is(err, os.ErrNotExist) {
			body := "{}\n"
			if f == "keybindings.json" {
				body = "[]\n"
			}
			if err := fsys.WriteFile(real, []byte(body), 0o600); err != nil {
				return err
			}
			if err := fsys.Chown(real, uid, gid); err != nil {
				return err
			}
		}
		if _, err := fsys.Lstat(f); errors.Is(err, os.ErrNotExist) {
			if err := fsys.Symlink(real, f); err != nil {
				return err
			}
			if err := fsys.Lchown(f, uid, gid); err != nil {
				return err
			}
		}
	}
	return nil
}

// linkUser makes <base>/<user-id> name the workspace's home.
func (o *Orchestrator) linkUser(w *workspace.Workspace, userID string) error {
	if strings.ContainsAny(userID, "/\\") || userID == "" || userID[0] == '.' {
		return fmt.Errorf("user id %q cannot name a directory", userID)
	}
	link := filepath.Join(o.cfg.BasePath, userID)
	target := filepath.Base(w.Home)
	if cur, err := os.Readlink(link); err == nil {
		if cur == target {
			return nil
		}
		return fmt.Errorf("%s already names another workspace (%s)", link, cur)
	}
	if err := os.Symlink(target, link); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("link the user's home: %w", err)
	}
	return nil
}

func (o *Orchestrator) newCgroup(w *workspace.Workspace, p workspace.Policy) (*cgroup.Group, error) {
	cfg := cgroup.Config{
		Name:        o.cgroupName(w),
		MemoryBytes: int64(p.HardMemoryMB()) << 20,
		CPUPercent:  p.CPUPercent,
		Pids:        int64(p.Pids),
	}
	cg, err := cgroup.New(cfg)
	if errors.Is(err, cgroup.ErrExists) { // left over from a crash
		if old, oerr := cgroup.Open(cfg.Name); oerr == nil {
			_ = old.Kill()
			_ = old.Remove()
		}
		cg, err = cgroup.New(cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("workspace cgroup: %w", err)
	}
	return cg, nil
}

// newNetns gives the workspace a network namespace, at an index derived
// from its id (probing on collisions).
func (o *Orchestrator) newNetns(ctx context.Context, w *workspace.Workspace) (*netns.NS, error) {
	name := o.netnsName(w)
	if old, err := netns.Open(ctx, name); err == nil { // left over from a crash
		_ = old.Delete(ctx)
	} else if err := netns.Remove(ctx, name); err != nil { // or what is left of one
		o.log.Warn("remove what is left of an old network namespace", "workspace", w.ID, "error", err)
	}
	sum := sha256.Sum256([]byte(w.ID))
	start := int(binary.BigEndian.Uint32(sum[:4]) % uint32(netns.MaxIndex+1))
	for i := 0; i <= netns.MaxIndex; i++ {
		idx := (start + i) % (netns.MaxIndex + 1)
		o.mu.Lock()
		_, taken := o.netIdx[idx]
		if !taken {
			o.netIdx[idx] = w.ID
		}
		o.mu.Unlock()
		if taken {
			continue
		}
		ns, err := netns.Create(ctx, netns.Config{Name: name, Index: idx, HostAccess: !o.firewall})
		if errors.Is(err, netns.ErrExists) {
			continue // another gateway's namespace uses this index
		}
		if err != nil {
			o.mu.Lock()
			delete(o.netIdx, idx)
			o.mu.Unlock()
			return nil, fmt.Errorf("workspace network: %w", err)
		}
		return ns, nil
	}
	return nil, errors.New("workspace network: no free address")
}

// enableEgress NATs the namespace through the uplink of the host's default
// route and makes its name resolution work. It returns the uplink, or ""
// when the host has no default route: the workspace then starts without
// egress rather than not at all.
func (o *Orchestrator) enableEgress(ctx context.Context, w *workspace.Workspace, ns *netns.NS) (string, error) {
	uplink, err := netns.DefaultUplink(ctx)
	if errors.Is(err, netns.ErrNoRoute) {
		if !o.warnedNoRoute.Swap(true) {
			o.log.Warn("this host has no IPv4 default route: workspaces start without internet access (egress) "+
				"until it has one (this is logged once)", "workspace", w.ID)
		}
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("workspace egress: %w", err)
	}
	o.warnedNoRoute.Store(false) // a route lost again is worth a warning again
	if err := ns.EnableNAT(ctx, uplink); err != nil {
		return "", fmt.Errorf("workspace egress: %w", err)
	}
	if err := ns.SetupDNS(); err != nil {
		if !errors.Is(err, netns.ErrNoResolver) {
			o.log.Warn("workspace name resolution", "workspace", w.ID, "error", err)
		} else if !o.warnedDNS.Swap(true) {
			o.log.Warn("workspaces cannot resolve names: the host's name servers are out of their reach, "+
				"and no upstream list names others (this is logged once)", "workspace", w.ID, "error", err)
		}
	}
	return uplink, nil
}

// writeSecret stores the secret where only the workspace's account reads it.
func (o *Orchestrator) writeSecret(w *workspace.Workspace, uid, gid int) (string, error) {
	dir := o.runDir(w)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return "", err
	}
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte(w.Secret), 0o600); err != nil {
		return "", err
	}
	if err := os.Chown(file, uid, gid); err != nil {
		return "", err
	}
	return file, nil
}

// launch starts the agent (or the sandbox that starts it) in its own
// session, so that it outlives the gateway, puts it into its cgroup
// before it may start anything, and waits for the line saying where the
// agent listens.
func (o *Orchestrator) launch(ctx context.Context, w *workspace.Workspace, cmd *exec.Cmd, uid, gid int, cg *cgroup.Group) (workspace.Launched, error) {
	layout := workspace.Layout{Home: w.Home}
	logFile, err := os.OpenFile(filepath.Join(layout.Logs(), "agent.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return workspace.Launched{}, fmt.Errorf("agent log: %w", err)
	}
	defer logFile.Close()
	_ = logFile.Chown(uid, gid)
	cmd.Stderr = logFile
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return workspace.Launched{}, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return workspace.Launched{}, err
	}
	if err := cmd.Start(); err != nil {
		return workspace.Launched{}, fmt.Errorf("start the agent: %w", err)
	}
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		exited <- cmd.Wait() // reap it while this gateway is its parent
	}()
	if cg != nil {
		if err := cg.Add(pid); err != nil {
			_ = cmd.Process.Kill()
			return workspace.Launched{}, fmt.Errorf("place the agent in its cgroup: %w", err)
		}
	}
	// The sandbox (or the agent) waits for this byte before it starts
	// anything.
	_, _ = stdin.Write([]byte{'\n'})
	stdin.Close()

	timer := time.NewTimer(o.cfg.ReadyTimeout)
	defer timer.Stop()
	for {
		select {
		case line := <-lines:
			if addr, ok := strings.CutPrefix(line, agentapi.ReadyPrefix); ok {
				return workspace.Launched{Address: strings.TrimSpace(addr), PID: pid}, nil
			}
		case err := <-exited:
			return workspace.Launched{}, fmt.Errorf("the agent exited while starting (%v); see %s", err, filepath.Join(layout.Logs(), "agent.log"))
		case <-timer.C:
			_ = cmd.Process.Kill()
			return workspace.Launched{}, fmt.Errorf("the agent did not start listening within %s", o.cfg.ReadyTimeout)
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return workspace.Launched{}, ctx.Err()
		}
	}
}

// Stop implements workspace.Orchestrator: ask the agent to stop, then make
// sure, then free what it held (the image and home stay).
func (o *Orchestrator) Stop(ctx context.Context, w *workspace.Workspace) error {
	if w.Address != "" && w.Secret != "" {
		o.askStop(ctx, w)
	}
	if w.PID > 0 && o.isAgent(w.PID) {
		if !waitGone(ctx, w.PID, 15*time.Second) {
			if cg := o.openCgroup(w); cg != nil {
				_ = cg.Kill()
			}
			_ = syscall.Kill(-w.PID, syscall.SIGKILL) // its session's process group
			waitGone(ctx, w.PID, 5*time.Second)
		}
	}
	o.cleanup(ctx, w)
	return nil
}

// openCgroup returns the workspace's cgroup if it exists.
func (o *Orchestrator) openCgroup(w *workspace.Workspace) *cgroup.Group {
	names := []string{w.Meta["cgroup"]}
	if o.cfg.Strategy == StrategyProcess {
		names = append(names, o.cgroupName(w)) // a start cut short recorded none
	}
	for _, name := range names {
		if name == "" {
			continue
		}
		if cg, err := cgroup.Open(name); err == nil {
			return cg
		}
	}
	return nil
}

// cleanup frees everything the host may hold of w while it runs, found
// by the names derived from its id as well as by what Start recorded, so
// that a start cut short (the gateway killed before it recorded
// anything) is undone too. Freeing what is not there is no error.
func (o *Orchestrator) cleanup(ctx context.Context, w *workspace.Workspace) {
	cg := o.openCgroup(w)
	var ns *netns.NS
	name := w.Meta["netns"]
	if name == "" && o.cfg.Strategy == StrategyProcess {
		name = o.netnsName(w)
	}
	if name != "" {
		var err error
		if ns, err = netns.Open(ctx, name); err != nil {
			// Nothing to attach to, but its rules and files may be left.
			if err := netns.Remove(ctx, name); err != nil {
				o.log.Warn("remove what is left of the workspace's network namespace", "workspace", w.ID, "error", err)
			}
		}
	}
	o.release(ctx, w, cg, ns)
}

// release frees what a workspace held while running.
func (o *Orchestrator) release(ctx context.Context, w *workspace.Workspace, cg *cgroup.Group, ns *netns.NS) {
	if cg != nil {
		_ = cg.Kill()
	}
	o.killLeftovers(ctx, w)
	if cg != nil {
		if err := cg.Remove(); err != nil {
			o.log.Warn("remove workspace cgroup", "workspace", w.ID, "error", err)
		}
	}
	if ns != nil {
		idx := ns.Index()
		if err := ns.Delete(ctx); err != nil {
			o.log.Warn("delete workspace network namespace", "workspace", w.ID, "error", err)
		}
		o.mu.Lock()
		delete(o.netIdx, idx)
		o.mu.Unlock()
	}
	if o.cfg.Strategy == StrategyProcess && w.Home != "" {
		if mounted, _ := quota.IsMounted(w.Home); mounted {
			if err := quota.Unmount(ctx, w.Home); err != nil {
				o.log.Warn("unmount workspace storage", "workspace", w.ID, "error", err)
			}
		}
	}
	_ = os.RemoveAll(o.runDir(w))
	_ = os.Remove(o.specFile(w))
}

// workspaceMark is the environment entry every process of a workspace
// inherits from its agent.
func workspaceMark(w *workspace.Workspace) string { return markKey + "=" + w.ID }

// markKey is the variable of the mark.
const markKey = "CODEHUB_WORKSPACE_ID"

// killLeftovers ends the processes of a workspace that outlived its agent:
// when the agent is killed outright, code-server's processes are
// re-parented rather than ended, and without a cgroup (the directory
// strategy) nothing else ends them. They are found by the mark in their
// environment, among the processes of the workspace's account.
func (o *Orchestrator) killLeftovers(ctx context.Context, w *workspace.Workspace) {
	uid := os.Geteuid()
	if s := w.Meta["uid"]; s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			uid = n
		}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	n, err := procenv.Kill(ctx, uid, workspaceMark(w))
	if err != nil {
		o.log.Warn("end the workspace's remaining processes", "workspace", w.ID, "error", err)
	}
	if n > 0 {
		o.log.Info("ended processes the workspace's agent left behind", "workspace", w.ID, "processes", n)
	}
}

// askStop asks the agent to stop (it stops code-server first).
func (o *Orchestrator) askStop(ctx context.Context, w *workspace.Workspace) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+w.Address+agentapi.PathStop, nil)
	if err != nil {
		return
	}
	req.Header.Set(agentapi.SecretHeader, w.Secret)
	req.Header.Set(agentapi.ControlHeader, w.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// isAgent reports whether pid is still a codehub agent, or the sandbox
// that runs one (not a reused pid).
func (o *Orchestrator) isAgent(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	if sandbox.IsInit(b, o.cfg.Agent) {
		return true
	}
	args := strings.Split(string(b), "\x00")
	for i, a := range args {
		if a == "agent" && i > 0 && strings.HasSuffix(args[i-1], filepath.Base(o.cfg.Agent)) {
			return true
		}
	}
	return false
}

// waitGone waits until pid has exited (or is a zombie).
func waitGone(ctx context.Context, pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if !procenv.Alive(pid) {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Alive implements workspace.Orchestrator.
func (o *Orchestrator) Alive(_ context.Context, w *workspace.Workspace) (bool, error) {
	return w.PID > 0 && o.isAgent(w.PID), nil
}

// Assign implements workspace.Orchestrator: the warm workspace's home
// becomes the user's, under <base>/<user-id> on the host and, for the
// process strategy, inside the running sandbox too.
func (o *Orchestrator) Assign(ctx context.Context, w *workspace.Workspace, userID, username string) error {
	if err := o.linkUser(w, userID); err != nil {
		return err
	}
	if o.cfg.Strategy != StrategyProcess || w.PID <= 0 || !o.isAgent(w.PID) {
		return nil
	}
	// The sandbox's own mount namespace; its /var, where the base path
	// lies, is a tmpfs root may write to.
	link := filepath.Join(o.cfg.BasePath, userID)
	out, err := exec.CommandContext(ctx, "nsenter", "--target", strconv.Itoa(w.PID), "--mount", "--",
		"ln", "-sfn", filepath.Base(w.Home), link).CombinedOutput()
	if err != nil {
		return fmt.Errorf("link the user's home inside the workspace: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// reachable checks that every directory on the way to path can be
// traversed by others, and the file itself read, as a workspace account
// must.
func reachable(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o005 == 0 {
		return fmt.Errorf("%s is not readable by others (mode %v)", abs, fi.Mode().Perm())
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("directory %s cannot be traversed by others (mode %v)", dir, fi.Mode().Perm())
		}
		if dir == "/" || dir == filepath.Dir(dir) {
			return nil
		}
	}
}
