package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
)

// nodeDecoder is implemented by configuration types whose value can be
// written in more than one shape (a duration as seconds or "30m", cert as a
// boolean or a path).
type nodeDecoder interface {
	decodeNode(n *node) error
}

// fieldInfo describes one settable key of a struct.
type fieldInfo struct {
	name    string   // canonical key
	aliases []string // other canonical keys accepted for it
	index   int
}

func structFields(t reflect.Type) []fieldInfo {
	var out []fieldInfo
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("config")
		if !ok || tag == "-" || !f.IsExported() {
			continue
		}
		parts := strings.Split(tag, ",")
		fi := fieldInfo{name: parts[0], index: i}
		for _, p := range parts[1:] {
			if a, ok := strings.CutPrefix(p, "alias="); ok {
				fi.aliases = append(fi.aliases, a)
			}
		}
		out = append(out, fi)
	}
	return out
}

// decoder turns node trees into Config values, remembering where each value
// came from.
type decoder struct {
	sources map[string]Source
	errs    Errors
}

func (d *decoder) fail(src Source, path, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{Path: path, Src: src, Msg: fmt.Sprintf(format, args...)})
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *decoder) decode(n *node, v reflect.Value, path string) {
	if v.CanAddr() {
		if nd, ok := v.Addr().Interface().(nodeDecoder); ok {
			if err := nd.decodeNode(n); err != nil {
				d.fail(n.src, path, "%v", err)
				return
			}
			d.sources[path] = n.src
			return
		}
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.Slice:
		d.decodeSlice(n, v, path)
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
	default:
		if err := setScalar(n, v); err != nil {
			d.fail(n.src, path, "%v", err)
			return
		}
		d.sources[path] = n.src
	}
}

func (d *decoder) decodeStruct(n *node, v reflect.Value, path string) {
	if n.kind == listNode && n.blocks {
		if len(n.items) > 1 {
			d.fail(n.items[1].src, path, "block given more than once (first at line %d)", n.items[0].src.Line)
			return
		}
		n = n.items[0]
	}
	if n.kind != mapNode {
		d.fail(n.src, path, "expected a block of settings, got %s", n.describe())
		return
	}
	fields := structFields(v.Type())
	byKey := map[string]fieldInfo{}
	var known []string
	for _, f := range fields {
		byKey[f.name] = f
		known = append(known, f.name)
		for _, a := range f.aliases {
			byKey[a] = f
		}
	}
	seen := map[string]Source{}
	for _, k := range n.keys {
		child := n.fields[k]
		f, ok := byKey[canonicalKey(k)]
		if !ok {
			msg := fmt.Sprintf("unknown key %q", k)
			if s := suggest(k, known); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			d.fail(child.src, joinPath(path, canonicalKey(k)), "%s", msg)
			continue
		}
		if prev, dup := seen[f.name]; dup {
			d.fail(child.src, joinPath(path, f.name), "%q sets the same setting as %q at line %d", k, prev.Key, prev.Line)
			continue
		}
		seen[f.name] = child.src
		d.decode(child, v.Field(f.index), joinPath(path, f.name))
	}
	if len(n.keys) > 0 {
		d.sources[path] = n.src
	}
}

func (d *decoder) decodeMap(n *node, v reflect.Value, path string) {
	if n.kind != mapNode {
		d.fail(n.src, path, "expected a map, got %s", n.describe())
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	for _, k := range n.keys {
		elem := reflect.New(v.Type().Elem()).Elem()
		if old := v.MapIndex(reflect.ValueOf(k)); old.IsValid() {
			elem.Set(old)
		}
		before := len(d.errs)
		d.decode(n.fields[k], elem, joinPath(path, k))
		if len(d.errs) == before {
			v.SetMapIndex(reflect.ValueOf(k), elem)
		}
	}
	d.sources[path] = n.src
}

func (d *decoder) decodeSlice(n *node, v reflect.Value, path string) {
	items := n.items
	switch {
	case n.kind == scalarNode && n.value == nil:
		items = nil
	case n.kind == scalarNode:
		// A comma-separated string, as environment variables and flags give.
		s, ok := n.value.(string)
		if !ok {
			d.fail(n.src, path, "expected a list, got %s", n.describe())
			return
		}
		items = nil
		for _, part := range strings.Split(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				items = append(items, &node{kind: scalarNode, value: part, src: n.src})
			}
		}
	case n.kind != listNode:
		d.fail(n.src, path, "expected a list, got %s", n.describe())
		return
	}
	out := reflect.MakeSlice(v.Type(), len(items), len(items))
	for i, it := range items {
		d.decode(it, out.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(out)
	d.sources[path] = n.src
}

func setScalar(n *node, v reflect.Value) error {
	if n.kind != scalarNode {
		return fmt.Errorf("expected %s, got %s", kindName(v.Kind()), n.describe())
	}
	switch v.Kind() {
	case reflect.String:
		switch x := n.value.(type) {
		case string:
			v.SetString(x)
		case int64:
			v.SetString(strconv.FormatInt(x, 10))
		case float64:
			v.SetString(strconv.FormatFloat(x, 'f', -1, 64))
		case bool:
			v.SetString(strconv.FormatBool(x))
		case nil:
			v.SetString("")
		}
		return nil
	case reflect.Bool:
		b, err := scalarBool(n.value)
		if err != nil {
			return err
		}
		v.SetBool(b)
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := scalarInt(n.value)
		if err != nil {
			return err
		}
		if v.OverflowInt(i) {
			return fmt.Errorf("number %d is out of range", i)
		}
		v.SetInt(i)
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		i, err := scalarInt(n.value)
		if err != nil {
			return err
		}
		if i < 0 || v.OverflowUint(uint64(i)) {
			return fmt.Errorf("number %d is out of range", i)
		}
		v.SetUint(uint64(i))
		return nil
	case reflect.Float32, reflect.Float64:
		switch x := n.value.(type) {
		case int64:
			v.SetFloat(float64(x))
		case float64:
			v.SetFloat(x)
		case string:
			f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
			if err != nil {
				return fmt.Errorf("expected a number, got %q", x)
			}
			v.SetFloat(f)
		default:
			return fmt.Errorf("expected a number, got %s", n.describe())
		}
		return nil
	}
	return fmt.Errorf("unsupported setting type %s", v.Type())
}

func kindName(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Struct:
		return "a block of settings"
	case reflect.Map:
		return "a map"
	case reflect.Slice:
		return "a list"
	}
	return "a number"
}

func scalarBool(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(x))
		if err != nil {
			return false, fmt.Errorf("expected true or false, got %q", x)
		}
		return b, nil
	}
	return false, fmt.Errorf("expected true or false, got %v", v)
}

func scalarInt(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > math.MaxInt64 {
			return 0, fmt.Errorf("expected a whole number, got %v", x)
		}
		return int64(x), nil
	case string:
		i, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("expected a whole number, got %q", x)
		}
		return i, nil
	}
	return 0, fmt.Errorf("expected a whole number, got %v", v)
}
