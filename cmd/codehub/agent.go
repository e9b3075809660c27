package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/codehub-dev/codehub/internal/agent"
	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/buildinfo"
	"github.com/codehub-dev/codehub/internal/codeserver"
	"github.com/codehub-dev/codehub/internal/config"
	"github.com/hashicorp/go-hclog"
)

const agentUsage = `Usage: codehub agent --secret-file FILE [flags]

Runs one user's workspace: supervises their code-server and serves it to the
gateway, on --listen, to requests that carry the workspace secret. Prints
"%shost:port" on stdout once listening. The secret comes from
--secret-file (mode 0600) or %s.

Flags:
`

// stringsFlag is a repeatable flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, " ") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

// wantsNoNewPrivileges reports whether the agent's arguments ask for
// --no-new-privileges (before flag parsing: main acts on it first).
func wantsNoNewPrivileges(args []string) bool {
	for _, a := range args {
		switch a {
		case "--no-new-privileges", "-no-new-privileges", "--no-new-privileges=true", "-no-new-privileges=true":
			return true
		case "--":
			return false
		}
	}
	return false
}

// runAgent is `codehub agent`: flags in, agent.Run.
func runAgent(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	var (
		cfg                    agent.Config
		secretFile, codeServer string
		logFormat, logLevel    string
		waitStart, noNewPrivs  bool
		extraArgs              stringsFlag
	)
	fs := flag.NewFlagSet("codehub agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, agentUsage, agentapi.ReadyPrefix, agent.SecretEnv)
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:0", "TCP `address` to serve the gateway on, host:port")
	fs.StringVar(&secretFile, "secret-file", "", "`file` holding the workspace secret, at least 32 bytes, mode 0600 (or env "+agent.SecretEnv+")")
	fs.StringVar(&codeServer, "code-server", "", "`path` of the code-server launcher (default: the one make setup installs, then $PATH)")
	fs.StringVar(&cfg.UserDataDir, "user-data-dir", "", "code-server's user data `directory`")
	fs.StringVar(&cfg.ExtensionsDir, "extensions-dir", "", "code-server's extensions `directory`")
	fs.StringVar(&cfg.Folder, "folder", "", "`folder` the IDE opens")
	fs.Var(&extraArgs, "extra-arg", "a further code-server `argument` (repeatable)")
	fs.StringVar(&cfg.StoragePath, "storage-path", "", "`directory` whose storage use is reported (default: the parent of --user-data-dir)")
	fs.Int64Var(&cfg.StorageLimit, "storage-limit", 0, "storage limit reported, in `bytes` (0: unknown)")
	fs.BoolVar(&waitStart, "wait-start", false, "read one byte from stdin before starting code-server")
	fs.BoolVar(&noNewPrivs, "no-new-privileges", false, "run with no_new_privs (Linux): no program of the workspace gains privileges through set-uid bits or file capabilities")
	fs.StringVar(&logFormat, "log-format", "text", "text or json")
	fs.StringVar(&logLevel, "log-level", "info", "trace, debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("codehub agent takes no arguments, got %q", fs.Args())}
	}
	if logFormat != "text" && logFormat != "json" {
		return usageError{fmt.Sprintf("--log-format: must be text or json, got %q", logFormat)}
	}
	level := hclog.LevelFromString(logLevel)
	if level == hclog.NoLevel {
		return usageError{fmt.Sprintf("--log-level: must be trace, debug, info, warn or error, got %q", logLevel)}
	}
	if cfg.StorageLimit < 0 {
		return usageError{"--storage-limit: must not be negative"}
	}
	if noNewPrivs {
		// main set it before the program started again; an agent run
		// in-process without it must not go on as if it were set.
		set, err := noNewPrivileges()
		if err != nil {
			return err
		}
		if !set {
			return errors.New("--no-new-privileges: no_new_privs is not set; codehub agent sets it when it starts as its own process")
		}
	}

	secret, err := agent.LoadSecret(secretFile, getenv)
	if err != nil {
		return err
	}
	bin, err := codeserver.Find(codeServer, config.CodeServerVersion, getenv)
	if err != nil {
		return err
	}
	cfg.Secret = secret
	cfg.CodeServer = bin
	cfg.ExtraArgs = extraArgs
	cfg.Env = childEnv(os.Environ())
	cfg.ReadyOutput = stdout
	cfg.Version = buildinfo.Version()
	if waitStart {
		cfg.WaitStart = stdin
	}
	cfg.Logger = hclog.New(&hclog.LoggerOptions{
		Name:       "agent",
		Level:      level,
		JSONFormat: logFormat == "json",
		Output:     stderr,
	})
	return agent.Run(ctx, cfg)
}
