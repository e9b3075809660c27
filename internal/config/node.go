package config

import (
	"fmt"
	"sort"
	"strings"

	"github.com/agext/levenshtein"
)

// Source says where a configuration value came from, so that an error can
// point at it: a file position, an environment variable, a flag or the
// built-in default.
type Source struct {
	File string // set for values read from a file
	Line int
	Col  int
	Key  string // the key as the user spelled it (bind_addr, bind-addr, ...)
	Env  string // set for values read from the environment
	Flag string // set for values given on the command line
}

// String renders the source the way compilers do: "file:line:col", or a
// description of the environment variable or flag.
func (s Source) String() string {
	switch {
	case s.File != "":
		if s.Line > 0 {
			return fmt.Sprintf("%s:%d:%d", s.File, s.Line, s.Col)
		}
		return s.File
	case s.Env != "":
		return "environment variable " + s.Env
	case s.Flag != "":
		return "flag " + s.Flag
	default:
		return "default"
	}
}

type nodeKind int

const (
	scalarNode nodeKind = iota
	mapNode
	listNode
)

// node is a format-neutral view of one value of a configuration document.
// Both the HCL and the YAML parsers produce it, so that decoding, unknown-key
// detection and error positions work the same for both formats.
type node struct {
	kind   nodeKind
	value  any // scalar: string, bool, int64, float64 or nil
	keys   []string
	fields map[string]*node
	items  []*node
	// blocks marks a list made of repeated HCL blocks of one type: decoded
	// into a struct it must hold exactly one element.
	blocks bool
	src    Source
}

func (n *node) set(key string, child *node) {
	if n.fields == nil {
		n.fields = map[string]*node{}
	}
	if _, ok := n.fields[key]; !ok {
		n.keys = append(n.keys, key)
	}
	n.fields[key] = child
}

func (n *node) describe() string {
	switch n.kind {
	case mapNode:
		return "a block or map"
	case listNode:
		return "a list"
	}
	switch n.value.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int64, float64:
		return "a number"
	}
	return fmt.Sprintf("%T", n.value)
}

// canonicalKey folds the spellings a user may choose for one key: HCL's
// snake_case and YAML's kebab-case name the same setting.
func canonicalKey(k string) string {
	return strings.ToLower(strings.ReplaceAll(k, "_", "-"))
}

// suggest returns the closest known key to k, for "did you mean" hints.
func suggest(k string, known []string) string {
	k = canonicalKey(k)
	best, bestDist := "", 4
	sort.Strings(known)
	for _, c := range known {
		if d := levenshtein.Distance(k, c, nil); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}
