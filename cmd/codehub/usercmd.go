package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/codehub-dev/codehub/internal/config"
	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/user"
	"golang.org/x/term"
)

const userUsage = `usage: codehub user COMMAND [flags]

Commands:
  create --username NAME --email ADDR [--role user|admin|auditor] [--password-stdin]
  list [--search TEXT] [--json]
  delete NAME [--yes]
  set-password NAME [--password-stdin]
  set-role NAME ROLE
  lock NAME [--for DURATION]
  unlock NAME
  invite [--email ADDR] [--role ROLE] [--ttl DURATION]

Every command also takes --config FILE (or CODEHUB_CONFIG), and reads the
same environment as the gateway. Without --password-stdin, the password is
asked for on a terminal, or generated and printed.`

// parseInterleaved parses flags that may come before, between or after
// positional arguments (codehub user delete alice --yes).
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// userCmd is one run of `codehub user`.
type userCmd struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

func runUser(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "--help" || args[0] == "-h" {
		fmt.Fprintln(stdout, userUsage)
		return nil
	}
	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet("codehub user "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "configuration file")
	var (
		username  = fs.String("username", "", "username")
		email     = fs.String("email", "", "email address")
		role      = fs.String("role", "", "user, admin or auditor")
		pwStdin   = fs.Bool("password-stdin", false, "read the password from standard input")
		search    = fs.String("search", "", "show users whose username or email contains this")
		asJSON    = fs.Bool("json", false, "print JSON")
		yes       = fs.Bool("yes", false, "do not ask for confirmation")
		lockFor   = fs.Duration("for", 0, "lock for this long (default: until unlocked)")
		inviteTTL = fs.Duration("ttl", 72*time.Hour, "how long the invite is valid")
	)
	pos, err := parseInterleaved(fs, rest)
	if err != nil {
		return usageError{err.Error()}
	}
	wantArgs := map[string]int{"create": 0, "list": 0, "delete": 1, "set-password": 1, "set-role": 2, "lock": 1, "unlock": 1, "invite": 0}
	n, known := wantArgs[cmd]
	if !known {
		return usageError{fmt.Sprintf("unknown command %q\n%s", cmd, userUsage)}
	}
	if len(pos) != n {
		return usageError{fmt.Sprintf("codehub user %s takes %d argument(s), got %d\n%s", cmd, n, len(pos), userUsage)}
	}
	if *configFile == "" {
		*configFile = firstNonEmpty(getenv("CODEHUB_CONFIG"), getenv("CODE_SERVER_CONFIG"))
	}
	// Check the mode before opening anything: single-user mode has no
	// accounts, and opening it would generate its password.
	cfg, settings, err := multiUserSettings(*configFile, getenv, nil)
	if err != nil {
		return err
	}
	if cfg.DeploymentMode != config.ModeMulti {
		return fmt.Errorf("user accounts exist in multi-user mode, and %s sets deployment-mode = %q", cfg.SourceOf("deployment-mode"), cfg.DeploymentMode)
	}
	app, err := openApp(ctx, *configFile, getenv, settings, io.Discard, stderr)
	if err != nil {
		return err
	}
	defer app.Close()
	c := &userCmd{stdin: stdin, stdout: stdout, stderr: stderr}
	id := app.id
	find := func(name string) (*user.User, error) { return id.UserByName(ctx, name) }

	switch cmd {
	case "create":
		if *username == "" || *email == "" {
			return usageError{"codehub user create needs --username and --email"}
		}
		pw, generated, err := c.password(*pwStdin)
		if err != nil {
			return err
		}
		u, err := id.CreateUser(ctx, identity.NewUser{Username: *username, Email: *email, Password: pw, Role: *role})
		if err != nil {
			return cliError(err)
		}
		fmt.Fprintf(stdout, "created %s %s <%s> (%s)\n", strings.Join(u.Roles, ","), u.Username, u.Email, u.ID)
		if generated {
			fmt.Fprintf(stdout, "password: %s\n", pw)
		}
	case "list":
		users, total, err := id.ListUsers(ctx, user.ListOptions{Search: *search, Limit: 10000})
		if err != nil {
			return cliError(err)
		}
		if *asJSON {
			if users == nil {
				users = []*user.User{} // [], not null
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(users)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USERNAME\tEMAIL\tROLES\tSTATE\tLAST LOGIN\tID")
		now := time.Now()
		for _, u := range users {
			state := "active"
			switch {
			case !u.Active:
				state = "disabled"
			case u.Locked(now):
				state = "locked until " + u.LockedUntil.Local().Format("2006-01-02 15:04")
			}
			last := "never"
			if !u.LastLogin.IsZero() {
				last = u.LastLogin.Local().Format("2006-01-02 15:04")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", u.Username, u.Email, strings.Join(u.Roles, ","), state, last, u.ID)
		}
		tw.Flush()
		fmt.Fprintf(stdout, "%d user(s)\n", total)
	case "delete":
		u, err := find(pos[0])
		if err != nil {
			return cliError(err)
		}
		if !*yes {
			ok, err := c.confirm(fmt.Sprintf("Delete user %s <%s> and end their sessions?", u.Username, u.Email))
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("not deleted")
			}
		}
		if err := id.DeleteUser(ctx, u.ID); err != nil {
			return cliError(err)
		}
		fmt.Fprintf(stdout, "deleted %s\n", u.Username)
		note, err := app.cleanupDeletedUser(ctx, getenv, u.ID)
		if note != "" {
			fmt.Fprintf(stdout, "note: %s\n", note)
		}
		if err != nil {
			return fmt.Errorf("%s is deleted, but what they held is not all released: %w", u.Username, err)
		}
	case "set-password":
		u, err := find(pos[0])
		if err != nil {
			return cliError(err)
		}
		pw, generated, err := c.password(*pwStdin)
		if err != nil {
			return err
		}
		if err := id.SetPassword(ctx, u.ID, pw, ""); err != nil {
			return cliError(err)
		}
		fmt.Fprintf(stdout, "password of %s changed; their sessions are ended\n", u.Username)
		if generated {
			fmt.Fprintf(stdout, "password: %s\n", pw)
		}
	case "set-role":
		u, err := find(pos[0])
		if err != nil {
			return cliError(err)
		}
		if u, err = id.SetRole(ctx, u.ID, pos[1]); err != nil {
			return cliError(err)
		}
		fmt.Fprintf(stdout, "%s is now %s\n", u.Username, strings.Join(u.Roles, ","))
	case "lock":
		u, err := find(pos[0])
		if err != nil {
			return cliError(err)
		}
		until := time.Now().AddDate(100, 0, 0)
		if *lockFor > 0 {
			until = time.Now().Add(*lockFor)
		}
		if err := id.Lock(ctx, u.ID, until); err != nil {
			return cliError(err)
		}
		fmt.Fprintf(stdout, "%s is locked", u.Username)
		if *lockFor > 0 {
			fmt.Fprintf(stdout, " until %s", until.Local().Format(time.RFC1123))
		}
		fmt.Fprintln(stdout, "; their sessions are ended")
	case "unlock":
		u, err := find(pos[0])
		if err != nil {
			return cliError(err)
		}
		if err := id.Unlock(ctx, u.ID); err != nil {
			return cliError(err)
		}
		fmt.Fprintf(stdout, "%s is unlocked\n", u.Username)
	case "invite":
		tok, inv, err := id.CreateInvite(ctx, "cli", *email, *role, *inviteTTL)
		if err != nil {
			return cliError(err)
		}
		fmt.Fprintf(stdout, "invite for %s, valid until %s:\n  /signup?invite=%s\n", firstNonEmpty(inv.Email, "anyone"),
			inv.ExpiresAt.Local().Format(time.RFC1123), tok)
		if id.Registration() != identity.RegisterInvite && id.Registration() != identity.RegisterOpen {
			fmt.Fprintln(stdout, "note: multi-user.auth.registration is \"admin\": set it to \"invite\" for invites to work")
		}
	}
	return nil
}

// cliError shows an identity error's message, not its code.
func cliError(err error) error {
	var ie *identity.Error
	if errors.As(err, &ie) {
		return errors.New(ie.Message)
	}
	return err
}

// password reads a new password: from stdin, from a terminal prompt (twice),
// or generates one.
func (c *userCmd) password(fromStdin bool) (pw string, generated bool, err error) {
	if fromStdin {
		line, err := bufio.NewReader(io.LimitReader(c.stdin, 4096)).ReadString('\n')
		if err != nil && err != io.EOF {
			return "", false, fmt.Errorf("read password: %w", err)
		}
		pw = strings.TrimRight(line, "\r\n")
		if pw == "" {
			return "", false, fmt.Errorf("empty password on standard input")
		}
		return pw, false, nil
	}
	if f, ok := c.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(c.stderr, "Password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.stderr)
		if err != nil {
			return "", false, err
		}
		fmt.Fprint(c.stderr, "Again: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.stderr)
		if err != nil {
			return "", false, err
		}
		if string(a) != string(b) {
			return "", false, fmt.Errorf("the passwords differ")
		}
		return string(a), false, nil
	}
	buf := make([]byte, 15)
	if _, err := rand.Read(buf); err != nil {
		return "", false, err
	}
	return base64.RawURLEncoding.EncodeToString(buf), true, nil
}

func (c *userCmd) confirm(question string) (bool, error) {
	f, ok := c.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return false, fmt.Errorf("%s Add --yes to confirm", question)
	}
	fmt.Fprintf(c.stderr, "%s [y/N] ", question)
	line, _ := bufio.NewReader(f).ReadString('\n')
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes", nil
}
