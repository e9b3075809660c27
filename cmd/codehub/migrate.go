package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/codehub-dev/codehub/internal/config"
	"github.com/codehub-dev/codehub/internal/userfs"
	"github.com/codehub-dev/codehub/internal/workspace"
	"golang.org/x/term"
)

const migrateUsage = `usage: codehub migrate-data --from-single-user --to-user NAME [--config FILE] [--yes]
                            [--user-data-dir DIR] [--extensions-dir DIR]

Copies a single-user installation's IDE data into NAME's home, for moving to
multi-user mode. The source is code-server's user data directory and
extensions directory, as single-user mode uses them (the user-data-dir and
extensions-dir settings of the same configuration, environment and flags;
by default ~/.local/share/code-server and its extensions):

  <user-data-dir>/User/...      -> <base-path>/<user-id>/state/User/...
  <user-data-dir>/Machine/...   -> <base-path>/<user-id>/state/Machine/...
  <extensions-dir>/...          -> <base-path>/<user-id>/extensions/...
  settings.json, keybindings.json in the home: links to state/User/...

Nothing is deleted: the source stays where it is (back it up first). Nothing
is overwritten: if any destination file exists, the command lists them and
stops before writing. Symbolic links that point outside the source are
skipped with a warning. The copies belong to the owner of the home.`

// migrateSource is one tree copied into the home.
type migrateSource struct {
	dir string // on disk, for messages
	to  string // name of its copy under the home
	fs  *userfs.FS
}

// migrateEntry is one thing to create under the home.
type migrateEntry struct {
	src    *userfs.FS
	from   string      // name in src; "" for made-up entries
	to     string      // name under the home
	mode   fs.FileMode // type and permissions
	size   int64
	target string // of a link

	skip bool // already there, as wanted
}

// migration is the plan of one migrate-data run, made before anything is
// written.
type migration struct {
	dirs, files, links []*migrateEntry
	bytes              int64
	warnings           []string
}

// runMigrateData is `codehub migrate-data`: plan the copy, check the
// destination, then copy through userfs, all or nothing.
func runMigrateData(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
		fmt.Fprintln(stdout, migrateUsage)
		return nil
	}
	fl := flag.NewFlagSet("codehub migrate-data", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprintln(stderr, migrateUsage) }
	var (
		configFile = fl.String("config", "", "configuration file")
		fromSingle = fl.Bool("from-single-user", false, "copy a single-user installation's data")
		toUser     = fl.String("to-user", "", "the user (name or email) whose home receives it")
		yes        = fl.Bool("yes", false, "do not ask for confirmation")
		settings   []config.Setting
	)
	for _, key := range []string{"user-data-dir", "extensions-dir"} {
		fl.Func(key, "single-user mode's "+key, func(v string) error {
			settings = append(settings, config.Setting{Path: key, Value: v, Flag: "--" + key})
			return nil
		})
	}
	pos, err := parseInterleaved(fl, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return usageError{err.Error()}
	}
	switch {
	case len(pos) > 0:
		return usageError{fmt.Sprintf("codehub migrate-data takes no arguments, got %q\n%s", pos, migrateUsage)}
	case !*fromSingle:
		return usageError{"codehub migrate-data needs --from-single-user (the only source it knows)\n" + migrateUsage}
	case *toUser == "":
		return usageError{"codehub migrate-data needs --to-user NAME\n" + migrateUsage}
	}
	if *configFile == "" {
		*configFile = firstNonEmpty(getenv("CODEHUB_CONFIG"), getenv("CODE_SERVER_CONFIG"))
	}
	// Check the mode before openApp, which in single-user mode would
	// generate a password.
	cfg, settings, err := multiUserSettings(*configFile, getenv, settings)
	if err != nil {
		return err
	}
	if cfg.DeploymentMode != config.ModeMulti {
		return fmt.Errorf("migrate-data moves data into multi-user mode, and %s sets deployment-mode = %q", cfg.SourceOf("deployment-mode"), cfg.DeploymentMode)
	}
	app, err := openApp(ctx, *configFile, getenv, settings, io.Discard, stderr)
	if err != nil {
		return err
	}
	defer app.Close()
	cfg = app.cfg
	u, err := app.id.UserByName(ctx, *toUser)
	if err != nil {
		return cliError(err)
	}

	udd := cfg.UserDataDir
	extDir := cfg.ExtensionsDir
	if extDir == "" {
		extDir = filepath.Join(udd, "extensions")
	}
	layout := workspace.NewLayout(cfg.MultiUser.Isolation.BasePath, u.ID)
	rel := func(p string) string {
		r, err := filepath.Rel(layout.Home, p)
		if err != nil {
			panic(err) // the layout's paths are under its home
		}
		return filepath.ToSlash(r)
	}

	if fi, err := os.Stat(udd); err != nil || !fi.IsDir() {
		return fmt.Errorf("no single-user data at %s: point --user-data-dir at code-server's user data directory", udd)
	}
	for _, src := range []string{udd, extDir} {
		if overlaps(src, layout.Home) {
			return fmt.Errorf("the source %s and the destination %s overlap", src, layout.Home)
		}
	}
	var sources []migrateSource
	for _, s := range []struct{ dir, to string }{
		{filepath.Join(udd, "User"), rel(layout.StateUser())},
		{filepath.Join(udd, "Machine"), rel(filepath.Join(layout.State(), "Machine"))},
		{extDir, rel(layout.Extensions())},
	} {
		if fi, err := os.Stat(s.dir); err != nil || !fi.IsDir() {
			continue
		}
		f, err := userfs.Open(s.dir)
		if err != nil {
			return fmt.Errorf("source: %w", err)
		}
		defer f.Close()
		sources = append(sources, migrateSource{dir: s.dir, to: s.to, fs: f})
	}
	if len(sources) == 0 {
		return fmt.Errorf("nothing to migrate: %s has no User directory and there is no %s", udd, extDir)
	}
	links := map[string]string{ // name in the home -> target
		rel(layout.Settings()):    rel(filepath.Join(layout.StateUser(), "settings.json")),
		rel(layout.Keybindings()): rel(filepath.Join(layout.StateUser(), "keybindings.json")),
	}
	m, err := planMigration(sources, links)
	if err != nil {
		return err
	}
	for _, w := range m.warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}

	// The destination: its owner, and what is already there.
	home := layout.Home
	owner := migrateOwner{}
	fi, err := os.Lstat(home)
	homeExists := err == nil
	switch {
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("user's home: %w", err)
	case homeExists && fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s's home %s is a symbolic link: refusing to write through it", u.Username, home)
	case homeExists && !fi.IsDir():
		return fmt.Errorf("%s's home %s is not a directory", u.Username, home)
	case homeExists:
		if uid, gid, ok := userfs.Owner(fi); ok && (uid != os.Geteuid() || gid != os.Getegid()) {
			if os.Geteuid() != 0 && uid != os.Geteuid() {
				return fmt.Errorf("%s belongs to uid %d: run migrate-data as root or as that user", home, uid)
			}
			owner = migrateOwner{chown: true, uid: uid, gid: gid}
		}
		dst, err := userfs.Open(home)
		if err != nil {
			return err
		}
		err = m.check(dst)
		dst.Close()
		if err != nil {
			return err
		}
	}

	fmt.Fprintf(stdout, "copying %d files (%s) into %s's home %s:\n", len(m.files), formatBytes(m.bytes), u.Username, home)
	for _, s := range sources {
		fmt.Fprintf(stdout, "  %s -> %s\n", s.dir, filepath.Join(home, filepath.FromSlash(s.to)))
	}
	if !*yes {
		c := &userCmd{stdin: stdin, stdout: stdout, stderr: stderr}
		ok, err := c.confirm(fmt.Sprintf("Copy into %s's home?", u.Username))
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("nothing copied")
		}
	}
	if !homeExists {
		if err := os.MkdirAll(filepath.Dir(home), 0o711); err != nil {
			return fmt.Errorf("users' base directory: %w", err)
		}
		if err := os.Mkdir(home, 0o700); err != nil {
			return fmt.Errorf("user's home: %w", err)
		}
	}
	dst, err := userfs.Open(home)
	if err != nil {
		return err
	}
	defer dst.Close()
	if !homeExists {
		// Made just now; check anyway, in case of a race with another run.
		if err := m.check(dst); err != nil {
			return err
		}
	}
	p := newProgress(stderr, len(m.files), m.bytes)
	if err := m.copy(ctx, dst, owner, p); err != nil {
		return err
	}
	nlinks := 0
	for _, l := range m.links {
		if !l.skip {
			nlinks++
		}
	}
	fmt.Fprintf(stdout, "copied %d files (%s), %d links and %d directories into %s\n", len(m.files), formatBytes(m.bytes), nlinks, len(m.dirs), home)
	if owner.chown {
		fmt.Fprintf(stdout, "they belong to uid %d, gid %d, like the home\n", owner.uid, owner.gid)
	}
	fmt.Fprintf(stdout, "the single-user data stays in %s", udd)
	if !strings.HasPrefix(extDir, udd+string(filepath.Separator)) {
		fmt.Fprintf(stdout, " and %s", extDir)
	}
	fmt.Fprintln(stdout, ": keep it until the new workspace works, then remove it yourself")
	return nil
}

// overlaps reports whether one directory is inside the other (by name).
func overlaps(a, b string) bool {
	inside := func(child, parent string) bool {
		r, err := filepath.Rel(parent, child)
		return err == nil && r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator))
	}
	a, b = filepath.Clean(a), filepath.Clean(b)
	return inside(a, b) || inside(b, a)
}

// planMigration lists what the sources hold, and the links to make, without
// writing anything. Symbolic links that leave their source tree and files
// that are neither regular nor directories are skipped with a warning.
func planMigration(sources []migrateSource, links map[string]string) (*migration, error) {
	m := &migration{}
	seen := map[string]bool{}
	addDir := func(e *migrateEntry) {
		if !seen[e.to] {
			seen[e.to] = true
			m.dirs = append(m.dirs, e)
		}
	}
	// First the directories above the sources' copies, such as state/,
	// parents before children.
	var above []string
	for _, s := range sources {
		for dir := path.Dir(s.to); dir != "."; dir = path.Dir(dir) {
			above = append(above, dir)
		}
	}
	slices.SortFunc(above, func(a, b string) int {
		return cmp.Or(cmp.Compare(strings.Count(a, "/"), strings.Count(b, "/")), strings.Compare(a, b))
	})
	for _, dir := range above {
		addDir(&migrateEntry{to: dir, mode: fs.ModeDir | 0o700})
	}
	for _, s := range sources {
		err := s.fs.Walk(".", func(name string, d fs.DirEntry, err error) error {
			if err != nil {
				return fmt.Errorf("read %s: %w", filepath.Join(s.dir, filepath.FromSlash(name)), err)
			}
			at := filepath.Join(s.dir, filepath.FromSlash(name))
			to := s.to
			if name != "." {
				to = s.to + "/" + name
			}
			e := &migrateEntry{src: s.fs, from: name, to: to}
			switch t := d.Type(); {
			case t&fs.ModeSymlink != 0:
				target, err := s.fs.Readlink(name)
				if err != nil {
					return fmt.Errorf("read %s: %w", at, err)
				}
				if err := s.fs.CheckLink(target, name); err != nil {
					m.warnings = append(m.warnings, fmt.Sprintf("skipped %s: a symbolic link to %s, outside %s", at, target, s.dir))
					return nil
				}
				e.mode, e.target = fs.ModeSymlink|0o777, target
				m.links = append(m.links, e)
			case d.IsDir() || t.IsRegular():
				fi, err := d.Info()
				if err != nil {
					return fmt.Errorf("read %s: %w", at, err)
				}
				e.mode, e.size = fi.Mode(), fi.Size()
				if d.IsDir() {
					addDir(e)
				} else {
					m.files = append(m.files, e)
					m.bytes += e.size
				}
			default:
				m.warnings = append(m.warnings, fmt.Sprintf("skipped %s: not a file, directory or link (%v)", at, t))
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	names := make([]string, 0, len(links))
	for name := range links {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		m.links = append(m.links, &migrateEntry{to: name, mode: fs.ModeSymlink | 0o777, target: links[name]})
	}
	return m, nil
}

// maxListed bounds the conflicts an error lists.
const maxListed = 200

// check looks, through dst, at what the home already holds. Directories
// there are used; a link already there as planned is kept. Any file in the
// way, and any path that leads outside the home (a link such as
// state -> /elsewhere), fails the run before anything is written, with
// the full list.
func (m *migration) check(dst *userfs.FS) error {
	var conflicts, unsafe []string
	at := func(e *migrateEntry) string { return filepath.Join(dst.Dir(), filepath.FromSlash(e.to)) }
	reason := func(err error) error {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return pe.Err
		}
		return err
	}
	absent := func(err error) bool { return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) }
	for _, e := range m.dirs {
		fi, err := dst.Lstat(e.to)
		switch {
		case absent(err):
		case err != nil:
			unsafe = append(unsafe, fmt.Sprintf("%s: %v", at(e), reason(err)))
		case fi.IsDir():
			e.skip = true
		case fi.Mode()&fs.ModeSymlink != 0:
			// A link to a directory of the home will do; the write goes
			// through the same scoped layer.
			fi, err := dst.Stat(e.to)
			switch {
			case errors.Is(err, userfs.ErrEscape):
				unsafe = append(unsafe, fmt.Sprintf("%s: %v", at(e), reason(err)))
			case err == nil && fi.IsDir():
				e.skip = true
			default:
				conflicts = append(conflicts, at(e))
			}
		default:
			conflicts = append(conflicts, at(e))
		}
	}
	for _, e := range slices.Concat(m.files, m.links) {
		fi, err := dst.Lstat(e.to)
		switch {
		case absent(err):
		case err != nil:
			unsafe = append(unsafe, fmt.Sprintf("%s: %v", at(e), reason(err)))
		case e.from == "" && fi.Mode()&fs.ModeSymlink != 0:
			if target, err := dst.Readlink(e.to); err == nil && target == e.target {
				e.skip = true
			} else {
				conflicts = append(conflicts, fmt.Sprintf("%s (a link to %s, not %s)", at(e), target, e.target))
			}
		default:
			conflicts = append(conflicts, at(e))
		}
	}
	if len(conflicts) == 0 && len(unsafe) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("nothing was copied")
	list := func(items []string) {
		for i, s := range items {
			if i == maxListed {
				fmt.Fprintf(&b, "\n  … and %d more", len(items)-maxListed)
				break
			}
			b.WriteString("\n  " + s)
		}
	}
	if len(unsafe) > 0 {
		fmt.Fprintf(&b, "\n%d destination path(s) lead outside the user's home:", len(unsafe))
		list(unsafe)
	}
	if len(conflicts) > 0 {
		fmt.Fprintf(&b, "\n%d destination file(s) already exist:", len(conflicts))
		list(conflicts)
		b.WriteString("\nmove them away and run migrate-data again; it never overwrites")
	}
	return errors.New(b.String())
}

// migrateOwner is who the copies are given to.
type migrateOwner struct {
	chown    bool
	uid, gid int
}

// copy creates the plan in the home through dst: directories, then files,
// then links. On failure, what it created is removed again.
func (m *migration) copy(ctx context.Context, dst *userfs.FS, own migrateOwner, p *progress) (err error) {
	var made []string
	defer func() {
		if err == nil {
			return
		}
		var left []string
		for i := len(made) - 1; i >= 0; i-- {
			if rerr := dst.Remove(made[i]); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				left = append(left, filepath.Join(dst.Dir(), filepath.FromSlash(made[i])))
			}
		}
		switch {
		case len(left) > 0:
			err = fmt.Errorf("%w\nthese copies could not be removed again:\n  %s", err, strings.Join(left, "\n  "))
		case len(made) > 0:
			err = fmt.Errorf("%w\nthe %d entries copied before the error were removed", err, len(made))
		}
	}()
	at := func(e *migrateEntry) string { return filepath.Join(dst.Dir(), filepath.FromSlash(e.to)) }
	chown := func(name string) error {
		if !own.chown {
			return nil
		}
		return dst.Lchown(name, own.uid, own.gid)
	}
	if p.tty {
		p.draw()
	}
	for _, d := range m.dirs {
		if d.skip {
			continue
		}
		if err := dst.Mkdir(d.to, d.mode.Perm()|0o700); err != nil {
			return fmt.Errorf("create %s: %w", at(d), err)
		}
		made = append(made, d.to)
		if err := chown(d.to); err != nil {
			return fmt.Errorf("give %s to uid %d: %w", at(d), own.uid, err)
		}
	}
	for _, f := range m.files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := copyFile(ctx, dst, f, own, p); err != nil {
			return fmt.Errorf("copy %s: %w", at(f), err)
		}
		made = append(made, f.to)
		p.fileDone()
	}
	for _, l := range m.links {
		if l.skip {
			continue
		}
		if err := dst.Symlink(l.target, l.to); err != nil {
			return fmt.Errorf("link %s: %w", at(l), err)
		}
		made = append(made, l.to)
		if err := chown(l.to); err != nil {
			return fmt.Errorf("give %s to uid %d: %w", at(l), own.uid, err)
		}
	}
	p.finish()
	return nil
}

func copyFile(ctx context.Context, dst *userfs.FS, f *migrateEntry, own migrateOwner, p *progress) error {
	r, err := f.src.Open(f.from)
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = dst.WriteFrom(f.to, &progressReader{ctx: ctx, r: r, p: p}, f.mode.Perm(), userfs.WriteOptions{
		NoReplace: true, Chown: own.chown, UID: own.uid, GID: own.gid,
	})
	return err
}

// progressReader counts bytes into a progress and stops when ctx ends.
type progressReader struct {
	ctx context.Context
	r   io.Reader
	p   *progress
}

func (r *progressReader) Read(b []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := r.r.Read(b)
	r.p.add(int64(n))
	return n, err
}

// progress reports a copy on stderr: a bar redrawn in place on a terminal,
// a plain line every few seconds otherwise (logs, CI).
type progress struct {
	w     io.Writer
	tty   bool
	every time.Duration
	now   func() time.Time

	files, totalFiles int
	bytes, totalBytes int64
	last              time.Time
}

func newProgress(w io.Writer, files int, bytes int64) *progress {
	p := &progress{w: w, totalFiles: files, totalBytes: bytes, every: 5 * time.Second, now: time.Now}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty, p.every = true, 100*time.Millisecond
	}
	p.last = p.now()
	return p
}

func (p *progress) add(n int64) { p.bytes += n; p.tick() }
func (p *progress) fileDone()   { p.files++; p.tick() }

func (p *progress) tick() {
	if now := p.now(); now.Sub(p.last) >= p.every {
		p.last = now
		p.draw()
	}
}

// finish draws the final state.
func (p *progress) finish() {
	p.draw()
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

func (p *progress) percent() int {
	switch {
	case p.totalBytes > 0:
		return int(min(100, p.bytes*100/p.totalBytes))
	case p.totalFiles > 0:
		return min(100, p.files*100/p.totalFiles)
	}
	return 100
}

func (p *progress) draw() {
	pct := p.percent()
	if !p.tty {
		fmt.Fprintf(p.w, "migrate-data: %d/%d files, %s of %s (%d%%)\n",
			p.files, p.totalFiles, formatBytes(p.bytes), formatBytes(p.totalBytes), pct)
		return
	}
	const width = 30
	fill := width * pct / 100
	bar := strings.Repeat("=", fill)
	if fill < width {
		bar += ">" + strings.Repeat(" ", width-fill-1)
	}
	// \r returns to the line's start; \x1b[K clears what a longer line left.
	fmt.Fprintf(p.w, "\r[%s] %3d%%  %s / %s  %d/%d files\x1b[K",
		bar, pct, formatBytes(p.bytes), formatBytes(p.totalBytes), p.files, p.totalFiles)
}

// formatBytes writes a size in binary units: 512 B, 1.5 KiB, 3.2 GiB.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for q := n / unit; q >= unit; q /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
