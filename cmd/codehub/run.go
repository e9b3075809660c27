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

// run is the whole program; main only adds the process's environment.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 1 {
		switch args[1] {
		case "hash-password":
			return runHashPassword(args[2:], stdin, stdout, stderr)
		case "agent":
			return runAgent(ctx, args[2:], getenv, stdin, stdout, stderr)
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
