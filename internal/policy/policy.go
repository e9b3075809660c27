// Package policy reads isolation policies: HCL files that say what a
// user's workspace may use (driver, image, memory, CPU, pids, storage,
// sessions, connections, idle timeout, datacenter) and to whom each
// applies (users, groups, roles).
//
// A file holds one or more blocks:
//
//	policy "large" {
//	  description     = "Data science: more memory, longer idle timeout"
//	  driver          = "docker"   # optional: default, the orchestrator's
//	  image           = "ghcr.io/codehub-dev/workspace:4.139.1"
//	  cpu             = 200        # percent of one CPU
//	  memory          = "8GiB"
//	  memory_max      = "12GiB"    # burst (Nomad memory_max); optional
//	  pids            = 4096
//	  storage         = "50GiB"
//	  max_sessions    = 5
//	  max_connections = 200
//	  idle_timeout    = "2h"       # Go duration; "0" never stops
//	  datacenter      = "eu-1"     # optional, Nomad only
//	  priority        = 10         # optional, default 0
//
//	  applies_to {
//	    users  = ["alice"]
//	    groups = ["data"]
//	    roles  = ["admin"]
//	  }
//	}
//
// A user's policy is, in order: the one assigned to them by name (an
// admin sets the user's metadata "policy"); else the highest-priority
// policy listing their username; else the highest-priority one listing
// one of their groups; else one listing one of their roles; else the
// policy named "default". A Set is immutable and safe for concurrent use.
package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/codehub-dev/codehub/internal/workspace"
)

// Drivers a policy may name: "process" and "directory" run workspaces on
// the gateway's machine (the local orchestrator), "docker" and "exec" on
// Nomad.
const (
	DriverProcess   = "process"
	DriverDirectory = "directory"
	DriverDocker    = "docker"
	DriverExec      = "exec"
)

// drivers lists every known driver.
var drivers = []string{DriverProcess, DriverDirectory, DriverDocker, DriverExec}

// DefaultName is the policy that applies when no rule does.
const DefaultName = "default"

// Policy is one isolation policy as written in a file, sizes in MiB.
type Policy struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Driver and Image, when set, demand one kind of isolation; empty:
	// whatever the orchestrator runs by default (see CheckDrivers).
	Driver string `json:"driver,omitempty"`
	Image  string `json:"image,omitempty"`
	// CPUPercent of one CPU (200: two CPUs).
	CPUPercent int `json:"cpuPercent"`
	// MemoryMB is what a workspace is given, MemoryMaxMB what it may burst
	// to (0: no burst).
	MemoryMB       int           `json:"memoryMB"`
	MemoryMaxMB    int           `json:"memoryMaxMB,omitempty"`
	Pids           int           `json:"pids"`
	StorageMB      int           `json:"storageMB"`
	MaxSessions    int           `json:"maxSessions"`
	MaxConnections int           `json:"maxConnections"`
	IdleTimeout    time.Duration `json:"idleTimeout"`
	Datacenter     string        `json:"datacenter,omitempty"`
	// Priority orders policies that match a user at the same level
	// (users, groups, roles): the highest wins.
	Priority  int       `json:"priority"`
	AppliesTo AppliesTo `json:"appliesTo"`
	// Pos is where the policy block starts.
	Pos Pos `json:"pos"`
	// driverPos is where the driver is set, for CheckDrivers; listPos
	// where each applies_to list is, for overlap errors.
	driverPos Pos
	listPos   map[string]Pos
}

// AppliesTo says whom a policy is for. Usernames and groups are compared
// in lower case.
type AppliesTo struct {
	Users  []string `json:"users,omitempty"`
	Groups []string `json:"groups,omitempty"`
	Roles  []string `json:"roles,omitempty"`
}

// Workspace is the policy in the form orchestrators take. What the
// policy leaves to the orchestrator (no driver: the driver and image) is
// taken from def, the orchestrator's own default.
func (p *Policy) Workspace(def workspace.Policy) workspace.Policy {
	w := workspace.Policy{
		Name: p.Name, Driver: p.Driver, Image: p.Image,
		MemoryMB: p.MemoryMB, MemoryMaxMB: p.MemoryMaxMB, CPUPercent: p.CPUPercent,
		Pids: p.Pids, StorageMB: p.StorageMB,
		MaxSessions: p.MaxSessions, MaxConnections: p.MaxConnections,
		IdleTimeout: p.IdleTimeout, Datacenter: p.Datacenter,
	}
	if w.Driver == "" {
		w.Driver, w.Image = def.Driver, def.Image
	}
	return w
}

// Compatible returns the drivers a policy may demand of an orchestrator
// whose own driver is running: the local orchestrator runs every
// workspace one way (its strategy), Nomad runs docker and exec jobs.
func Compatible(running string) []string {
	switch running {
	case DriverProcess, DriverDirectory:
		return []string{running}
	}
	return []string{DriverDocker, DriverExec}
}

// Set is the policies of one directory.
type Set struct {
	policies []*Policy // declaration order
	byName   map[string]*Policy
}

// Policies returns the policies in declaration order (files by name).
func (s *Set) Policies() []*Policy { return slices.Clone(s.policies) }

// Get returns the policy called name.
func (s *Set) Get(name string) (*Policy, bool) {
	p, ok := s.byName[name]
	return p, ok
}

// Subject is what selection knows about a user.
type Subject struct {
	Username string
	Roles    []string
	Groups   []string
	// Assigned is the policy an admin assigned to the user by name (their
	// metadata "policy"); empty: none.
	Assigned string
}

// Match is a selected policy and why it was chosen, for logs and the
// admin API ("assigned", `user "alice"`, `group "data"`, `role "admin"`,
// "default").
type Match struct {
	Policy *Policy
	Reason string
}

// Select returns the policy of sub. Returns ErrUnknownPolicy if sub is
// assigned a policy that does not exist, ErrNoPolicy if nothing applies
// and there is no "default" policy.
func (s *Set) Select(sub Subject) (Match, error) {
	if sub.Assigned != "" {
		p, ok := s.byName[sub.Assigned]
		if !ok {
			return Match{}, fmt.Errorf("assigned policy %q: %w", sub.Assigned, ErrUnknownPolicy)
		}
		return Match{Policy: p, Reason: "assigned"}, nil
	}
	name := strings.ToLower(strings.TrimSpace(sub.Username))
	groups := make([]string, 0, len(sub.Groups))
	for _, g := range sub.Groups {
		groups = append(groups, strings.ToLower(strings.TrimSpace(g)))
	}
	for _, level := range []struct {
		kind string
		have []string
		list func(*Policy) []string
	}{
		{"user", []string{name}, func(p *Policy) []string { return p.AppliesTo.Users }},
		{"group", groups, func(p *Policy) []string { return p.AppliesTo.Groups }},
		{"role", sub.Roles, func(p *Policy) []string { return p.AppliesTo.Roles }},
	} {
		if p, key := s.best(level.have, level.list); p != nil {
			return Match{Policy: p, Reason: level.kind + ` "` + key + `"`}, nil
		}
	}
	if p, ok := s.byName[DefaultName]; ok {
		return Match{Policy: p, Reason: DefaultName}, nil
	}
	return Match{}, ErrNoPolicy
}

// best returns the policy of highest priority whose list shares a value
// with have, and that value; among equals, the first declared.
func (s *Set) best(have []string, list func(*Policy) []string) (*Policy, string) {
	var (
		win *Policy
		key string
	)
	for _, p := range s.policies {
		if win != nil && p.Priority <= win.Priority {
			continue
		}
		for _, v := range list(p) {
			if v != "" && slices.Contains(have, v) {
				win, key = p, v
				break
			}
		}
	}
	return win, key
}

// CheckDrivers reports, with their positions, the policies whose driver
// is not among allowed: a policy that asks for isolation the running
// orchestrator cannot give must fail loudly, not run with less.
func (s *Set) CheckDrivers(allowed ...string) error {
	var errs Errors
	for _, p := range s.policies {
		if p.Driver != "" && !slices.Contains(allowed, p.Driver) {
			errs = append(errs, &Error{Pos: p.driverPos, Key: "driver",
				Msg: `policy "` + p.Name + `" asks for "` + p.Driver + `", but workspaces here run with ` + quoteList(allowed)})
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

func quoteList(vs []string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = `"` + v + `"`
	}
	switch len(q) {
	case 0:
		return "nothing"
	case 1:
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}
