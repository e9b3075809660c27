package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// systemDirs are bound read-only from the host, or linked as the host
// links them (a merged /usr makes /bin a link to usr/bin).
var systemDirs = []string{"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"}

// Mount flags of everything bound in: no set-uid, no device files.
const (
	bindFlags = unix.MS_BIND | unix.MS_NOSUID | unix.MS_NODEV
	roFlags   = unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV
)

// buildRoot assembles the sandbox's root on spec.Root and moves into it.
// The mount namespace is private first, so nothing here reaches the host
// and nothing the host mounts later reaches the sandbox.
func buildRoot(spec *Spec) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make the mount namespace private: %w", err)
	}
	// Read before the host's files are out of reach.
	resolv, err := resolvConf(spec.ResolvConf)
	if err != nil {
		return err
	}
	passwd, group, err := accounts(spec)
	if err != nil {
		return err
	}

	r := spec.Root
	if err := unix.Mount("tmpfs", r, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=16m"); err != nil {
		return fmt.Errorf("mount the root: %w", err)
	}
	for _, d := range systemDirs {
		if err := mirror("/"+d, filepath.Join(r, d)); err != nil {
			return err
		}
	}
	if err := buildDev(r); err != nil {
		return err
	}
	if err := buildEtc(r, spec); err != nil {
		return err
	}
	host := spec.Hostname
	if host == "" {
		host = "workspace"
	}
	hosts := "127.0.0.1\tlocalhost\n127.0.1.1\t" + host + "\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	for name, content := range map[string][]byte{
		"passwd": passwd, "group": group, "resolv.conf": resolv,
		"hostname": []byte(host + "\n"), "hosts": []byte(hosts),
	} {
		p := filepath.Join(r, "etc", name)
		_ = os.Remove(p)
		if err := os.WriteFile(p, content, 0o644); err != nil {
			return err
		}
	}
	for _, m := range []struct {
		dir  string
		mode string
	}{{"tmp", "1777"}, {"run", "0755"}, {"var", "0755"}} {
		if err := tmpfs(filepath.Join(r, m.dir), m.mode); err != nil {
			return err
		}
	}
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{"var/tmp", 0o1777}, {"proc", 0o555}, {"sys", 0o555}, {"home", 0o755}} {
		if err := mkdirMode(filepath.Join(r, d.path), d.mode); err != nil {
			return err
		}
	}
	if err := os.Symlink("../run", filepath.Join(r, "var/run")); err != nil {
		return err
	}
	if err := mkdirMode(filepath.Join(r, "run/user", strconv.Itoa(spec.UID)), 0o700); err != nil {
		return err
	}
	if err := os.Chown(filepath.Join(r, "run/user", strconv.Itoa(spec.UID)), spec.UID, spec.GID); err != nil {
		return err
	}
	if err := unix.Mount("proc", filepath.Join(r, "proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	// The directories holding the home and the links get a tmpfs of
	// their own: they show nothing but what is put there, and root may add
	// a link later (a warm workspace claimed by a user).
	var parents []string
	for _, p := range slices.Concat(spec.Writable, slices.Collect(maps.Keys(spec.Links))) {
		if d := filepath.Dir(p); d != "/" && !slices.Contains(parents, d) {
			parents = append(parents, d)
		}
	}
	for _, d := range parents {
		if err := tmpfsWith(filepath.Join(r, d), unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755,size=64k"); err != nil {
			return err
		}
	}
	for _, p := range spec.ReadOnly {
		if covered(p) {
			continue
		}
		if err := bind(p, filepath.Join(r, p), true); err != nil {
			return err
		}
	}
	for _, p := range spec.Writable {
		if err := bind(p, filepath.Join(r, p), false); err != nil {
			return err
		}
	}
	for p, target := range spec.Links {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(r, p)), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(target, filepath.Join(r, p)); err != nil {
			return fmt.Errorf("link %s: %w", p, err)
		}
	}

	old := filepath.Join(r, ".old")
	if err := os.Mkdir(old, 0o700); err != nil {
		return err
	}
	if err := unix.PivotRoot(r, old); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Unmount("/.old", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("leave the host's root: %w", err)
	}
	if err := os.Remove("/.old"); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("make the root read-only: %w", err)
	}
	return nil
}

// covered reports whether p lies in a system directory, already there.
func covered(p string) bool {
	for _, d := range systemDirs {
		if p == "/"+d || strings.HasPrefix(p, "/"+d+"/") {
			return true
		}
	}
	return false
}

// mirror makes dst what src is on the host: the same link, or a read-only
// bind of the directory. A missing src is skipped.
func mirror(src, dst string) error {
	fi, err := os.Lstat(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	}
	return bind(src, dst, true)
}

// buildEtc fills root/etc with the host's entries, each bound read-only,
// but for those hidden (left out) and those the sandbox writes itself.
func buildEtc(root string, spec *Spec) error {
	etc := filepath.Join(root, "etc")
	if err := mkdirMode(etc, 0o755); err != nil {
		return err
	}
	hidden := map[string]bool{}
	for _, h := range slices.Concat(DefaultHidden, spec.Hide) {
		hidden[filepath.Clean(h)] = true
	}
	generated := map[string]bool{"passwd": true, "group": true, "resolv.conf": true, "hostname": true, "hosts": true}
	entries, err := os.ReadDir("/etc")
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if hidden[name] || generated[name] {
			continue
		}
		src, dst := filepath.Join("/etc", name), filepath.Join(etc, name)
		switch t := e.Type(); {
		case t&fs.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, dst); err != nil {
				return err
			}
		case t.IsDir(), t.IsRegular():
			if err := bind(src, dst, true); err != nil {
				return err
			}
		}
	}
	// Hidden entries below a bound directory are covered with nothing.
	for h := range hidden {
		if !strings.Contains(h, "/") {
			continue
		}
		p := filepath.Join(etc, h)
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		if fi.IsDir() {
			err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755,size=4k")
		} else if fi.Mode().IsRegular() {
			err = unix.Mount(filepath.Join(root, "dev/null"), p, "", unix.MS_BIND, "")
			if err == nil {
				err = unix.Mount("", p, "", roFlags, "")
			}
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("hide /etc/%s: %w", h, err)
		}
	}
	return nil
}

// buildDev gives the sandbox a /dev of its own: the harmless character
// devices, its own pseudo-terminals and shared memory.
func buildDev(root string) error {
	dev := filepath.Join(root, "dev")
	if err := tmpfsWith(dev, unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k"); err != nil {
		return err
	}
	for _, d := range []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}} {
		p := filepath.Join(dev, d.name)
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
			return fmt.Errorf("mknod %s: %w", p, err)
		}
		if err := os.Chmod(p, 0o666); err != nil { // past the umask
			return err
		}
	}
	pts := filepath.Join(dev, "pts")
	if err := mkdirMode(pts, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("devpts", pts, "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
		return fmt.Errorf("mount /dev/pts: %w", err)
	}
	if err := tmpfs(filepath.Join(dev, "shm"), "1777"); err != nil {
		return err
	}
	for name, target := range map[string]string{
		"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	return nil
}

// bind mounts src on dst (made as a file or directory like src, with
// its parents), read-only when ro, never with set-uid or devices.
func bind(src, dst string, ro bool) error {
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if fi.IsDir() {
		err = mkdirMode(dst, 0o755)
	} else {
		var f *os.File
		if f, err = os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			err = f.Close()
		}
	}
	if err != nil {
		return err
	}
	if err := unix.Mount(src, dst, "", bindFlags, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_NOSUID | unix.MS_NODEV)
	if ro {
		flags = roFlags
	}
	// A bind takes its flags only from a remount.
	if err := unix.Mount("", dst, "", flags, ""); err != nil {
		return fmt.Errorf("remount %s: %w", dst, err)
	}
	return nil
}

func tmpfs(dir, mode string) error {
	return tmpfsWith(dir, unix.MS_NOSUID|unix.MS_NODEV, "mode="+mode)
}

func tmpfsWith(dir string, flags uintptr, data string) error {
	if err := mkdirMode(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", flags, data); err != nil {
		return fmt.Errorf("mount a tmpfs on %s: %w", dir, err)
	}
	return nil
}

// mkdirMode makes dir with exactly mode (the umask aside).
func mkdirMode(dir string, mode os.FileMode) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.Chmod(dir, mode)
}

// resolvConf returns what /etc/resolv.conf holds: file's content, or the
// host's (through any link).
func resolvConf(file string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	b, err := os.ReadFile("/etc/resolv.conf")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// accounts returns the sandbox's /etc/passwd and /etc/group: the host's,
// without the accounts of other workspaces (spec.HideUIDs) but with its
// own.
func accounts(spec *Spec) (passwd, group []byte, err error) {
	hide := func(id int) bool {
		return spec.HideUIDs != [2]int{} && id >= spec.HideUIDs[0] && id <= spec.HideUIDs[1]
	}
	filter := func(file string, keep func(id int) bool) ([]byte, error) {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		var out bytes.Buffer
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			line := sc.Text()
			f := strings.Split(line, ":")
			if len(f) < 4 {
				continue
			}
			id, err := strconv.Atoi(f[2])
			if err != nil || !keep(id) {
				continue
			}
			out.WriteString(line)
			out.WriteByte('\n')
		}
		return out.Bytes(), sc.Err()
	}
	passwd, err = filter("/etc/passwd", func(id int) bool { return !hide(id) || id == spec.UID })
	if err != nil {
		return nil, nil, err
	}
	group, err = filter("/etc/group", func(id int) bool { return !hide(id) || id == spec.GID })
	return passwd, group, err
}
