package policy

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/agext/levenshtein"
	"github.com/codehub-dev/codehub/internal/user"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// otherKinds are the suffixes of other tools' policy files that live in
// the same directory (policies/ holds the gateway's Vault and Nomad ACL
// policies too): Load skips them. Every other *.hcl file is an isolation
// policy file, so that a mistyped one fails instead of being ignored.
var otherKinds = []string{".vault.hcl", ".nomad-acl.hcl", ".consul-acl.hcl", ".nomad.hcl", ".sentinel.hcl"}

// IsPolicyFile reports whether Load reads the file called name.
func IsPolicyFile(name string) bool {
	if filepath.Ext(name) != ".hcl" || strings.HasPrefix(name, ".") {
		return false
	}
	for _, k := range otherKinds {
		if strings.HasSuffix(name, k) {
			return false
		}
	}
	return true
}

// Load reads and validates every isolation policy file in dir (*.hcl,
// in name order; see IsPolicyFile). The error, if any, is an Errors
// naming the file, line, column and key of every problem found.
func Load(dir string) (*Set, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read isolation policies: %w", err)
	}
	var files []source
	for _, e := range entries {
		if e.IsDir() || !IsPolicyFile(e.Name()) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		src, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read isolation policies: %w", err)
		}
		files = append(files, source{name: path, src: src})
	}
	if len(files) == 0 {
		return nil, Errors{{Pos: Pos{File: dir}, Msg: "no isolation policy files (*.hcl) here"}}
	}
	return parse(dir, files)
}

// source is one file's name (as errors show it) and content.
type source struct {
	name string
	src  []byte
}

// parse reads files in order; dir names the set in set-wide errors.
func parse(dir string, files []source) (*Set, error) {
	s := &Set{byName: map[string]*Policy{}}
	var errs Errors
	for _, f := range files {
		errs = append(errs, s.parseFile(f)...)
	}
	errs = append(errs, s.checkOverlaps()...)
	// One order for every run: by file (name order), line and column.
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Pos.less(errs[j].Pos) })
	if !s.coversUsers() && len(errs) == 0 {
		errs = append(errs, &Error{Pos: Pos{File: dir}, Msg: `no policy applies to role "user" and none is named "default": ` +
			`ordinary users would have no policy; add applies_to { roles = ["user"] } to one, or name one "default"`})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return s, nil
}

func (s *Set) coversUsers() bool {
	if _, ok := s.byName[DefaultName]; ok {
		return true
	}
	for _, p := range s.policies {
		if slices.Contains(p.AppliesTo.Roles, user.RoleUser) {
			return true
		}
	}
	return false
}

func (s *Set) parseFile(f source) Errors {
	file, diags := hclsyntax.ParseConfig(f.src, f.name, hcl.InitialPos)
	if diags.HasErrors() {
		return diagErrors(diags)
	}
	body := file.Body.(*hclsyntax.Body)
	var errs Errors
	for _, a := range sortedAttrs(body) {
		errs = append(errs, &Error{Pos: pos(a.NameRange), Key: a.Name,
			Msg: fmt.Sprintf(`unknown key %q: a policy file holds only policy "NAME" { ... } blocks`, a.Name)})
	}
	for _, b := range body.Blocks {
		if b.Type != "policy" {
			msg := fmt.Sprintf("unknown block %q", b.Type)
			if suggest(b.Type, []string{"policy"}) != "" {
				msg += `; did you mean "policy"?`
			} else {
				msg += `: a policy file holds only policy "NAME" { ... } blocks`
			}
			errs = append(errs, &Error{Pos: pos(b.TypeRange), Key: b.Type, Msg: msg})
			continue
		}
		if len(b.Labels) != 1 {
			errs = append(errs, &Error{Pos: pos(b.TypeRange), Key: "policy",
				Msg: `give the policy one name: policy "NAME" { ... }`})
			continue
		}
		d := &blockDecoder{block: b}
		p := d.policy()
		errs = append(errs, d.errs...)
		if p == nil {
			continue
		}
		if prev, dup := s.byName[p.Name]; dup {
			errs = append(errs, &Error{Pos: p.Pos, Key: "policy",
				Msg: fmt.Sprintf("%q is defined twice (first at %s)", p.Name, prev.Pos)})
			continue
		}
		if len(d.errs) > 0 {
			// Keep the name, so that its other problems are not
			// followed by a misleading "defined twice".
			s.byName[p.Name] = p
			continue
		}
		s.policies = append(s.policies, p)
		s.byName[p.Name] = p
	}
	return errs
}

// checkOverlaps refuses two policies that list the same user, group or
// role at the same priority: which one a person gets would depend on
// file order.
func (s *Set) checkOverlaps() Errors {
	var errs Errors
	type seen struct {
		p   *Policy
		pos Pos
	}
	for _, level := range []struct {
		kind, key string
		list      func(*Policy) []string
	}{
		{"user", "applies_to.users", func(p *Policy) []string { return p.AppliesTo.Users }},
		{"group", "applies_to.groups", func(p *Policy) []string { return p.AppliesTo.Groups }},
		{"role", "applies_to.roles", func(p *Policy) []string { return p.AppliesTo.Roles }},
	} {
		first := map[string]seen{}
		for _, p := range s.policies {
			for _, v := range level.list(p) {
				k := fmt.Sprintf("%d\x00%s", p.Priority, v)
				if prev, ok := first[k]; ok {
					errs = append(errs, &Error{Pos: p.listPos[level.key], Key: level.key,
						Msg: fmt.Sprintf("%s %q is also in policy %q (%s) at the same priority %d: give one of them a higher priority",
							level.kind, v, prev.p.Name, prev.pos, p.Priority)})
					continue
				}
				first[k] = seen{p, p.listPos[level.key]}
			}
		}
	}
	return errs
}

func (p Pos) less(q Pos) bool {
	if p.File != q.File {
		return p.File < q.File
	}
	if p.Line != q.Line {
		return p.Line < q.Line
	}
	return p.Col < q.Col
}

// Keys of a policy block, in the order the documentation lists them.
const (
	keyDescription    = "description"
	keyDriver         = "driver"
	keyImage          = "image"
	keyCPU            = "cpu"
	keyMemory         = "memory"
	keyMemoryMax      = "memory_max"
	keyPids           = "pids"
	keyStorage        = "storage"
	keyMaxSessions    = "max_sessions"
	keyMaxConnections = "max_connections"
	keyIdleTimeout    = "idle_timeout"
	keyDatacenter     = "datacenter"
	keyPriority       = "priority"
	keyAppliesTo      = "applies_to"
)

var policyKeys = []string{keyDescription, keyDriver, keyImage, keyCPU, keyMemory, keyMemoryMax, keyPids, keyStorage,
	keyMaxSessions, keyMaxConnections, keyIdleTimeout, keyDatacenter, keyPriority}

// required are the keys every policy sets, with what a value looks like.
var required = []struct{ key, hint string }{
	{keyCPU, "percent of one CPU, such as 100"},
	{keyMemory, `a size such as "2GiB"`},
	{keyPids, "a number of processes, such as 2048"},
	{keyStorage, `a size such as "10GiB"`},
	{keyMaxSessions, "a number, such as 5"},
	{keyMaxConnections, "a number, such as 100"},
	{keyIdleTimeout, `a duration such as "30m" ("0": never)`},
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// blockDecoder reads one policy block.
type blockDecoder struct {
	block *hclsyntax.Block
	vals  map[string]cty.Value
	names map[string]hcl.Range // where each key is written
	// suggested are keys offered as "did you mean": not also reported
	// as missing.
	suggested map[string]bool
	errs      Errors
}

func (d *blockDecoder) fail(r hcl.Range, key, format string, args ...any) {
	d.errs = append(d.errs, &Error{Pos: pos(r), Key: key, Msg: fmt.Sprintf(format, args...)})
}

// policy decodes the block; nil if its name is unusable.
func (d *blockDecoder) policy() *Policy {
	b := d.block
	p := &Policy{Name: b.Labels[0], Pos: pos(b.LabelRanges[0]), listPos: map[string]Pos{}}
	if !nameRE.MatchString(p.Name) {
		d.fail(b.LabelRanges[0], "policy", "name %q: use up to 63 lower-case letters, digits, '-' and '_', starting with a letter or digit", p.Name)
		return nil
	}
	d.vals, d.names = d.attributes(b.Body, "", policyKeys)

	for _, r := range required {
		if _, ok := d.names[r.key]; !ok && !d.suggested[r.key] {
			d.fail(b.TypeRange, r.key, "required: %s", r.hint)
		}
	}
	p.Description, _ = d.str(keyDescription)
	if drv, ok := d.str(keyDriver); ok {
		if slices.Contains(drivers, drv) {
			p.Driver = drv
		} else {
			d.fail(d.names[keyDriver], keyDriver, "must be one of %s, got %q", strings.Join(drivers, ", "), drv)
		}
		p.driverPos = pos(d.names[keyDriver])
	}
	if img, ok := d.str(keyImage); ok {
		p.Image = strings.TrimSpace(img)
		switch {
		case p.Image == "":
			d.fail(d.names[keyImage], keyImage, "must name a container image, or be left out")
		case p.Driver == "":
			d.fail(d.names[keyImage], keyImage, `only the docker driver runs an image: set driver = "docker"`)
		case p.Driver != DriverDocker:
			d.fail(d.names[keyImage], keyImage, "only the docker driver runs an image; driver is %q", p.Driver)
		}
	} else if p.Driver == DriverDocker {
		d.fail(b.TypeRange, keyImage, `required by driver "docker": the container image, such as "ghcr.io/example/workspace:1.0"`)
	}
	p.CPUPercent, _ = d.positive(keyCPU)
	memRaw, memOK := d.size(keyMemory)
	p.MemoryMB = memRaw.mib
	if maxRaw, ok := d.size(keyMemoryMax); ok {
		p.MemoryMaxMB = maxRaw.mib
		if memOK && maxRaw.mib < memRaw.mib {
			d.fail(d.names[keyMemoryMax], keyMemoryMax, "must be at least memory (%s), got %s", memRaw.raw, maxRaw.raw)
		}
	}
	p.Pids, _ = d.positive(keyPids)
	stor, _ := d.size(keyStorage)
	p.StorageMB = stor.mib
	p.MaxSessions, _ = d.positive(keyMaxSessions)
	p.MaxConnections, _ = d.positive(keyMaxConnections)
	if s, ok := d.str(keyIdleTimeout); ok {
		t, err := parseDuration(s)
		if err != nil {
			d.fail(d.names[keyIdleTimeout], keyIdleTimeout, "%v", err)
		}
		p.IdleTimeout = t
	}
	if dc, ok := d.str(keyDatacenter); ok {
		p.Datacenter = strings.TrimSpace(dc)
	}
	p.Priority, _ = d.whole(keyPriority)

	seenApplies := false
	for _, blk := range b.Body.Blocks {
		if blk.Type != keyAppliesTo {
			msg := fmt.Sprintf("unknown block %q", blk.Type)
			if s := suggest(blk.Type, []string{keyAppliesTo}); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			d.fail(blk.TypeRange, blk.Type, "%s", msg)
			continue
		}
		if len(blk.Labels) > 0 {
			d.fail(blk.LabelRanges[0], keyAppliesTo, "takes no name: applies_to { ... }")
			continue
		}
		if seenApplies {
			d.fail(blk.TypeRange, keyAppliesTo, "given more than once; list every user, group and role in one block")
			continue
		}
		seenApplies = true
		p.AppliesTo = d.appliesTo(blk, p.listPos)
	}
	return p
}

func (d *blockDecoder) appliesTo(blk *hclsyntax.Block, listPos map[string]Pos) AppliesTo {
	const (
		users  = "users"
		groups = "groups"
		roles  = "roles"
	)
	vals, names := d.attributes(blk.Body, keyAppliesTo+".", []string{users, groups, roles})
	for _, inner := range blk.Body.Blocks {
		d.fail(inner.TypeRange, keyAppliesTo+"."+inner.Type, "unknown block: applies_to holds users, groups and roles lists")
	}
	var out AppliesTo
	list := func(name string, check func(string) (string, error)) []string {
		v, ok := vals[name]
		if !ok {
			return nil
		}
		key := keyAppliesTo + "." + name
		listPos[key] = pos(names[name])
		items, err := stringList(v)
		if err != nil {
			d.fail(names[name], key, "%v", err)
			return nil
		}
		var res []string
		for _, it := range items {
			norm, err := check(it)
			if err != nil {
				d.fail(names[name], key, "%v", err)
				continue
			}
			if !slices.Contains(res, norm) {
				res = append(res, norm)
			}
		}
		return res
	}
	out.Users = list(users, func(s string) (string, error) {
		n := user.NormalizeUsername(s)
		if err := user.ValidateUsername(n); err != nil {
			return "", fmt.Errorf("%q is not a username: %v", s, err)
		}
		return n, nil
	})
	out.Groups = list(groups, func(s string) (string, error) {
		n := strings.ToLower(strings.TrimSpace(s))
		if n == "" {
			return "", fmt.Errorf("a group name is empty")
		}
		return n, nil
	})
	out.Roles = list(roles, func(s string) (string, error) {
		if user.ValidRole(s) {
			return s, nil
		}
		known := []string{user.RoleUser, user.RoleAdmin, user.RoleAuditor}
		msg := fmt.Sprintf("unknown role %q", s)
		if sg := suggest(s, known); sg != "" {
			msg += fmt.Sprintf("; did you mean %q?", sg)
		} else {
			msg += "; roles are " + strings.Join(known, ", ")
		}
		return "", fmt.Errorf("%s", msg)
	})
	return out
}

// attributes evaluates a body's attributes (constants only: no variables
// or functions), reporting unknown keys; null values count as absent.
func (d *blockDecoder) attributes(body *hclsyntax.Body, prefix string, known []string) (map[string]cty.Value, map[string]hcl.Range) {
	vals, names := map[string]cty.Value{}, map[string]hcl.Range{}
	for _, a := range sortedAttrs(body) {
		if !slices.Contains(known, a.Name) {
			msg := fmt.Sprintf("unknown key %q", a.Name)
			if s := suggest(a.Name, known); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
				if d.suggested == nil {
					d.suggested = map[string]bool{}
				}
				d.suggested[prefix+s] = true
			}
			d.fail(a.NameRange, prefix+a.Name, "%s", msg)
			continue
		}
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() {
			names[a.Name] = a.NameRange // present, if unusable
			for _, e := range diagErrors(diags) {
				e.Key = prefix + a.Name
				d.errs = append(d.errs, e)
			}
			continue
		}
		if v.IsNull() {
			continue
		}
		vals[a.Name], names[a.Name] = v, a.NameRange
	}
	return vals, names
}

func (d *blockDecoder) str(key string) (string, bool) {
	v, ok := d.vals[key]
	if !ok {
		return "", false
	}
	if v.Type() != cty.String {
		d.fail(d.names[key], key, "expected a string, got %s", describe(v))
		return "", false
	}
	return v.AsString(), true
}

func (d *blockDecoder) whole(key string) (int, bool) {
	v, ok := d.vals[key]
	if !ok {
		return 0, false
	}
	if v.Type() != cty.Number {
		d.fail(d.names[key], key, "expected a whole number, got %s", describe(v))
		return 0, false
	}
	bf := v.AsBigFloat()
	if !bf.IsInt() {
		d.fail(d.names[key], key, "expected a whole number, got %s", describe(v))
		return 0, false
	}
	i, acc := bf.Int64()
	if acc != 0 || i > math.MaxInt32 || i < math.MinInt32 {
		d.fail(d.names[key], key, "%s is out of range", describe(v))
		return 0, false
	}
	return int(i), true
}

func (d *blockDecoder) positive(key string) (int, bool) {
	n, ok := d.whole(key)
	if ok && n < 1 {
		d.fail(d.names[key], key, "must be at least 1, got %d", n)
		return 0, false
	}
	return n, ok
}

// sized is a size as written and in MiB.
type sized struct {
	raw string
	mib int
}

func (d *blockDecoder) size(key string) (sized, bool) {
	v, ok := d.vals[key]
	if !ok {
		return sized{}, false
	}
	if v.Type() != cty.String {
		d.fail(d.names[key], key, "expected a size such as \"2GiB\", got %s", describe(v))
		return sized{}, false
	}
	raw := strings.TrimSpace(v.AsString())
	n, err := parseSize(raw)
	if err != nil {
		d.fail(d.names[key], key, "%v", err)
		return sized{}, false
	}
	if n < 1 {
		d.fail(d.names[key], key, "must be at least 1MiB, got %s", raw)
		return sized{}, false
	}
	return sized{raw: raw, mib: n}, true
}

func stringList(v cty.Value) ([]string, error) {
	t := v.Type()
	if !t.IsListType() && !t.IsTupleType() && !t.IsSetType() {
		return nil, fmt.Errorf("expected a list of strings, got %s", describe(v))
	}
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, ev := it.Element()
		if ev.IsNull() || ev.Type() != cty.String {
			return nil, fmt.Errorf("expected a list of strings, got an element that is %s", describe(ev))
		}
		out = append(out, ev.AsString())
	}
	return out, nil
}

// describe names a value for an error message.
func describe(v cty.Value) string {
	switch t := v.Type(); {
	case v.IsNull():
		return "null"
	case t == cty.String:
		return fmt.Sprintf("%q", v.AsString())
	case t == cty.Number:
		if bf := v.AsBigFloat(); bf.IsInt() {
			return bf.Text('f', 0)
		}
		return v.AsBigFloat().Text('g', -1)
	case t == cty.Bool:
		return fmt.Sprintf("%t", v.True())
	case t.IsListType() || t.IsTupleType() || t.IsSetType():
		return "a list"
	case t.IsMapType() || t.IsObjectType():
		return "a map"
	}
	return v.Type().FriendlyName()
}

func sortedAttrs(body *hclsyntax.Body) []*hclsyntax.Attribute {
	attrs := make([]*hclsyntax.Attribute, 0, len(body.Attributes))
	for _, a := range body.Attributes {
		attrs = append(attrs, a)
	}
	sort.Slice(attrs, func(i, j int) bool { return attrs[i].SrcRange.Start.Byte < attrs[j].SrcRange.Start.Byte })
	return attrs
}

func pos(r hcl.Range) Pos { return Pos{File: r.Filename, Line: r.Start.Line, Col: r.Start.Column} }

// diagErrors turns HCL diagnostics into errors "file:line:col: summary:
// detail", as the configuration does.
func diagErrors(diags hcl.Diagnostics) Errors {
	var errs Errors
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		e := &Error{Msg: msg}
		if d.Subject != nil {
			e.Pos = pos(*d.Subject)
		}
		errs = append(errs, e)
	}
	return errs
}

// suggest returns the closest of known to k, for "did you mean" hints.
func suggest(k string, known []string) string {
	best, bestDist := "", 4
	for _, c := range known {
		if d := levenshtein.Distance(k, c, nil); d < bestDist && d < len(c) {
			best, bestDist = c, d
		}
	}
	return best
}
