package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/codehub-dev/codehub/internal/quota"
)

// launcherRE matches the code-server launcher `make setup` writes.
var launcherRE = regexp.MustCompile(`(?m)^exec "([^"]+/bin/node)" "([^"]+)/lib/node_modules/code-server/out/node/entry\.js" "\$@"$`)

// PrepareRuntime makes the codehub binary and code-server reachable by the
// workspace accounts, which cannot enter a root-only directory such as
// /root/.cache: the binary is copied under dir, and a code-server installed
// by `make setup` is bind-mounted read-only under dir, with a launcher of
// its own. Paths already reachable are returned unchanged.
func PrepareRuntime(ctx context.Context, dir, agent, codeServer string) (string, string, error) {
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		return "", "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", "", err
	}
	if err := reachable(dir); err != nil {
		return "", "", fmt.Errorf("runtime directory %s: %w", dir, err)
	}
	if reachable(agent) != nil {
		dst := filepath.Join(dir, "bin", "codehub")
		if err := copyIfChanged(agent, dst); err != nil {
			return "", "", fmt.Errorf("copy the codehub binary for workspaces: %w", err)
		}
		agent = dst
	}
	if reachable(codeServer) != nil {
		b, err := os.ReadFile(codeServer)
		if err != nil {
			return "", "", err
		}
		m := launcherRE.FindStringSubmatch(string(b))
		if m == nil {
			return "", "", fmt.Errorf("code-server at %s is not reachable by workspace accounts: install it where every user can read it", codeServer)
		}
		nodeDir := filepath.Dir(filepath.Dir(m[1])) // .../node-24/bin/node -> .../node-24
		csDir := m[2]
		nodeMnt, csMnt := filepath.Join(dir, "node"), filepath.Join(dir, "code-server")
		for _, bm := range [][2]string{{nodeDir, nodeMnt}, {csDir, csMnt}} {
			if err := bindReadOnly(ctx, bm[0], bm[1]); err != nil {
				return "", "", err
			}
		}
		launcher := filepath.Join(dir, "bin", "code-server")
		script := fmt.Sprintf("#!/bin/sh\nexec %q %q \"$@\"\n",
			filepath.Join(nodeMnt, "bin", "node"), filepath.Join(csMnt, "lib/node_modules/code-server/out/node/entry.js"))
		if err := os.WriteFile(launcher, []byte(script), 0o755); err != nil {
			return "", "", err
		}
		codeServer = launcher
	}
	return agent, codeServer, nil
}

// bindReadOnly mounts src on dst read-only, unless dst is mounted already.
func bindReadOnly(ctx context.Context, src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if mounted, err := quota.IsMounted(dst); err != nil || mounted {
		return err
	}
	for _, args := range [][]string{
		{"--bind", src, dst},
		{"-o", "remount,bind,ro", dst},
	} {
		if out, err := exec.CommandContext(ctx, "mount", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("mount %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// copyIfChanged copies src to dst (mode 0755) unless dst has the same size
// and modification time.
func copyIfChanged(src, dst string) error {
	si, err := os.Stat(src)
	if err != nil {
		return err
	}
	if di, err := os.Stat(dst); err == nil && di.Size() == si.Size() && di.ModTime().Equal(si.ModTime()) {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	if err := errors.Join(out.Chmod(0o755), out.Close()); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Chtimes(tmp, si.ModTime(), si.ModTime()); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// runtimePaths returns what a sandbox must show, read-only, for the agent
// and code-server to run: the agent binary, and code-server's install
// (and the Node.js it names) as found from its launcher. A launcher it
// cannot read is shown alone, with a warning: the paths it needs must
// then be listed in isolation.read-only-paths. Whole directories of
// unknown purpose (a home with a bin/ in it) are never guessed.
func runtimePaths(agent, codeServer string) (paths []string, warning string) {
	paths = []string{agent}
	launcher := codeServer
	if real, err := filepath.EvalSymlinks(codeServer); err == nil {
		launcher = real
	}
	paths = append(paths, codeServer)
	if launcher != codeServer {
		paths = append(paths, launcher)
	}
	if b, err := os.ReadFile(launcher); err == nil && len(b) < 4096 {
		// The launcher `make setup` writes, or PrepareRuntime's copy.
		if m := launcherRE.FindStringSubmatch(string(b)); m != nil {
			return append(paths, filepath.Dir(filepath.Dir(m[1])), m[2]), ""
		}
	}
	// npm's global install links bin/code-server to the package's entry.
	const entry = "/out/node/entry.js"
	if root, ok := strings.CutSuffix(launcher, entry); ok {
		return append(paths, root), ""
	}
	// code-server's release archive: <root>/bin/code-server with its own
	// Node.js in <root>/lib/node.
	root := filepath.Dir(filepath.Dir(launcher))
	if isFile(filepath.Join(root, "lib", "node")) && isFile(filepath.Join(root, strings.TrimPrefix(entry, "/"))) {
		return append(paths, root), ""
	}
	return paths, fmt.Sprintf("code-server at %s is not an installation codehub recognises: workspaces see only "+
		"the launcher itself; list what it needs in multi-user.isolation.read-only-paths", codeServer)
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
