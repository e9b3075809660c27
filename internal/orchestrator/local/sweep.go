package local

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/codehub-dev/codehub/internal/cgroup"
	"github.com/codehub-dev/codehub/internal/netns"
	"github.com/codehub-dev/codehub/internal/osuser"
	"github.com/codehub-dev/codehub/internal/procenv"
	"github.com/codehub-dev/codehub/internal/quota"
	"github.com/codehub-dev/codehub/internal/workspace"
)

var _ workspace.Sweeper = (*Orchestrator)(nil)

// held is what the host holds of one workspace of this installation.
type held struct {
	account   string // OS account name
	image     bool   // storage image under .images
	home      bool   // home directory under the base path
	mounted   bool   // home mounted
	cgroup    bool
	netns     bool
	procs     bool   // processes carrying its mark (directory strategy)
	claimedBy string // the user whose link names its home
}

func (h *held) runtime() bool { return h.mounted || h.cgroup || h.netns || h.procs }

// Sweep implements workspace.Sweeper. It looks at the host first, then
// asks the registry, so that a workspace being started meanwhile (whose
// registry entry comes before anything on the host) is never taken for
// debris.
//
// What belongs to this installation is found from its base path (homes,
// images, the users' links) and its uid range (accounts whose home lies
// in the base path); cgroups, network namespaces and processes are freed
// only for those workspaces, so that other installations on the machine
// are left alone. A workspace not in reg.Live loses its processes,
// cgroup, network namespace (and firewall rules), mount, secret and
// sandbox spec at once. One the registry does not have at all loses its
// account, image and home too, CleanupGrace after it was first seen so,
// unless its home was ever a user's (a link names it): such a home is
// kept, and said once.
func (o *Orchestrator) Sweep(ctx context.Context, registry func(context.Context) (workspace.Registry, error)) error {
	found, err := o.survey(ctx)
	if err != nil {
		return fmt.Errorf("survey workspace leftovers: %w", err)
	}
	reg, err := registry(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(found)) {
		h := found[id]
		if reg.Live[id] {
			o.forgetOrphan(id)
			continue
		}
		w := &workspace.Workspace{ID: id, Home: filepath.Join(o.cfg.BasePath, id), Meta: map[string]string{}}
		if h.runtime() {
			o.log.Info("freeing what a workspace left running", "workspace", id,
				"mounted", h.mounted, "cgroup", h.cgroup, "netns", h.netns, "processes", h.procs)
			if a, err := osuser.Lookup(o.accountName(w)); err == nil {
				w.Meta["uid"] = strconv.Itoa(a.UID)
			}
			o.cleanup(ctx, w)
		}
		_ = os.RemoveAll(o.runDir(w))
		_ = os.Remove(o.specFile(w))
		if reg.Known[id] {
			o.forgetOrphan(id)
			continue
		}
		if h.claimedBy != "" {
			if o.noteOrphan(id).IsZero() { // said the first time it is seen
				o.log.Warn("a user's home is not in the workspace registry; it is kept", "workspace", id, "user", h.claimedBy,
					"home", w.Home)
			}
			continue
		}
		first := o.noteOrphan(id)
		if o.cfg.CleanupGrace > 0 && (first.IsZero() || time.Since(first) < o.cfg.CleanupGrace) {
			continue
		}
		errs = append(errs, o.remove(ctx, w, h))
	}
	return errors.Join(errs...)
}

// remove deletes an unclaimed workspace that no longer exists: its
// account, storage image and home, logging each.
func (o *Orchestrator) remove(ctx context.Context, w *workspace.Workspace, h *held) error {
	var errs []error
	if h.account != "" {
		if err := osuser.Delete(ctx, h.account); err != nil {
			errs = append(errs, err)
		} else {
			o.log.Info("deleted the account of a workspace that no longer exists", "workspace", w.ID, "account", h.account)
		}
	}
	if h.home {
		if mounted, _ := quota.IsMounted(w.Home); mounted {
			errs = append(errs, fmt.Errorf("%s is still mounted; not deleted", w.Home))
		} else if err := os.RemoveAll(w.Home); err != nil {
			errs = append(errs, err)
		} else {
			o.log.Info("deleted the home of a workspace that no longer exists", "workspace", w.ID, "home", w.Home)
		}
	}
	if h.image {
		if err := os.Remove(o.imagePath(w)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		} else {
			o.log.Info("deleted the storage of a workspace that no longer exists", "workspace", w.ID, "image", o.imagePath(w))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove workspace %s: %w", w.ID, err)
	}
	o.forgetOrphan(w.ID)
	return nil
}

// survey finds what the host holds of this installation's workspaces.
func (o *Orchestrator) survey(ctx context.Context) (map[string]*held, error) {
	found := map[string]*held{}
	get := func(id string) *held {
		if found[id] == nil {
			found[id] = &held{}
		}
		return found[id]
	}
	ents, err := os.ReadDir(o.cfg.BasePath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	links := map[string]string{} // workspace id -> user id
	for _, e := range ents {
		name := e.Name()
		switch {
		case e.Type()&fs.ModeSymlink != 0:
			if target, err := os.Readlink(filepath.Join(o.cfg.BasePath, name)); err == nil && isWorkspaceID(target) {
				links[target] = name
			}
		case e.IsDir() && isWorkspaceID(name):
			h := get(name)
			h.home = true
			h.mounted, _ = quota.IsMounted(filepath.Join(o.cfg.BasePath, name))
		}
	}
	if imgs, err := os.ReadDir(filepath.Join(o.cfg.BasePath, ".images")); err == nil {
		for _, e := range imgs {
			if id, ok := strings.CutSuffix(e.Name(), ".img"); ok && isWorkspaceID(id) {
				get(id).image = true
			}
		}
	}
	if o.cfg.Strategy == StrategyProcess {
		accounts, err := o.accounts()
		if err != nil {
			return nil, err
		}
		for id, name := range accounts {
			get(id).account = name
		}
	}
	// Only now, for workspaces known to be this installation's: cgroups,
	// namespaces, processes.
	if o.cfg.Strategy == StrategyProcess {
		groups, err := cgroup.Children("codehub")
		if err != nil && !errors.Is(err, cgroup.ErrUnsupported) {
			return nil, err
		}
		for _, g := range groups {
			if h := found[strings.TrimPrefix(g, "codehub/")]; h != nil {
				h.cgroup = true
			}
		}
		names, err := netns.Names(ctx, "codehub-")
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if h := found["ws-"+strings.TrimPrefix(n, "codehub-")]; h != nil {
				h.netns = true
			}
		}
	} else {
		marked, err := procenv.Values("/proc", markKey)
		if err != nil {
			return nil, err
		}
		for _, id := range marked {
			if h := found[id]; h != nil {
				h.procs = true
			}
		}
	}
	for id, user := range links {
		if h := found[id]; h != nil {
			h.claimedBy = user
		}
	}
	return found, nil
}

// accounts returns this installation's workspace accounts by workspace
// id: named like accountName, uid in range, home in the base path.
func (o *Orchestrator) accounts() (map[string]string, error) {
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 7 {
			continue
		}
		uid, err := strconv.Atoi(f[2])
		short, ok := strings.CutPrefix(f[0], "codehub-")
		if err != nil || !ok || uid < o.cfg.UIDMin || uid > o.cfg.UIDMax || filepath.Dir(f[5]) != o.cfg.BasePath {
			continue
		}
		out["ws-"+short] = f[0]
	}
	return out, sc.Err()
}

// isWorkspaceID reports whether name is shaped like a workspace id.
func isWorkspaceID(name string) bool {
	rest, ok := strings.CutPrefix(name, "ws-")
	if !ok || rest == "" || len(rest) > 64 {
		return false
	}
	for _, c := range rest {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// noteOrphan returns when id was first seen out of the registry, after
// recording now if it was not seen before (then it returns zero). The
// record is a file's time, so that a gateway restart does not reset it.
func (o *Orchestrator) noteOrphan(id string) time.Time {
	p := filepath.Join(o.cfg.RuntimeDir, ".orphans", id)
	if fi, err := os.Stat(p); err == nil {
		return fi.ModTime()
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err == nil {
		_ = os.WriteFile(p, nil, 0o600)
	}
	return time.Time{}
}

func (o *Orchestrator) forgetOrphan(id string) {
	_ = os.Remove(filepath.Join(o.cfg.RuntimeDir, ".orphans", id))
}
