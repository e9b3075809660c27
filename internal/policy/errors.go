package policy

import (
	"errors"
	"fmt"
	"strings"
)

// Errors returned by Set.Select.
var (
	// ErrUnknownPolicy: the policy assigned to a user by name does not
	// exist. Select does not fall back to the rules then: an assignment
	// may be a restriction, and silently lifting it would be worse than
	// refusing to start.
	ErrUnknownPolicy = errors.New("no such isolation policy")
	// ErrNoPolicy: no policy applies to the user and none is named
	// "default"; the caller uses its own default.
	ErrNoPolicy = errors.New("no isolation policy applies")
)

// Pos is a place in a policy file.
type Pos struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Col  int    `json:"col"`
}

func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Error is one problem in one policy file, rendered like the
// configuration's errors: "file:line:col: key: message".
type Error struct {
	Pos Pos
	// Key is the setting as written ("memory_max", "applies_to.roles"),
	// empty for problems with a whole file or directory.
	Key string
	Msg string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Pos.String())
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one pass, one per line, in file order.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}
