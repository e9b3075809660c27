package nomad

import (
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/nomad/api"
	"github.com/zclconf/go-cty/cty"
)

// ParseJobFile reads a job specification file as ParseJob does.
func ParseJobFile(path string) (*api.Job, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseJob(path, src, "")
}

// ParseJob reads an HCL2 job specification into the api.Job Nomad's own
// parser (jobspec2) makes of it, for the part of the language codehub's
// job files use: every block and attribute the api types name with their
// hcl tags, checked as strictly as Nomad checks them (an unknown argument
// or block is an error naming the file, line and column), with runtime
// interpolations (${NOMAD_META_user_id}, ${node.datacenter},
// ${attr.driver.exec}) kept as text for the client, and Nomad's defaults
// of the parser: the job's ID from its label, a constraint without
// operator meaning "=", ports with a static value reserved.
//
// version is the Nomad version whose language the file must fit ("":
// the newest the fake knows, DefaultVersion): arguments newer than it are
// refused as that version's parser refuses them ("An argument named
// \"role\" is not expected here" in a vault block before 1.7). HCL2
// variables, locals and functions are not supported.
func ParseJob(filename string, src []byte, version string) (*api.Job, error) {
	if version == "" {
		version = DefaultVersion
	}
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	d := &specDecoder{version: version}
	body := f.Body.(*hclsyntax.Body)
	for name, a := range body.Attributes {
		d.fail(a.NameRange, "Unsupported argument", fmt.Sprintf("An argument named %q is not expected here.", name))
	}
	var job *api.Job
	for _, b := range body.Blocks {
		switch {
		case b.Type == "job" && len(b.Labels) == 1 && job == nil:
			job = &api.Job{}
			d.decodeBlock(b, reflect.ValueOf(job).Elem())
			id := b.Labels[0]
			job.ID = &id
			if job.Name == nil || *job.Name == "" {
				job.Name = &id
			}
		case b.Type == "job":
			d.fail(b.DefRange(), "Invalid job block", "A job specification has one job block, with one label: its ID.")
		default:
			d.fail(b.TypeRange, "Unsupported block type", fmt.Sprintf("Blocks of type %q are not expected here.", b.Type))
		}
	}
	if job == nil && !d.diags.HasErrors() {
		d.fail(body.SrcRange, "Missing job block", "A job specification needs a job block.")
	}
	if d.diags.HasErrors() {
		return nil, d.diags
	}
	normalizePorts(job)
	return job, nil
}

// normalizePorts is what Nomad's parser does with the port blocks, all
// read as dynamic: those with a static value are reserved.
func normalizePorts(job *api.Job) {
	for _, tg := range job.TaskGroups {
		for _, n := range tg.Networks {
			var dyn []api.Port
			for _, p := range n.DynamicPorts {
				if p.Value > 0 {
					n.ReservedPorts = append(n.ReservedPorts, p)
				} else {
					dyn = append(dyn, p)
				}
			}
			n.DynamicPorts = dyn
		}
	}
}

// specDecoder decodes hclsyntax blocks into the api types by their hcl
// tags, collecting diagnostics.
type specDecoder struct {
	version string
	diags   hcl.Diagnostics
}

func (d *specDecoder) fail(r hcl.Range, summary, detail string) {
	d.diags = append(d.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: r.Ptr()})
}

// newerArguments are arguments a Nomad version before the one named did
// not know, by the block type that holds them.
var newerArguments = map[reflect.Type]map[string]string{
	reflect.TypeFor[api.Vault](): {"role": "1.7.0", "cluster": "1.7.0", "allow_token_expiration": "1.8.0"},
}

// hclField is a struct field and what its hcl tag says.
type hclField struct {
	index int
	name  string
	kind  string // "", "optional", "label", "block", "remain"
}

func hclFields(t reflect.Type) []hclField {
	var out []hclField
	for i := range t.NumField() {
		tag, ok := t.Field(i).Tag.Lookup("hcl")
		if !ok {
			continue
		}
		name, kind, _ := strings.Cut(tag, ",")
		out = append(out, hclField{index: i, name: name, kind: kind})
	}
	return out
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	constraint   = reflect.TypeFor[api.Constraint]()
)

// decodeBlock decodes block's labels and body into v, a struct.
func (d *specDecoder) decodeBlock(b *hclsyntax.Block, v reflect.Value) {
	fields := hclFields(v.Type())
	labels := 0
	for _, f := range fields {
		if f.kind != "label" {
			continue
		}
		if labels < len(b.Labels) {
			d.assignString(v.Field(f.index), b.Labels[labels])
		}
		labels++
	}
	if len(b.Labels) > labels && v.Type() != reflect.TypeFor[api.Job]() {
		d.fail(b.LabelRanges[labels], "Extraneous label", fmt.Sprintf("A %s block takes %d label(s).", b.Type, labels))
	}
	if v.Type() == constraint {
		d.decodeConstraint(b.Body, v.Addr().Interface().(*api.Constraint))
		return
	}
	d.decodeBody(b.Body, v, fields)
}

// decodeBody fills v's fields from the body's attributes and blocks.
func (d *specDecoder) decodeBody(body *hclsyntax.Body, v reflect.Value, fields []hclField) {
	attrs, blocks := map[string]hclField{}, map[string]hclField{}
	for _, f := range fields {
		switch f.kind {
		case "", "optional":
			attrs[f.name] = f
		case "block":
			blocks[f.name] = f
		}
	}
	newer := newerArguments[v.Type()]
	for name, a := range body.Attributes {
		f, ok := attrs[name]
		if ok && newer[name] != "" && VersionBefore(d.version, newer[name]) {
			ok = false
		}
		if !ok {
			d.fail(a.NameRange, "Unsupported argument", fmt.Sprintf("An argument named %q is not expected here.", name))
			continue
		}
		val, ok := d.value(a.Expr)
		if !ok {
			continue
		}
		if err := assign(v.Field(f.index), val); err != nil {
			d.fail(a.Expr.Range(), "Incorrect attribute value type", fmt.Sprintf("Inappropriate value for attribute %q: %v.", name, err))
		}
	}
	for _, b := range body.Blocks {
		f, ok := blocks[b.Type]
		if !ok {
			d.fail(b.TypeRange, "Unsupported block type", fmt.Sprintf("Blocks of type %q are not expected here.", b.Type))
			continue
		}
		d.decodeInto(b, v.Field(f.index))
	}
	for _, f := range fields {
		if f.kind == "" {
			if _, ok := body.Attributes[f.name]; !ok {
				d.fail(body.SrcRange, "Missing required argument", fmt.Sprintf("The argument %q is required, but no definition was found.", f.name))
			}
		}
	}
}

// decodeInto decodes a block into a field of block kind: a struct, a
// pointer to one, a list of them, a map keyed by the block's label, or a
// map of the block's attributes (meta, env, config).
func (d *specDecoder) decodeInto(b *hclsyntax.Block, field reflect.Value) {
	t := field.Type()
	switch t.Kind() {
	case reflect.Pointer:
		if !field.IsNil() {
			d.fail(b.TypeRange, "Duplicate "+b.Type+" block", fmt.Sprintf("Only one %s block is allowed here.", b.Type))
			return
		}
		n := reflect.New(t.Elem())
		d.decodeBlock(b, n.Elem())
		field.Set(n)
	case reflect.Struct:
		d.decodeBlock(b, field)
	case reflect.Slice:
		elem := t.Elem()
		n := reflect.New(elem)
		if elem.Kind() == reflect.Pointer {
			n.Elem().Set(reflect.New(elem.Elem()))
			d.decodeBlock(b, n.Elem().Elem())
		} else {
			d.decodeBlock(b, n.Elem())
		}
		field.Set(reflect.Append(field, n.Elem()))
	case reflect.Map:
		if t.Elem().Kind() == reflect.Pointer && t.Elem().Elem().Kind() == reflect.Struct {
			if len(b.Labels) != 1 {
				d.fail(b.DefRange(), "Missing name for "+b.Type, fmt.Sprintf("A %s block takes one label: its name.", b.Type))
				return
			}
			if field.IsNil() {
				field.Set(reflect.MakeMap(t))
			}
			n := reflect.New(t.Elem().Elem())
			d.decodeBlock(b, n.Elem())
			field.SetMapIndex(reflect.ValueOf(b.Labels[0]), n)
			return
		}
		if field.IsNil() {
			field.Set(reflect.MakeMap(t))
		}
		m := d.bodyMap(b.Body)
		for k, val := range m {
			ev := reflect.New(t.Elem()).Elem()
			if err := assign(ev, val); err != nil {
				d.fail(b.Body.Attributes[k].Expr.Range(), "Incorrect attribute value type", fmt.Sprintf("Inappropriate value for %q: %v.", k, err))
				continue
			}
			field.SetMapIndex(reflect.ValueOf(k), ev)
		}
		if t.Elem().Kind() != reflect.Interface {
			for _, sub := range b.Body.Blocks {
				d.fail(sub.TypeRange, "Unsupported block type", fmt.Sprintf("Blocks of type %q are not expected here.", sub.Type))
			}
		}
	default:
		d.fail(b.TypeRange, "Unsupported block type", fmt.Sprintf("Blocks of type %q are not expected here.", b.Type))
	}
}

// bodyMap is a free-form block as Nomad keeps a driver's config: its
// attributes, and its sub-blocks as lists of such maps.
func (d *specDecoder) bodyMap(body *hclsyntax.Body) map[string]any {
	m := map[string]any{}
	for name, a := range body.Attributes {
		if val, ok := d.value(a.Expr); ok {
			m[name] = val
		}
	}
	for _, b := range body.Blocks {
		sub := d.bodyMap(b.Body)
		list, _ := m[b.Type].([]map[string]any)
		m[b.Type] = append(list, sub)
	}
	return m
}

// decodeConstraint is Nomad's decodeConstraint: attribute, value and
// operator, the shorthand attributes (distinct_hosts = true, regexp = ...),
// and "=" when nothing names the operator.
func (d *specDecoder) decodeConstraint(body *hclsyntax.Body, c *api.Constraint) {
	str := func(name string) string {
		a := body.Attributes[name]
		if a == nil {
			return ""
		}
		v, ok := d.value(a.Expr)
		if !ok {
			return ""
		}
		return fmt.Sprint(v)
	}
	known := map[string]bool{"attribute": true, "value": true, "operator": true}
	for _, op := range []string{api.ConstraintVersion, api.ConstraintSemver, api.ConstraintRegex, api.ConstraintSetContains,
		api.ConstraintSetContainsAll, api.ConstraintSetContainsAny, api.ConstraintAttributeIsSet, api.ConstraintAttributeIsNotSet,
		api.ConstraintDistinctHosts, api.ConstraintDistinctProperty} {
		known[op] = true
	}
	for name, a := range body.Attributes {
		if !known[name] {
			d.fail(a.NameRange, "Unsupported argument", fmt.Sprintf("An argument named %q is not expected here.", name))
		}
	}
	for _, b := range body.Blocks {
		d.fail(b.TypeRange, "Unsupported block type", fmt.Sprintf("Blocks of type %q are not expected here.", b.Type))
	}
	c.LTarget, c.RTarget, c.Operand = str("attribute"), str("value"), str("operator")
	for _, op := range []string{api.ConstraintVersion, api.ConstraintSemver, api.ConstraintRegex, api.ConstraintSetContains,
		api.ConstraintSetContainsAll, api.ConstraintSetContainsAny} {
		if v := str(op); v != "" {
			c.Operand, c.RTarget = op, v
		}
	}
	if str(api.ConstraintDistinctHosts) == "true" {
		c.Operand = api.ConstraintDistinctHosts
	}
	if p := str(api.ConstraintDistinctProperty); p != "" {
		c.Operand, c.LTarget = api.ConstraintDistinctProperty, p
	}
	if c.Operand == "" {
		c.Operand = "="
	}
}

// value evaluates an attribute as Nomad's parser does: literals, lists,
// objects and templates, with runtime interpolations kept as
// "${name}" text.
func (d *specDecoder) value(expr hclsyntax.Expression) (any, bool) {
	switch e := expr.(type) {
	case *hclsyntax.TemplateExpr:
		var b strings.Builder
		for _, p := range e.Parts {
			v, ok := d.value(p)
			if !ok {
				return nil, false
			}
			b.WriteString(fmt.Sprint(v))
		}
		return b.String(), true
	case *hclsyntax.TemplateWrapExpr:
		v, ok := d.value(e.Wrapped)
		if !ok {
			return nil, false
		}
		return fmt.Sprint(v), true
	case *hclsyntax.ScopeTraversalExpr:
		root := e.Traversal.RootName()
		switch root {
		case "true", "false", "null":
		case "var", "local":
			d.fail(e.Range(), "Variables not supported", "The fake Nomad's parser does not evaluate HCL2 variables or locals.")
			return nil, false
		default:
			var b strings.Builder
			for _, tr := range e.Traversal {
				switch s := tr.(type) {
				case hcl.TraverseRoot:
					b.WriteString(s.Name)
				case hcl.TraverseAttr:
					b.WriteString("." + s.Name)
				default:
					d.fail(e.Range(), "Unsupported reference", "Only dotted names are kept for the client to interpolate.")
					return nil, false
				}
			}
			return "${" + b.String() + "}", true
		}
	case *hclsyntax.TupleConsExpr:
		out := []any{}
		for _, x := range e.Exprs {
			v, ok := d.value(x)
			if !ok {
				return nil, false
			}
			out = append(out, v)
		}
		return out, true
	case *hclsyntax.ObjectConsExpr:
		out := map[string]any{}
		for _, item := range e.Items {
			k, diags := item.KeyExpr.Value(nil)
			if diags.HasErrors() || k.Type() != cty.String {
				d.fail(item.KeyExpr.Range(), "Invalid object key", "Object keys must be names or strings.")
				return nil, false
			}
			v, ok := d.value(item.ValueExpr)
			if !ok {
				return nil, false
			}
			out[k.AsString()] = v
		}
		return out, true
	case *hclsyntax.FunctionCallExpr:
		d.fail(e.Range(), "Functions not supported", fmt.Sprintf("The fake Nomad's parser does not call %s().", e.Name))
		return nil, false
	}
	v, diags := expr.Value(nil)
	if diags.HasErrors() {
		d.diags = append(d.diags, diags...)
		return nil, false
	}
	switch {
	case v.IsNull():
		return nil, true
	case v.Type() == cty.String:
		return v.AsString(), true
	case v.Type() == cty.Number:
		f, _ := v.AsBigFloat().Float64()
		return f, true
	case v.Type() == cty.Bool:
		return v.True(), true
	}
	d.fail(expr.Range(), "Unsupported value", fmt.Sprintf("A value of type %s is not expected here.", v.Type().FriendlyName()))
	return nil, false
}

// assignString sets a label.
func (d *specDecoder) assignString(field reflect.Value, s string) {
	if field.Kind() == reflect.Pointer {
		field.Set(reflect.ValueOf(&s))
		return
	}
	field.SetString(s)
}

// assign converts a decoded value into field's type, as Nomad's decoder
// does: durations from strings ("10m"), numbers into integers, lists into
// slices, objects into maps.
func assign(field reflect.Value, val any) error {
	if val == nil {
		return nil
	}
	t := field.Type()
	if t.Kind() == reflect.Pointer {
		n := reflect.New(t.Elem())
		if err := assign(n.Elem(), val); err != nil {
			return err
		}
		field.Set(n)
		return nil
	}
	if t == durationType {
		switch x := val.(type) {
		case string:
			dur, err := time.ParseDuration(x)
			if err != nil {
				return err
			}
			field.SetInt(int64(dur))
			return nil
		case float64:
			field.SetInt(int64(x))
			return nil
		}
		return fmt.Errorf("a duration is a string such as \"10s\", got %T", val)
	}
	switch t.Kind() {
	case reflect.String:
		switch x := val.(type) {
		case string:
			field.SetString(x)
		case float64:
			field.SetString(strconv.FormatFloat(x, 'f', -1, 64))
		case bool:
			field.SetString(strconv.FormatBool(x))
		default:
			return fmt.Errorf("string required, got %T", val)
		}
	case reflect.Bool:
		switch x := val.(type) {
		case bool:
			field.SetBool(x)
		case string:
			b, err := strconv.ParseBool(x)
			if err != nil {
				return fmt.Errorf("bool required: %w", err)
			}
			field.SetBool(b)
		default:
			return fmt.Errorf("bool required, got %T", val)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		f, err := number(val)
		if err != nil {
			return err
		}
		field.SetInt(int64(f))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		f, err := number(val)
		if err != nil || f < 0 {
			return fmt.Errorf("a whole number of at least 0 required")
		}
		field.SetUint(uint64(f))
	case reflect.Float32, reflect.Float64:
		f, err := number(val)
		if err != nil {
			return err
		}
		field.SetFloat(f)
	case reflect.Interface:
		field.Set(reflect.ValueOf(val))
	case reflect.Slice:
		list, ok := val.([]any)
		if !ok {
			list = []any{val}
			if t.Elem().Kind() != reflect.String {
				return fmt.Errorf("list required, got %T", val)
			}
		}
		s := reflect.MakeSlice(t, len(list), len(list))
		for i, x := range list {
			if err := assign(s.Index(i), x); err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
		}
		field.Set(s)
	case reflect.Map:
		m, ok := val.(map[string]any)
		if !ok {
			return fmt.Errorf("object required, got %T", val)
		}
		out := reflect.MakeMap(t)
		for k, x := range m {
			ev := reflect.New(t.Elem()).Elem()
			if err := assign(ev, x); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			out.SetMapIndex(reflect.ValueOf(k), ev)
		}
		field.Set(out)
	default:
		return fmt.Errorf("cannot decode into %s", t)
	}
	return nil
}

func number(val any) (float64, error) {
	switch x := val.(type) {
	case float64:
		return x, nil
	case string:
		return strconv.ParseFloat(x, 64)
	}
	return 0, fmt.Errorf("number required, got %T", val)
}

// VersionBefore compares Nomad versions ("1.6.5" before "1.7.0"; what
// follows a "+" or "-", as in "1.7.2+ent", is ignored).
func VersionBefore(a, b string) bool {
	pa, pb := versionParts(a), versionParts(b)
	for i := range max(len(pa), len(pb)) {
		var x, y int
		if i < len(pa) {
			x = pa[i]
		}
		if i < len(pb) {
			y = pb[i]
		}
		if x != y {
			return x < y
		}
	}
	return false
}

func versionParts(v string) []int {
	v = strings.TrimPrefix(v, "v")
	if i := strings.IndexAny(v, "+-"); i >= 0 {
		v = v[:i]
	}
	var out []int
	for _, p := range strings.Split(v, ".") {
		n, _ := strconv.Atoi(p)
		out = append(out, n)
	}
	return out
}
