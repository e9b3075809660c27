package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/codehub-dev/codehub/internal/config"
	"github.com/codehub-dev/codehub/internal/policy"
	"github.com/codehub-dev/codehub/internal/user"
	"github.com/codehub-dev/codehub/internal/workspace"
)

// UserLookup finds an account by id; *identity.Service is one.
type UserLookup interface {
	User(ctx context.Context, id string) (*user.User, error)
}

// loadPolicies reads the isolation policies in the directory named by
// multi-user.isolation.policies. It returns nil and no error when none
// is named: every user then gets the policy made from the limits.
func loadPolicies(cfg *config.Config) (*policy.Set, error) {
	dir := cfg.MultiUser.Isolation.Policies
	if dir == "" {
		return nil, nil
	}
	set, err := policy.Load(dir)
	var perrs policy.Errors
	if err != nil && !errors.As(err, &perrs) {
		// The directory itself: point at the setting that names it.
		return nil, fmt.Errorf("%s: multi-user.isolation.policies: %w", cfg.SourceOf("multi-user.isolation.policies"), err)
	}
	return set, err
}

// checkPolicyDrivers refuses, at start-up, policies that demand a driver
// the orchestrator cannot give (running is the default policy's driver:
// the local strategy, or Nomad's docker or exec).
func checkPolicyDrivers(set *policy.Set, running string) error {
	if set == nil {
		return nil
	}
	return set.CheckDrivers(policy.Compatible(running)...)
}

// policyFor is the workspace manager's PolicyFor: the user's isolation
// policy from set, or def (the policy made from the configuration's
// limits) when set is nil or no policy applies. A warm workspace (userID
// "") gets the "default" policy, or def. A user assigned a policy that
// does not exist, or whose metadata is malformed, gets an error and no
// workspace: guessing could lift a restriction an admin set.
func policyFor(set *policy.Set, def workspace.Policy, users UserLookup) func(ctx context.Context, userID string) (workspace.Policy, error) {
	if set == nil {
		return func(context.Context, string) (workspace.Policy, error) { return def, nil }
	}
	allowed := policy.Compatible(def.Driver)
	resolve := func(p *policy.Policy) (workspace.Policy, error) {
		w := p.Workspace(def)
		if w.Driver != def.Driver && !slices.Contains(allowed, w.Driver) {
			// checkPolicyDrivers should have refused this at start-up;
			// never run a workspace with less isolation than asked for.
			return workspace.Policy{}, fmt.Errorf("isolation policy %q asks for driver %q, but workspaces here run with %q",
				p.Name, w.Driver, def.Driver)
		}
		return w, nil
	}
	return func(ctx context.Context, userID string) (workspace.Policy, error) {
		if userID == "" {
			if p, ok := set.Get(policy.DefaultName); ok {
				return resolve(p)
			}
			return def, nil
		}
		u, err := users.User(ctx, userID)
		if err != nil {
			return workspace.Policy{}, fmt.Errorf("isolation policy: %w", err)
		}
		sub, err := policy.SubjectOf(u)
		if err != nil {
			return workspace.Policy{}, fmt.Errorf("isolation policy: %w", err)
		}
		m, err := set.Select(sub)
		switch {
		case errors.Is(err, policy.ErrNoPolicy):
			return def, nil
		case err != nil:
			return workspace.Policy{}, fmt.Errorf("isolation policy of %s: %w", u.Username, err)
		}
		return resolve(m.Policy)
	}
}

// runPolicy is `codehub policy validate DIR`: it loads a policy
// directory and lists what it found, or every problem with its file,
// line, column and key.
func runPolicy(args []string, stdout, stderr io.Writer) error {
	if len(args) != 2 || args[0] != "validate" {
		return usageError{"usage: codehub policy validate DIR"}
	}
	set, err := policy.Load(args[1])
	if err != nil {
		fmt.Fprintln(stderr, strings.TrimSpace(err.Error()))
		return errSilent
	}
	ps := set.Policies()
	fmt.Fprintf(stdout, "%s: valid (%d policies)\n", args[1], len(ps))
	for _, p := range ps {
		driver := p.Driver
		if driver == "" {
			driver = "orchestrator's driver"
		}
		var to []string
		for _, l := range []struct {
			kind string
			vs   []string
		}{{"users", p.AppliesTo.Users}, {"groups", p.AppliesTo.Groups}, {"roles", p.AppliesTo.Roles}} {
			if len(l.vs) > 0 {
				to = append(to, l.kind+" "+strings.Join(l.vs, ","))
			}
		}
		if len(to) == 0 {
			to = append(to, "by assignment only")
			if p.Name == policy.DefaultName {
				to[0] = "everyone no other policy applies to"
			}
		}
		fmt.Fprintf(stdout, "  %-12s %s, %d%% CPU, %s memory, %d pids, %s storage, idle %s; %s (priority %d)\n",
			p.Name, driver, p.CPUPercent, mibString(p.MemoryMB, p.MemoryMaxMB), p.Pids, mibString(p.StorageMB, 0),
			idleString(p), strings.Join(to, "; "), p.Priority)
	}
	return nil
}

func mibString(mb, maxMB int) string {
	f := func(n int) string {
		if n%1024 == 0 {
			return fmt.Sprintf("%dGiB", n/1024)
		}
		return fmt.Sprintf("%dMiB", n)
	}
	if maxMB > mb {
		return f(mb) + " (" + f(maxMB) + " burst)"
	}
	return f(mb)
}

func idleString(p *policy.Policy) string {
	if p.IdleTimeout == 0 {
		return "never"
	}
	return p.IdleTimeout.String()
}
