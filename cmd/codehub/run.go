package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/codehub-dev/codehub/internal/buildinfo"
	"github.com/codehub-dev/codehub/internal/config"
	"github.com/codehub-dev/codehub/internal/sandbox"
)

// usageError is a mistake on the command line; main exits 2 for it.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// errSilent reports failure when the message has already been printed.
var errSilent = errors.New("failed")

const usage = `codehub: your team's browser IDEs behind one gateway.

Usage:
  codehub [flags] [folder]          run the gateway (the folder opens in the IDE)
  codehub hash-password             read a password on stdin, print its argon2id hash
  codehub config validate FILE      check a configuration file
  codehub user COMMAND              manage accounts (multi-user mode): create, list, delete,
                                    set-password, set-role, lock, unlock, invite
  codehub migrate-data --from-single-user --to-user NAME
                                    copy a single-user installation's IDE data
                                    into NAME's home (multi-user mode)
  codehub agent --secret-file FILE  run one user's workspace (started by the gateway)
  codehub audit verify [FILE]       check the audit logs (keyed chain, checkpoints, file against database)
  codehub audit rotate-key          make a new audit key
  codehub policy validate DIR       check a directory of isolation policies
  codehub version                   print the version

Flags:
`

// configFirst are the commands that take --config: `codehub --config F
// user list` means `codehub user list --config F`.
var configFirst = []string{"user", "migrate-data", "audit"}

// commands are the subcommands run knows.
var commands = []string{"hash-password", "agent", "config", "user", "migrate-data", "policy", "audit", "version", "help"}

// globalFirst moves a --config given before a subcommand after it, where
// the subcommand reads it; it refuses one before a subcommand that takes
// none. Anything else is left to the gateway's own flags.
func globalFirst(args []string) ([]string, error) {
	var global []string
	i := 1
	for i < len(args) {
		a := args[i]
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "config" {
			break
		}
		if hasValue {
			global = append(global, a)
			i++
			continue
		}
		if i+1 >= len(args) {
			return args, nil // the gateway's flags say what is missing
		}
		global = append(global, a, args[i+1])
		i += 2
	}
	if len(global) == 0 || i >= len(args) || !slices.Contains(commands, args[i]) {
		return args, nil
	}
	if !slices.Contains(configFirst, args[i]) {
		return nil, usageError{fmt.Sprintf("codehub %s takes no --config", args[i])}
	}
	out := append([]string{args[0]}, args[i:]...)
	if len(out) == 2 && args[i] != "migrate-data" {
		return out, nil // `codehub --config F user`: its help needs none
	}
	return append(out, global...), nil
}

// run is the whole program; main only adds the process's environment.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	args, err := globalFirst(args)
	if err != nil {
		return err
	}
	if len(args) > 1 {
		switch args[1] {
		case "hash-password":
			return runHashPassword(args[2:], stdin, stdout, stderr)
		case "agent":
			return runAgent(ctx, args[2:], getenv, stdin, stdout, stderr)
		case sandbox.InitCommand: // started by the gateway, not by people
			return runSandboxInit(args[2:], stdin, stderr)
		case "config":
			return runConfig(args[2:], getenv, stdout, stderr)
		case "user":
			return runUser(ctx, args[2:], getenv, stdin, stdout, stderr)
		case "migrate-data":
			return runMigrateData(ctx, args[2:], getenv, stdin, stdout, stderr)
		case "policy":
			return runPolicy(args[2:], stdout, stderr)
		case "audit":
			return runAudit(ctx, args[2:], getenv, stdout, stderr)
		case "version":
			printVersion(stdout)
			return nil
		case "help":
			return runServe(ctx, []string{args[0], "--help"}, getenv, stdout, stderr)
		}
	}
	return runServe(ctx, args, getenv, stdout, stderr)
}

// runSandboxInit is `codehub sandbox-init --spec FILE`: the first process
// of a workspace's sandbox (see internal/sandbox). It does not return.
func runSandboxInit(args []string, stdin io.Reader, stderr io.Writer) error {
	if len(args) != 2 || args[0] != "--spec" {
		return usageError{"usage: codehub " + sandbox.InitCommand + " --spec FILE (started by the gateway)"}
	}
	sandbox.Init(args[1], stdin, stderr)
	return nil
}

func printVersion(w io.Writer) {
	fmt.Fprintf(w, "codehub %s (code-server %s)\n", buildinfo.Version(), config.CodeServerVersion)
}

func runConfig(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) != 2 || args[0] != "validate" {
		return usageError{"usage: codehub config validate FILE"}
	}
	file := args[1]
	cfg, err := config.Load(config.LoadOptions{File: file, Getenv: getenv})
	if err != nil {
		fmt.Fprintln(stderr, strings.TrimSpace(err.Error()))
		return errSilent
	}
	fmt.Fprintf(stdout, "%s: valid (deployment mode %s, listening on %s)\n", file, cfg.DeploymentMode, cfg.BindAddr)
	return nil
}

// multiUserSettings is what the account commands (user, migrate-data,
// audit verify) run with: their flags, plus deployment-mode "multi" when
// nothing sets the mode, since accounts exist only there and `codehub`
// run with no configuration (make run) is multi-user through a flag the
// commands do not see. A configuration that says "single" still wins.
func multiUserSettings(file string, getenv func(string) string, settings []config.Setting) (*config.Config, []config.Setting, error) {
	cfg, err := config.Load(config.LoadOptions{File: file, Getenv: getenv, Flags: settings})
	if err != nil {
		return nil, nil, err
	}
	if cfg.DeploymentMode == config.ModeMulti || cfg.SourceOf("deployment-mode").String() != "default" {
		return cfg, settings, nil
	}
	settings = append(slices.Clone(settings), config.Setting{Path: "deployment-mode", Value: config.ModeMulti, Flag: "(multi-user by default)"})
	cfg, err = config.Load(config.LoadOptions{File: file, Getenv: getenv, Flags: settings})
	return cfg, settings, err
}
