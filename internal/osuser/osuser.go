// Package osuser gives each workspace its own Unix account, so that the
// kernel, not codehub, keeps one user's files and processes from another's.
//
// Accounts are made with the shadow tools (useradd, userdel) rather than by
// editing /etc/passwd, so locking, nscd and the group file stay the tools'
// business. Two gateways may share the password database: Ensure retries
// when the other one takes the name or the uid first.
package osuser

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Error is the type of the package's sentinel errors; they are constants so
// that no caller can reassign them.
type Error string

// Error returns the message.
func (e Error) Error() string { return string(e) }

// Errors returned by this package; test with errors.Is.
const (
	// ErrNotFound: no account of that name.
	ErrNotFound Error = "no such account"
	// ErrInvalidName: the name is not a safe account name.
	ErrInvalidName Error = "invalid account name"
	// ErrConflict: an account of that name exists but is not one codehub
	// may use (uid outside the range, or another home directory).
	ErrConflict Error = "account exists and does not match"
	// ErrNoFreeUID: every uid in the range is taken.
	ErrNoFreeUID Error = "no free uid in range"
)

const (
	// DefaultShell is the login shell of new accounts when Config.Shell is
	// empty.
	DefaultShell = "/bin/bash"
	// maxNameLen is what useradd accepts on Linux (utmp keeps 32 bytes).
	maxNameLen = 32
	// maxAttempts bounds the retries of Ensure and Delete when another
	// process holds the password file lock or takes our uid first.
	maxAttempts = 50
	// Exit statuses of useradd(8) and userdel(8).
	exitUIDTaken   = 4
	exitNameTaken  = 9
	exitNoSuchUser = 6
)

// Config says which account Ensure returns or creates.
type Config struct {
	// Name is the login name: lowercase, [a-z_][a-z0-9_-]{0,31}.
	Name string
	// UIDMin and UIDMax bound the uid (inclusive) of the account; an
	// existing account outside them is refused, so that a name such as
	// "root" or "daemon" can never be handed to a workspace.
	UIDMin, UIDMax int
	// Home is the absolute home directory recorded for the account. It is
	// not created: the caller mounts the user's storage there.
	Home string
	// Shell is the login shell; empty means DefaultShell.
	Shell string
}

// Account is a Unix account.
type Account struct {
	Name string
	UID  int
	GID  int
	Home string
}

// ValidName reports whether name is an account name this package accepts:
// [a-z_][a-z0-9_-]{0,31}. The rule is stricter than useradd's so that a
// name is also safe in paths, cgroup names and command lines.
func ValidName(name string) bool {
	if name == "" || len(name) > maxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c == '_':
		case i > 0 && (c >= '0' && c <= '9' || c == '-'):
		default:
			return false
		}
	}
	return true
}

func (c Config) validate() error {
	if !ValidName(c.Name) {
		return fmt.Errorf("%w: %q", ErrInvalidName, c.Name)
	}
	if c.UIDMin < 1 || c.UIDMax < c.UIDMin || c.UIDMax > 1<<31-2 {
		return fmt.Errorf("invalid uid range [%d, %d]: need 1 <= min <= max < 2^31-1", c.UIDMin, c.UIDMax)
	}
	if !filepath.IsAbs(c.Home) || filepath.Clean(c.Home) != c.Home || c.Home == "/" {
		return fmt.Errorf("invalid home %q: need a clean absolute path other than /", c.Home)
	}
	if c.Shell != "" && !filepath.IsAbs(c.Shell) {
		return fmt.Errorf("invalid shell %q: need an absolute path", c.Shell)
	}
	if strings.ContainsAny(c.Home+c.Shell, ":\n") {
		return fmt.Errorf("home %q or shell %q contains ':' or a newline", c.Home, c.Shell)
	}
	return nil
}

// Ensure returns the account cfg.Name, creating it if it does not exist.
//
// An existing account is returned only if its uid lies in [UIDMin, UIDMax]
// and its home is cfg.Home; otherwise the error wraps ErrConflict.
//
// A new account is a system account (no password, so no password login; no
// lastlog entry) with its own group, home cfg.Home (not created) and the
// lowest uid in the range that is free both as a uid and as a gid, so that
// its group normally gets gid == uid. Returns ErrNoFreeUID when the range
// is full.
func Ensure(ctx context.Context, cfg Config) (Account, error) {
	if err := cfg.validate(); err != nil {
		return Account{}, err
	}
	if cfg.Shell == "" {
		cfg.Shell = DefaultShell
	}
	var lastErr error
	for attempt := range maxAttempts {
		if err := ctx.Err(); err != nil {
			return Account{}, fmt.Errorf("ensure account %s: %w", cfg.Name, err)
		}
		acct, err := Lookup(cfg.Name)
		if err == nil {
			return acct, cfg.check(acct)
		}
		if !errors.Is(err, ErrNotFound) {
			return Account{}, err
		}
		uid, err := freeUID(ctx, cfg.UIDMin, cfg.UIDMax)
		if err != nil {
			return Account{}, fmt.Errorf("ensure account %s: %w", cfg.Name, err)
		}
		err = useradd(ctx, cfg, uid)
		var ce *cmdError
		switch {
		case err == nil:
			acct, err := Lookup(cfg.Name)
			if err != nil {
				return Account{}, fmt.Errorf("ensure account %s: created, then: %w", cfg.Name, err)
			}
			return acct, cfg.check(acct)
		case errors.As(err, &ce) && ce.code == exitNameTaken:
			// Either another gateway created it a moment ago (the next
			// Lookup finds it), or a group of that name exists without a
			// user, which no retry will fix.
			if _, lerr := Lookup(cfg.Name); errors.Is(lerr, ErrNotFound) {
				return Account{}, fmt.Errorf("ensure account %s: %w", cfg.Name, err)
			}
		case errors.As(err, &ce) && (ce.code == exitUIDTaken || ce.locked()):
			// Lost a race for the uid or the lock; look again.
		default:
			return Account{}, fmt.Errorf("ensure account %s: %w", cfg.Name, err)
		}
		lastErr = err
		if err := backoff(ctx, attempt); err != nil {
			return Account{}, fmt.Errorf("ensure account %s: %w", cfg.Name, err)
		}
	}
	return Account{}, fmt.Errorf("ensure account %s: gave up after %d attempts: %w", cfg.Name, maxAttempts, lastErr)
}

// check reports whether an existing account may serve cfg.
func (c Config) check(a Account) error {
	if a.UID < c.UIDMin || a.UID > c.UIDMax {
		return fmt.Errorf("account %s has uid %d, outside [%d, %d]: %w", a.Name, a.UID, c.UIDMin, c.UIDMax, ErrConflict)
	}
	if a.Home != c.Home {
		return fmt.Errorf("account %s has home %s, not %s: %w", a.Name, a.Home, c.Home, ErrConflict)
	}
	return nil
}

func useradd(ctx context.Context, cfg Config, uid int) error {
	lo, hi := strconv.Itoa(cfg.UIDMin), strconv.Itoa(cfg.UIDMax)
	return run(ctx, "useradd",
		"--system",         // no password aging; quiet about the uid range
		"--no-create-home", // the caller mounts the home
		"--no-log-init",    // no sparse lastlog/faillog growth for high uids
		"--user-group",
		"--uid", strconv.Itoa(uid),
		"--home-dir", cfg.Home,
		"--shell", cfg.Shell,
		"--comment", "codehub workspace",
		// Keep the private group's gid in our range (preferably == uid)
		// instead of the distribution's system range.
		"--key", "SYS_UID_MIN="+lo, "--key", "SYS_UID_MAX="+hi,
		"--key", "SYS_GID_MIN="+lo, "--key", "SYS_GID_MAX="+hi,
		"--", cfg.Name)
}

// freeUID returns the lowest id in [lo, hi] used neither as a uid nor as a
// gid, as the name service (files, LDAP…) reports them.
func freeUID(ctx context.Context, lo, hi int) (int, error) {
	used := make(map[int]bool)
	for _, db := range []string{"passwd", "group"} {
		out, err := output(ctx, "getent", db)
		if err != nil {
			return 0, err
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			f := strings.Split(sc.Text(), ":")
			if len(f) < 3 {
				continue
			}
			if id, err := strconv.Atoi(f[2]); err == nil {
				used[id] = true
			}
		}
	}
	for id := lo; id <= hi; id++ {
		if !used[id] {
			return id, nil
		}
	}
	return 0, fmt.Errorf("[%d, %d]: %w", lo, hi, ErrNoFreeUID)
}

// Lookup returns the account name, or an error wrapping ErrNotFound.
func Lookup(name string) (Account, error) {
	if !ValidName(name) {
		return Account{}, fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	u, err := user.Lookup(name)
	if err != nil {
		var unk user.UnknownUserError
		if errors.As(err, &unk) {
			return Account{}, fmt.Errorf("account %s: %w", name, ErrNotFound)
		}
		return Account{}, fmt.Errorf("look up account %s: %w", name, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return Account{}, fmt.Errorf("account %s: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return Account{}, fmt.Errorf("account %s: gid %q: %w", name, u.Gid, err)
	}
	return Account{Name: u.Username, UID: uid, GID: gid, Home: u.HomeDir}, nil
}

// Delete removes the account name and its private group, keeping its files
// (the home image belongs to the caller). Deleting an account that does not
// exist succeeds. userdel refuses while the user still runs processes: kill
// them (their cgroup) first.
//
// Delete removes any account it is given: pass only names Ensure returned.
func Delete(ctx context.Context, name string) error {
	if !ValidName(name) {
		return fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	var err error
	for attempt := range maxAttempts {
		err = run(ctx, "userdel", "--", name)
		var ce *cmdError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ce) && ce.code == exitNoSuchUser:
			return nil
		case errors.As(err, &ce) && ce.locked():
		default:
			return fmt.Errorf("delete account %s: %w", name, err)
		}
		if berr := backoff(ctx, attempt); berr != nil {
			return fmt.Errorf("delete account %s: %w", name, berr)
		}
	}
	return fmt.Errorf("delete account %s: gave up after %d attempts: %w", name, maxAttempts, err)
}

// backoff waits a little longer after each failed attempt, with jitter so
// that racing gateways do not retry in step.
func backoff(ctx context.Context, attempt int) error {
	d := time.Duration(5+min(attempt, 10)*10)*time.Millisecond + rand.N(10*time.Millisecond)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// cmdError is a failed command with its exit status and stderr.
type cmdError struct {
	cmd    string
	code   int // -1 if it did not exit normally
	stderr string
	err    error
}

func (e *cmdError) Error() string {
	if e.stderr == "" {
		return fmt.Sprintf("%s: %v", e.cmd, e.err)
	}
	return fmt.Sprintf("%s: %v: %s", e.cmd, e.err, e.stderr)
}

func (e *cmdError) Unwrap() error { return e.err }

// locked reports whether the shadow tools failed because another process
// held the lock on /etc/passwd, /etc/group or their shadows.
func (e *cmdError) locked() bool {
	return strings.Contains(e.stderr, "cannot lock") || strings.Contains(e.stderr, "try again later")
}

func run(ctx context.Context, name string, args ...string) error {
	_, err := output(ctx, name, args...)
	return err
}

// output runs a command and returns its stdout; a failure is a *cmdError
// carrying the command's stderr.
func output(ctx context.Context, name string, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// LC_ALL=C keeps messages (which locked() reads) in English.
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	if err := cmd.Run(); err != nil {
		ce := &cmdError{cmd: name + " " + strings.Join(args, " "), code: -1, stderr: strings.TrimSpace(stderr.String()), err: err}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			ce.code = ee.ExitCode()
		}
		return nil, ce
	}
	return stdout.Bytes(), nil
}
