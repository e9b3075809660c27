package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// parseYAML reads a YAML document (code-server's .code-server.yaml form)
// into a node tree. ${NAME} in a string is replaced by that environment
// variable, as the production example of the design shows for passwords;
// $${ escapes a literal "${".
func parseYAML(src []byte, filename string, getenv func(string) string) (*node, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(src))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) { // an empty file is an empty config
			return &node{kind: mapNode, src: Source{File: filename}}, nil
		}
		return nil, yamlError(filename, err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return &node{kind: mapNode, src: Source{File: filename}}, nil
		}
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return &node{kind: mapNode, src: Source{File: filename}}, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, &FieldError{Src: yamlSource(filename, root, ""), Msg: "the document must be a mapping of keys to values"}
	}
	w := &yamlWalker{filename: filename, getenv: getenv, expanding: map[*yaml.Node]bool{}}
	return w.node(root, "")
}

// maxYAMLNodes bounds the values a document makes once its aliases are
// expanded: a configuration has a few hundred, while aliases of aliases
// can make billions out of a few lines.
const maxYAMLNodes = 100_000

// yamlWalker turns YAML nodes into config nodes, expanding aliases, and
// refuses an alias inside what it names (which would never end) and
// documents that aliases make too large.
type yamlWalker struct {
	filename string
	getenv   func(string) string
	// expanding holds the anchored nodes whose aliases are being expanded.
	expanding map[*yaml.Node]bool
	nodes     int
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError rewrites "yaml: line 3: ..." into "file:3: ...".
func yamlError(filename string, err error) error {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s:%s: %s", filename, m[1], m[2])
	}
	return fmt.Errorf("%s: %s", filename, strings.TrimPrefix(msg, "yaml: "))
}

func yamlSource(filename string, n *yaml.Node, key string) Source {
	return Source{File: filename, Line: n.Line, Col: n.Column, Key: key}
}

var envRefRE = regexp.MustCompile(`\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

func expandEnv(s string, getenv func(string) string) (string, error) {
	var missing []string
	out := envRefRE.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$${" {
			return "${"
		}
		name := m[2 : len(m)-1]
		v := getenv(name)
		if v == "" {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("environment variable %s is not set", strings.Join(missing, ", "))
	}
	return out, nil
}

func (w *yamlWalker) node(n *yaml.Node, key string) (*node, error) {
	filename, getenv := w.filename, w.getenv
	src := yamlSource(filename, n, key)
	if w.nodes++; w.nodes > maxYAMLNodes {
		return nil, &FieldError{Src: src, Msg: fmt.Sprintf("the document makes more than %d values once its aliases are expanded", maxYAMLNodes)}
	}
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias == nil || w.expanding[n.Alias] {
			return nil, &FieldError{Src: src, Msg: fmt.Sprintf("alias *%s refers to a value that contains it", n.Value)}
		}
		w.expanding[n.Alias] = true
		defer delete(w.expanding, n.Alias)
		return w.node(n.Alias, key)
	case yaml.MappingNode:
		out := &node{kind: mapNode, src: src}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return nil, &FieldError{Src: yamlSource(filename, k, ""), Msg: "keys must be plain strings"}
			}
			if k.Value == "<<" { // merge key: fold the referenced mapping in
				merged, err := w.node(v, key)
				if err != nil {
					return nil, err
				}
				for _, mk := range merged.keys {
					if _, ok := out.fields[mk]; !ok {
						out.set(mk, merged.fields[mk])
					}
				}
				continue
			}
			if prev, dup := out.fields[k.Value]; dup {
				return nil, &FieldError{Src: yamlSource(filename, k, k.Value),
					Msg: fmt.Sprintf("key %q is given twice (first at line %d)", k.Value, prev.src.Line)}
			}
			child, err := w.node(v, k.Value)
			if err != nil {
				return nil, err
			}
			child.src = yamlSource(filename, k, k.Value)
			out.set(k.Value, child)
		}
		return out, nil
	case yaml.SequenceNode:
		out := &node{kind: listNode, src: src}
		for _, c := range n.Content {
			child, err := w.node(c, key)
			if err != nil {
				return nil, err
			}
			out.items = append(out.items, child)
		}
		return out, nil
	case yaml.ScalarNode:
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, &FieldError{Src: src, Msg: err.Error()}
		}
		switch x := v.(type) {
		case int:
			v = int64(x)
		case uint64:
			v = float64(x)
		case string:
			s, err := expandEnv(x, getenv)
			if err != nil {
				return nil, &FieldError{Src: src, Msg: err.Error()}
			}
			v = s
		case nil, bool, int64, float64:
		default:
			// Timestamps and other tagged scalars: keep their text.
			v = n.Value
		}
		return &node{kind: scalarNode, value: v, src: src}, nil
	}
	return nil, &FieldError{Src: src, Msg: "unsupported YAML node"}
}
