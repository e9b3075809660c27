package policy

import (
	"fmt"
	"strings"

	"github.com/codehub-dev/codehub/internal/user"
)

// User metadata keys that selection reads. Only admins may set them: a
// user who could write their own "policy" would choose their own limits.
const (
	// MetaPolicy assigns a policy by name: "restricted".
	MetaPolicy = "policy"
	// MetaGroups lists the user's groups: ["data", "ml"], or "data,ml".
	MetaGroups = "groups"
)

// SubjectOf is what selection needs to know about u. Returns an error if
// u's metadata "policy" or "groups" is malformed: guessing could lift a
// restriction.
func SubjectOf(u *user.User) (Subject, error) {
	sub := Subject{Username: u.Username, Roles: u.Roles}
	switch v := u.Metadata[MetaPolicy].(type) {
	case nil:
	case string:
		sub.Assigned = strings.TrimSpace(v)
	default:
		return sub, fmt.Errorf("user %s: metadata %q must be a policy name, got %s", u.Username, MetaPolicy, jsonKind(v))
	}
	switch v := u.Metadata[MetaGroups].(type) {
	case nil:
	case string:
		for _, g := range strings.Split(v, ",") {
			if g = strings.TrimSpace(g); g != "" {
				sub.Groups = append(sub.Groups, g)
			}
		}
	case []string:
		sub.Groups = v
	case []any:
		for _, g := range v {
			s, ok := g.(string)
			if !ok {
				return sub, fmt.Errorf("user %s: metadata %q must list group names, got %s in it", u.Username, MetaGroups, jsonKind(g))
			}
			sub.Groups = append(sub.Groups, s)
		}
	default:
		return sub, fmt.Errorf("user %s: metadata %q must list group names, got %s", u.Username, MetaGroups, jsonKind(v))
	}
	return sub, nil
}

// jsonKind names a decoded JSON value's kind.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64, int, int64, float32:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
