// Package cgroup puts each workspace's processes in a control group of
// their own, so that one user's build cannot take the memory, the CPU or
// the process table from the others, and so that stopping a workspace
// kills every process it left behind.
//
// Both hierarchies are supported: cgroup v2 (the unified hierarchy, mounted
// at /sys/fs/cgroup) and cgroup v1 (one hierarchy per controller under
// /sys/fs/cgroup/<controller>, found through /proc/self/mountinfo). On v1
// a group is one directory in each of the memory, cpu, cpuacct and pids
// hierarchies; on v2 it is one directory whose ancestors delegate the
// memory, cpu and pids controllers to it.
//
// A group's name is a path relative to the hierarchy root, such as
// "codehub/ws-123": its parent ("codehub") is shared by every workspace
// and is created, never removed, by this package. Under systemd on v2 the
// root belongs to systemd; run the gateway with Delegate=yes in a slice of
// its own, or accept that these groups live outside systemd's tree.
//
// All operations are writes to cgroupfs, which do not block; only Remove
// waits, briefly, for a dying process to leave.
package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Error is the type of the package's sentinel errors; they are constants so
// that no caller can reassign them.
type Error string

// Error returns the message.
func (e Error) Error() string { return string(e) }

// Errors returned by this package; test with errors.Is.
const (
	// ErrNotFound: Open found no such group.
	ErrNotFound Error = "no such cgroup"
	// ErrExists: New found the group already there (re-attach with Open).
	ErrExists Error = "cgroup already exists"
	// ErrUnsupported: no usable cgroup hierarchy, or a controller is missing.
	ErrUnsupported Error = "cgroups unsupported"
	// ErrInvalid: a bad name or limit.
	ErrInvalid Error = "invalid cgroup config"
)

// Version is the cgroup hierarchy in use.
type Version int

// The cgroup versions.
const (
	V1 Version = 1
	V2 Version = 2
)

// String returns "cgroup v1" or "cgroup v2".
func (v Version) String() string { return "cgroup v" + strconv.Itoa(int(v)) }

const (
	// Root is where cgroupfs is mounted.
	Root = "/sys/fs/cgroup"
	// cfsPeriodUs is the CPU bandwidth period: CPUPercent of one CPU is
	// CPUPercent*1000µs of CPU time per 100ms.
	cfsPeriodUs = 100_000
	// removeTries × removeWait bounds how long Remove waits for the last
	// processes of a killed group to leave it.
	removeTries = 100
	removeWait  = 20 * time.Millisecond
	// killRounds bounds Kill's read-and-kill loop on v1, where a process
	// may fork between the read and the kill.
	killRounds = 1000
)

// Config says what group New creates.
type Config struct {
	// Name is the group's path below the hierarchy root: components of
	// [A-Za-z0-9_-] separated by "/", e.g. "codehub/ws-123".
	Name string
	// MemoryBytes caps RAM (and swap: none is allowed) for the whole
	// group; past it the kernel's OOM killer kills a process of the group.
	// 0 means no limit.
	MemoryBytes int64
	// CPUPercent caps CPU time, in percent of one CPU: 50 is half a CPU,
	// 200 two CPUs. 0 means no limit.
	CPUPercent int
	// Pids caps the number of processes and threads. 0 means no limit.
	Pids int64
}

func (c Config) validate() error {
	if err := validName(c.Name); err != nil {
		return err
	}
	if c.MemoryBytes < 0 || c.CPUPercent < 0 || c.Pids < 0 {
		return fmt.Errorf("%w: negative limit in %+v", ErrInvalid, c)
	}
	return nil
}

func validName(name string) error {
	if name == "" || len(name) > 255 {
		return fmt.Errorf("%w: name %q", ErrInvalid, name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == "" {
			return fmt.Errorf("%w: name %q has an empty component", ErrInvalid, name)
		}
		for _, c := range part {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				return fmt.Errorf("%w: name %q: only [A-Za-z0-9_-] and /", ErrInvalid, name)
			}
		}
	}
	return nil
}

// Stats is a group's resource use.
type Stats struct {
	// MemoryBytes is the memory charged to the group now, page cache
	// included (the kernel reclaims cache before it kills).
	MemoryBytes int64
	// MemoryPeakBytes is the most ever charged; 0 on v2 kernels before 5.19.
	MemoryPeakBytes int64
	// CPUSeconds is the CPU time used by the group's processes, living and
	// dead.
	CPUSeconds float64
	// Pids is the number of processes and threads in the group.
	Pids int64
	// OOMKills counts processes of the group the OOM killer killed.
	OOMKills int64
}

// Group is one control group.
type Group struct {
	name    string
	version Version
	// dirs maps each controller to the group's directory in its hierarchy
	// (on v2, and for co-mounted v1 controllers, several map to one).
	dirs map[string]string
}

// The controllers a group uses; on v1, cpuacct reports the CPU usage.
func v1Controllers() []string { return []string{"memory", "cpu", "cpuacct", "pids"} }
func v2Controllers() []string { return []string{"memory", "cpu", "pids"} }

// Detect reports which cgroup hierarchy the machine runs: v2 when
// /sys/fs/cgroup is the unified hierarchy, else v1 when the v1 memory, cpu
// and pids controllers are mounted. A "hybrid" machine (v1 controllers,
// plus an empty v2 tree at /sys/fs/cgroup/unified) is v1.
func Detect() (Version, error) {
	if _, err := os.Stat(filepath.Join(Root, "cgroup.controllers")); err == nil {
		return V2, nil
	}
	mounts, err := v1Mounts()
	if err != nil {
		return 0, err
	}
	if len(mounts) == 0 {
		return 0, fmt.Errorf("%w: no cgroup hierarchy mounted", ErrUnsupported)
	}
	return V1, nil
}

// New creates the group cfg.Name with cfg's limits, and its parents if
// needed. Returns ErrExists if the group exists (after a gateway restart:
// Open it, Kill and Remove it, or keep it) and ErrUnsupported if a needed
// controller is not available.
func New(cfg Config) (*Group, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	v, err := Detect()
	if err != nil {
		return nil, err
	}
	if v == V2 {
		return newV2(Root, cfg, v2Controllers())
	}
	return newV1(cfg)
}

// Open re-attaches to the existing group name, for instance after a
// gateway restart. Returns ErrNotFound if it does not exist.
func Open(name string) (*Group, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	v, err := Detect()
	if err != nil {
		return nil, err
	}
	var g *Group
	if v == V2 {
		g = v2Group(Root, name, v2Controllers())
	} else {
		mounts, err := v1Mounts()
		if err != nil {
			return nil, err
		}
		if g, err = v1Group(mounts, name); err != nil {
			return nil, err
		}
	}
	for _, dir := range g.unique() {
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("open cgroup %s: %s: %w", name, dir, ErrNotFound)
		} else if err != nil {
			return nil, fmt.Errorf("open cgroup %s: %w", name, err)
		}
	}
	return g, nil
}

func newV1(cfg Config) (*Group, error) {
	mounts, err := v1Mounts()
	if err != nil {
		return nil, err
	}
	g, err := v1Group(mounts, cfg.Name)
	if err != nil {
		return nil, err
	}
	if err := g.create(); err != nil {
		return nil, err
	}
	if err := g.setV1Limits(cfg); err != nil {
		return nil, errors.Join(err, g.Remove())
	}
	return g, nil
}

func v1Group(mounts map[string]string, name string) (*Group, error) {
	g := &Group{name: name, version: V1, dirs: make(map[string]string)}
	for _, c := range v1Controllers() {
		m, ok := mounts[c]
		if !ok {
			return nil, fmt.Errorf("%w: v1 controller %s is not mounted", ErrUnsupported, c)
		}
		g.dirs[c] = filepath.Join(m, name)
	}
	return g, nil
}

func (g *Group) setV1Limits(cfg Config) error {
	if cfg.MemoryBytes > 0 {
		lim := strconv.FormatInt(cfg.MemoryBytes, 10)
		if err := g.write("memory", "memory.limit_in_bytes", lim); err != nil {
			return err
		}
		// RAM+swap gets the same cap, so that the cap cannot be evaded by
		// swapping; without swap accounting, tell the group not to swap.
		if g.exists("memory", "memory.memsw.limit_in_bytes") {
			if err := g.write("memory", "memory.memsw.limit_in_bytes", lim); err != nil {
				return err
			}
		} else if err := g.write("memory", "memory.swappiness", "0"); err != nil {
			return err
		}
	}
	if cfg.CPUPercent > 0 {
		if err := g.write("cpu", "cpu.cfs_period_us", strconv.Itoa(cfsPeriodUs)); err != nil {
			return err
		}
		if err := g.write("cpu", "cpu.cfs_quota_us", strconv.Itoa(cfg.CPUPercent*cfsPeriodUs/100)); err != nil {
			return err
		}
	}
	if cfg.Pids > 0 {
		if err := g.write("pids", "pids.max", strconv.FormatInt(cfg.Pids, 10)); err != nil {
			return err
		}
	}
	return nil
}

// newV2 creates the group under root, delegating ctrls to it from every
// ancestor. Tests pass another root and fewer controllers to exercise the
// v2 code on a v1 ("hybrid") machine.
func newV2(root string, cfg Config, ctrls []string) (*Group, error) {
	need := map[string]bool{"memory": cfg.MemoryBytes > 0, "cpu": cfg.CPUPercent > 0, "pids": cfg.Pids > 0}
	for c, needed := range need {
		if needed && !slices.Contains(ctrls, c) {
			return nil, fmt.Errorf("%w: limit needs controller %s", ErrUnsupported, c)
		}
	}
	avail, err := readWords(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	for _, c := range ctrls {
		if !slices.Contains(avail, c) {
			return nil, fmt.Errorf("%w: v2 controller %s not available in %s (bound to a v1 hierarchy?)", ErrUnsupported, c, root)
		}
	}
	// Delegate the controllers down to the group's parent: a controller is
	// usable in a group only if every ancestor enables it for its children.
	dir := root
	parts := strings.Split(cfg.Name, "/")
	for i, part := range parts {
		if i > 0 {
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return nil, fmt.Errorf("create cgroup %s: %w", dir, err)
			}
		}
		if err := enable(dir, ctrls); err != nil {
			return nil, err
		}
		dir = filepath.Join(dir, part)
	}
	g := v2Group(root, cfg.Name, ctrls)
	if err := g.create(); err != nil {
		return nil, err
	}
	if err := g.setV2Limits(cfg); err != nil {
		return nil, errors.Join(err, g.Remove())
	}
	return g, nil
}

func v2Group(root, name string, ctrls []string) *Group {
	g := &Group{name: name, version: V2, dirs: map[string]string{"": filepath.Join(root, name)}}
	for _, c := range ctrls {
		g.dirs[c] = g.dirs[""]
	}
	return g
}

// enable turns ctrls on in dir's cgroup.subtree_control. It fails if dir
// holds processes itself (v2's "no internal processes" rule).
func enable(dir string, ctrls []string) error {
	file := filepath.Join(dir, "cgroup.subtree_control")
	on, err := readWords(file)
	if err != nil {
		return err
	}
	var add []string
	for _, c := range ctrls {
		if !slices.Contains(on, c) {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	if err := os.WriteFile(file, []byte(strings.Join(add, " ")), 0); err != nil {
		return fmt.Errorf("enable %s in %s: %w", strings.Join(add, " "), dir, err)
	}
	return nil
}

func (g *Group) setV2Limits(cfg Config) error {
	if cfg.MemoryBytes > 0 {
		if err := g.write("memory", "memory.max", strconv.FormatInt(cfg.MemoryBytes, 10)); err != nil {
			return err
		}
		// No swap, so that the cap on RAM is a cap on memory.
		if g.exists("memory", "memory.swap.max") {
			if err := g.write("memory", "memory.swap.max", "0"); err != nil {
				return err
			}
		}
	}
	if cfg.CPUPercent > 0 {
		v := fmt.Sprintf("%d %d", cfg.CPUPercent*cfsPeriodUs/100, cfsPeriodUs)
		if err := g.write("cpu", "cpu.max", v); err != nil {
			return err
		}
	}
	if cfg.Pids > 0 {
		if err := g.write("pids", "pids.max", strconv.FormatInt(cfg.Pids, 10)); err != nil {
			return err
		}
	}
	return nil
}

// Name returns the group's name, as given to New or Open.
func (g *Group) Name() string { return g.name }

// Version returns the hierarchy the group lives in.
func (g *Group) Version() Version { return g.version }

// unique returns the group's directories, each once, in a stable order.
func (g *Group) unique() []string {
	var dirs []string
	for _, d := range g.dirs {
		if !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	slices.Sort(dirs)
	return dirs
}

// create makes the group's directories (and their parents); if one exists
// already it undoes what it made and returns ErrExists.
func (g *Group) create() error {
	var made []string
	for _, dir := range g.unique() {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return errors.Join(fmt.Errorf("create cgroup %s: %w", g.name, err), rmdirs(made))
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			if errors.Is(err, fs.ErrExist) {
				err = fmt.Errorf("create cgroup %s: %s: %w", g.name, dir, ErrExists)
			} else {
				err = fmt.Errorf("create cgroup %s: %w", g.name, err)
			}
			return errors.Join(err, rmdirs(made))
		}
		made = append(made, dir)
	}
	return nil
}

func rmdirs(dirs []string) error {
	var errs []error
	for _, d := range dirs {
		if err := unix.Rmdir(d); err != nil && err != unix.ENOENT {
			errs = append(errs, fmt.Errorf("rmdir %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// Add moves process pid (all its threads) into the group. Its children
// are born in the group; add a process before it starts the work to limit.
func (g *Group) Add(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("%w: pid %d", ErrInvalid, pid)
	}
	for _, dir := range g.unique() {
		file := filepath.Join(dir, "cgroup.procs")
		if err := os.WriteFile(file, []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("add pid %d to cgroup %s: %w", pid, g.name, err)
		}
	}
	return nil
}

// Procs returns the ids of the processes in the group, sorted. Returns
// ErrNotFound if the group was removed.
func (g *Group) Procs() ([]int, error) {
	var pids []int
	for _, dir := range g.unique() {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("procs of cgroup %s: %s: %w", g.name, dir, ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("procs of cgroup %s: %w", g.name, err)
		}
		for _, f := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("procs of cgroup %s: %q: %w", g.name, f, err)
			}
			if !slices.Contains(pids, pid) {
				pids = append(pids, pid)
			}
		}
	}
	slices.Sort(pids)
	return pids, nil
}

// Kill sends SIGKILL to every process in the group, including those forked
// while it runs. It returns once every process was signalled; they leave the
// group when the kernel has reaped them (Remove waits for that).
//
// On v2 (kernel 5.14+) the kernel does it atomically through cgroup.kill.
// On v1 Kill repeats read-and-kill until a read shows nobody new: a process
// with a pending SIGKILL cannot fork. Between reading a pid and killing it
// the process could exit and its pid be reused; pids are not reused
// quickly, so this window is accepted.
//
// Killing a group that was removed succeeds: nothing runs in it.
func (g *Group) Kill() error {
	if g.version == V2 && g.exists("", "cgroup.kill") {
		if err := g.write("", "cgroup.kill", "1"); err != nil {
			return err
		}
		return nil
	}
	killed := make(map[int]bool)
	for range killRounds {
		pids, err := g.Procs()
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		fresh := 0
		for _, pid := range pids {
			if killed[pid] {
				continue
			}
			killed[pid] = true
			fresh++
			if err := unix.Kill(pid, unix.SIGKILL); err != nil && err != unix.ESRCH {
				return fmt.Errorf("kill pid %d of cgroup %s: %w", pid, g.name, err)
			}
		}
		if fresh == 0 {
			return nil
		}
	}
	return fmt.Errorf("kill cgroup %s: processes still appearing after %d rounds", g.name, killRounds)
}

// Remove deletes the group. It must be empty: Kill it first; Remove waits
// briefly (about two seconds) for killed processes to leave. Removing a
// group that is already gone succeeds.
func (g *Group) Remove() error {
	var errs []error
	for _, dir := range g.unique() {
		var err error
		for range removeTries {
			err = unix.Rmdir(dir)
			if err != unix.EBUSY {
				break
			}
			time.Sleep(removeWait)
		}
		if err != nil && err != unix.ENOENT {
			errs = append(errs, fmt.Errorf("remove cgroup %s: rmdir %s: %w", g.name, dir, err))
		}
	}
	return errors.Join(errs...)
}

// Stats returns the group's resource use. On v2, counters of a controller
// not enabled for the group are 0.
func (g *Group) Stats() (Stats, error) {
	var s Stats
	var err error
	if g.version == V1 {
		if s.MemoryBytes, err = g.readInt("memory", "memory.usage_in_bytes"); err != nil {
			return s, err
		}
		if s.MemoryPeakBytes, err = g.readInt("memory", "memory.max_usage_in_bytes"); err != nil {
			return s, err
		}
		if s.OOMKills, err = g.readKey("memory", "memory.oom_control", "oom_kill"); err != nil {
			return s, err
		}
		ns, err := g.readInt("cpuacct", "cpuacct.usage")
		if err != nil {
			return s, err
		}
		s.CPUSeconds = float64(ns) / 1e9
		if s.Pids, err = g.readInt("pids", "pids.current"); err != nil {
			return s, err
		}
		return s, nil
	}

	enabled, err := readWords(filepath.Join(g.dirs[""], "cgroup.controllers"))
	if err != nil {
		return s, fmt.Errorf("stats of cgroup %s: %w", g.name, err)
	}
	if slices.Contains(enabled, "memory") {
		if s.MemoryBytes, err = g.readInt("memory", "memory.current"); err != nil {
			return s, err
		}
		if g.exists("memory", "memory.peak") {
			if s.MemoryPeakBytes, err = g.readInt("memory", "memory.peak"); err != nil {
				return s, err
			}
		}
		if s.OOMKills, err = g.readKey("memory", "memory.events", "oom_kill"); err != nil {
			return s, err
		}
	}
	us, err := g.readKey("", "cpu.stat", "usage_usec")
	if err != nil {
		return s, err
	}
	s.CPUSeconds = float64(us) / 1e6
	if slices.Contains(enabled, "pids") {
		if s.Pids, err = g.readInt("pids", "pids.current"); err != nil {
			return s, err
		}
	}
	return s, nil
}

// OOMKills returns how many processes of the group the OOM killer has
// killed since the group was made: Stats().OOMKills, reading one file
// (cgroup v2 memory.events, v1 memory.oom_control; 0 on kernels before
// 4.13, which do not count). Returns ErrNotFound if the group was removed.
func (g *Group) OOMKills() (int64, error) {
	ctrl, file := "", "memory.events"
	if g.version == V1 {
		ctrl, file = "memory", "memory.oom_control"
	}
	n, err := g.readKey(ctrl, file, "oom_kill")
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(g.dirs[ctrl]); errors.Is(serr, fs.ErrNotExist) {
			return 0, fmt.Errorf("oom kills of cgroup %s: %w", g.name, ErrNotFound)
		}
		return 0, nil // the memory controller is not enabled for the group
	}
	return n, err
}

func (g *Group) path(ctrl, file string) string { return filepath.Join(g.dirs[ctrl], file) }

func (g *Group) exists(ctrl, file string) bool {
	_, err := os.Stat(g.path(ctrl, file))
	return err == nil
}

func (g *Group) write(ctrl, file, value string) error {
	if err := os.WriteFile(g.path(ctrl, file), []byte(value), 0); err != nil {
		return fmt.Errorf("cgroup %s: write %q to %s: %w", g.name, value, file, err)
	}
	return nil
}

// readInt reads a file holding one number ("max" reads as -1).
func (g *Group) readInt(ctrl, file string) (int64, error) {
	b, err := os.ReadFile(g.path(ctrl, file))
	if err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", g.name, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return -1, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cgroup %s: %s: %w", g.name, file, err)
	}
	return n, nil
}

// readKey reads the value of key in a flat-keyed file ("key value" lines);
// a missing key (an older kernel) reads as 0.
func (g *Group) readKey(ctrl, file, key string) (int64, error) {
	b, err := os.ReadFile(g.path(ctrl, file))
	if err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", g.name, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("cgroup %s: %s: %s: %w", g.name, file, key, err)
			}
			return n, nil
		}
	}
	return 0, nil
}

func readWords(file string) ([]string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b)), nil
}

// v1Mounts maps each mounted v1 controller to its mount point, read from
// /proc/self/mountinfo so that co-mounted ("cpu,cpuacct") and renamed
// hierarchies are found. Named hierarchies ("name=systemd") are skipped.
func v1Mounts() (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("find cgroup v1 mounts: %w", err)
	}
	mounts := make(map[string]string)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		// id parent maj:min root mountpoint opts [optional…] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, sf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(sf) < 3 || sf[0] != "cgroup" {
			continue
		}
		mp := unescapeMount(pf[4])
		for _, opt := range strings.Split(sf[2], ",") {
			if _, seen := mounts[opt]; !seen && !strings.Contains(opt, "=") {
				mounts[opt] = mp
			}
		}
	}
	for _, opt := range []string{"rw", "ro"} {
		delete(mounts, opt)
	}
	return mounts, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space…).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Children returns the names of the groups directly under parent (such
// as "codehub/ws-1" under "codehub"), in any hierarchy the package uses:
// after a crash, some may exist in one v1 hierarchy and not another.
// A parent that does not exist has none.
func Children(parent string) ([]string, error) {
	if err := validName(parent); err != nil {
		return nil, err
	}
	v, err := Detect()
	if err != nil {
		return nil, err
	}
	var roots []string
	if v == V2 {
		roots = []string{Root}
	} else {
		mounts, err := v1Mounts()
		if err != nil {
			return nil, err
		}
		for _, c := range v1Controllers() {
			if m, ok := mounts[c]; ok && !slices.Contains(roots, m) {
				roots = append(roots, m)
			}
		}
	}
	var names []string
	for _, r := range roots {
		ents, err := os.ReadDir(filepath.Join(r, parent))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if n := parent + "/" + e.Name(); e.IsDir() && !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	return names, nil
}
