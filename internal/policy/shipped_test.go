package policy

import (
	"path/filepath"
	"testing"
)

// shipped is the repository's policies/ directory.
var shipped = filepath.Join("..", "..", "policies")

// TestShippedPolicies loads the policies codehub ships and checks that
// they give the people the comments promise the policy they promise.
func TestShippedPolicies(t *testing.T) {
	t.Parallel()
	s := MustLoad(t, shipped)
	if len(s.Policies()) < 3 {
		t.Fatalf("only %d shipped policies", len(s.Policies()))
	}
	// The shipped set must run under any orchestrator: drivers left to it.
	if err := s.CheckDrivers(DriverDirectory); err != nil {
		t.Fatalf("shipped policies pin a driver:\n%v", err)
	}
	for _, tt := range []struct {
		sub  Subject
		want string
	}{
		{Subject{Username: "erin", Roles: []string{"user"}}, "default"},
		{Subject{Username: "root", Roles: []string{"user", "admin"}}, "admins"},
		{Subject{Username: "root", Roles: []string{"admin"}, Groups: []string{"data"}}, "large"},
		{Subject{Username: "ann", Roles: []string{"auditor"}}, "default"},
		{Subject{Username: "guest", Roles: []string{"user"}, Groups: []string{"ml"}, Assigned: "restricted"}, "restricted"},
	} {
		m, err := s.Select(tt.sub)
		if err != nil || m.Policy.Name != tt.want {
			t.Errorf("%+v: got %v (%s), %v; want %s", tt.sub, m.Policy, m.Reason, err, tt.want)
		}
	}
	for _, p := range s.Policies() {
		if p.Description == "" {
			t.Errorf("%s: policy %q has no description", p.Pos, p.Name)
		}
	}
}
