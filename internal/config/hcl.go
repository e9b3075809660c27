package config

import (
	"fmt"
	"math/big"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// parseHCL reads an HCL document into a node tree. Attribute expressions are
// evaluated with an env("NAME") function so that secrets can stay out of the
// file, as in Nomad job specs.
func parseHCL(src []byte, filename string, getenv func(string) string) (*node, error) {
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diagError(diags)
	}
	ctx := &hcl.EvalContext{Functions: map[string]function.Function{
		"env": envFunction(getenv),
	}}
	return hclBody(f.Body.(*hclsyntax.Body), ctx, Source{File: filename, Line: 1, Col: 1})
}

func envFunction(getenv func(string) string) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "name", Type: cty.String}},
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			name := args[0].AsString()
			v := getenv(name)
			if v == "" {
				return cty.NilVal, fmt.Errorf("environment variable %s is not set", name)
			}
			return cty.StringVal(v), nil
		},
	})
}

func rangeSource(r hcl.Range, key string) Source {
	return Source{File: r.Filename, Line: r.Start.Line, Col: r.Start.Column, Key: key}
}

func hclBody(body *hclsyntax.Body, ctx *hcl.EvalContext, src Source) (*node, error) {
	out := &node{kind: mapNode, src: src}

	attrs := make([]*hclsyntax.Attribute, 0, len(body.Attributes))
	for _, a := range body.Attributes {
		attrs = append(attrs, a)
	}
	sort.Slice(attrs, func(i, j int) bool {
		return attrs[i].SrcRange.Start.Byte < attrs[j].SrcRange.Start.Byte
	})
	for _, a := range attrs {
		v, diags := a.Expr.Value(ctx)
		if diags.HasErrors() {
			return nil, diagError(diags)
		}
		asrc := rangeSource(a.NameRange, a.Name)
		n, err := ctyNode(v, asrc)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", asrc, a.Name, err)
		}
		out.set(a.Name, n)
	}

	for _, b := range body.Blocks {
		bsrc := rangeSource(b.TypeRange, b.Type)
		child, err := hclBody(b.Body, ctx, bsrc)
		if err != nil {
			return nil, err
		}
		// Labels nest: `policy "admin" { ... }` becomes policy.admin.
		for i := len(b.Labels) - 1; i >= 0; i-- {
			wrap := &node{kind: mapNode, src: bsrc}
			wrap.set(b.Labels[i], child)
			child.src = rangeSource(b.LabelRanges[i], b.Labels[i])
			child = wrap
		}
		if err := mergeBlock(out, b.Type, child, len(b.Labels) > 0); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// mergeBlock adds one block to its parent. Unlabeled blocks of one type form
// a list (a struct accepts exactly one); labeled blocks of one type merge
// into one map keyed by label.
func mergeBlock(parent *node, typ string, child *node, labeled bool) error {
	prev, ok := parent.fields[typ]
	if !ok {
		if labeled {
			parent.set(typ, child)
			return nil
		}
		parent.set(typ, &node{kind: listNode, blocks: true, items: []*node{child}, src: child.src})
		return nil
	}
	if labeled {
		if prev.kind != mapNode {
			return fmt.Errorf("%s: %s: mixes labeled and unlabeled blocks", child.src, typ)
		}
		for _, k := range child.keys {
			if _, dup := prev.fields[k]; dup {
				return fmt.Errorf("%s: %s %q is defined twice (first at %s)", child.fields[k].src, typ, k, prev.fields[k].src)
			}
			prev.set(k, child.fields[k])
		}
		return nil
	}
	if !prev.blocks {
		return fmt.Errorf("%s: %s is given both as an attribute and as a block", child.src, typ)
	}
	prev.items = append(prev.items, child)
	return nil
}

func ctyNode(v cty.Value, src Source) (*node, error) {
	if v.IsNull() {
		return &node{kind: scalarNode, src: src}, nil
	}
	if !v.IsKnown() {
		return nil, fmt.Errorf("value is not known")
	}
	t := v.Type()
	switch {
	case t == cty.String:
		return &node{kind: scalarNode, value: v.AsString(), src: src}, nil
	case t == cty.Bool:
		return &node{kind: scalarNode, value: v.True(), src: src}, nil
	case t == cty.Number:
		bf := v.AsBigFloat()
		if bf.IsInt() {
			i, acc := bf.Int64()
			if acc != big.Exact {
				return nil, fmt.Errorf("number %s is out of range", bf.String())
			}
			return &node{kind: scalarNode, value: i, src: src}, nil
		}
		f, _ := bf.Float64()
		return &node{kind: scalarNode, value: f, src: src}, nil
	case t.IsListType() || t.IsTupleType() || t.IsSetType():
		out := &node{kind: listNode, src: src}
		for it := v.ElementIterator(); it.Next(); {
			_, ev := it.Element()
			n, err := ctyNode(ev, src)
			if err != nil {
				return nil, err
			}
			out.items = append(out.items, n)
		}
		return out, nil
	case t.IsMapType() || t.IsObjectType():
		out := &node{kind: mapNode, src: src}
		for it := v.ElementIterator(); it.Next(); {
			k, ev := it.Element()
			csrc := src
			csrc.Key = k.AsString()
			n, err := ctyNode(ev, csrc)
			if err != nil {
				return nil, err
			}
			out.set(k.AsString(), n)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported value of type %s", t.FriendlyName())
}

// diagError turns HCL diagnostics into one error whose lines read
// "file:line:col: summary: detail".
func diagError(diags hcl.Diagnostics) error {
	var errs Errors
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		fe := &FieldError{Msg: msg}
		if d.Subject != nil {
			fe.Src = rangeSource(*d.Subject, "")
		}
		errs = append(errs, fe)
	}
	return errs
}
