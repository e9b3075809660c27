package nomad_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/config"
	"github.com/codehub-dev/codehub/internal/orchestrator/nomad"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/nomad/api"
	"github.com/zclconf/go-cty/cty"
)

// jobsDir holds the Nomad job specs operators run.
const jobsDir = "../../../jobs"

// node is a block of a job spec read with a schema: its labels, the
// attributes' values (runtime interpolations such as ${NOMAD_PORT_http}
// kept as text, as Nomad keeps them) and its sub-blocks.
type node struct {
	labels []string
	attrs  map[string]any
	blocks map[string][]*node
}

func (n *node) str(k string) string {
	s, _ := n.attrs[k].(string)
	return s
}

func (n *node) list(k string) []string {
	l, _ := n.attrs[k].([]string)
	return l
}

func (n *node) one(t *testing.T, typ string) *node {
	t.Helper()
	if len(n.blocks[typ]) != 1 {
		t.Fatalf("want one %s block, got %d", typ, len(n.blocks[typ]))
	}
	return n.blocks[typ][0]
}

func (n *node) named(typ, label string) *node {
	for _, b := range n.blocks[typ] {
		if len(b.labels) > 0 && b.labels[0] == label {
			return b
		}
	}
	return nil
}

// schema is the part of a block the tests read: its attributes, and its
// sub-blocks with their label names and own schemas. "*" reads every
// attribute (meta, env).
type schema struct {
	attrs  []string
	blocks map[string]blockSchema
}

type blockSchema struct {
	labels []string
	schema *schema
}

var (
	checkSchema   = &schema{attrs: []string{"name", "type", "path", "command", "args", "interval", "timeout"}, blocks: map[string]blockSchema{"header": {schema: &schema{attrs: []string{"*"}}}}}
	serviceSchema = &schema{attrs: []string{"name", "port", "tags"}, blocks: map[string]blockSchema{
		"meta": {schema: &schema{attrs: []string{"*"}}}, "check": {schema: checkSchema},
	}}
	taskSchema = &schema{attrs: []string{"driver", "user"}, blocks: map[string]blockSchema{
		"dispatch_payload": {schema: &schema{attrs: []string{"file"}}},
		"template":         {schema: &schema{attrs: []string{"source", "destination", "perms", "data", "change_mode", "uid", "gid"}}},
		"config":           {schema: &schema{attrs: []string{"command", "args", "image"}}},
		"resources":        {schema: &schema{attrs: []string{"cpu", "memory", "memory_max"}}},
		"service":          {schema: serviceSchema},
		"vault":            {schema: &schema{attrs: []string{"role"}}},
		"volume_mount":     {schema: &schema{attrs: []string{"volume", "destination"}}},
		"env":              {schema: &schema{attrs: []string{"*"}}},
	}}
	groupSchema = &schema{attrs: []string{"count"}, blocks: map[string]blockSchema{
		"restart":    {schema: &schema{attrs: []string{"attempts", "interval", "delay", "mode"}}},
		"reschedule": {schema: &schema{attrs: []string{"attempts", "unlimited", "delay_function", "max_delay"}}},
		"network":    {schema: &schema{blocks: map[string]blockSchema{"port": {labels: []string{"label"}, schema: &schema{attrs: []string{"to"}}}}}},
		"update":     {schema: &schema{attrs: []string{"max_parallel", "health_check", "auto_revert"}}},
		"spread":     {schema: &schema{attrs: []string{"attribute"}}},
		"constraint": {schema: &schema{attrs: []string{"attribute", "value", "operator"}}},
		"volume":     {labels: []string{"name"}, schema: &schema{attrs: []string{"type", "source"}}},
		"service":    {schema: serviceSchema},
		"task":       {labels: []string{"name"}, schema: taskSchema},
	}}
	jobSchema = &schema{blocks: map[string]blockSchema{
		"job": {labels: []string{"name"}, schema: &schema{attrs: []string{"type", "datacenters", "priority"}, blocks: map[string]blockSchema{
			"parameterized": {schema: &schema{attrs: []string{"payload", "meta_required", "meta_optional"}}},
			"meta":          {schema: &schema{attrs: []string{"*"}}},
			"group":         {labels: []string{"name"}, schema: groupSchema},
		}}},
	}}
)

// read decodes body with s, leaving what s does not name.
func read(t *testing.T, body hcl.Body, s *schema, labels []string) *node {
	t.Helper()
	n := &node{labels: labels, attrs: map[string]any{}, blocks: map[string][]*node{}}
	if len(s.attrs) == 1 && s.attrs[0] == "*" {
		attrs, diags := body.JustAttributes()
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		for k, a := range attrs {
			n.attrs[k] = literal(t, a.Expr)
		}
		return n
	}
	hs := &hcl.BodySchema{}
	for _, a := range s.attrs {
		hs.Attributes = append(hs.Attributes, hcl.AttributeSchema{Name: a})
	}
	for typ, b := range s.blocks {
		hs.Blocks = append(hs.Blocks, hcl.BlockHeaderSchema{Type: typ, LabelNames: b.labels})
	}
	content, _, diags := body.PartialContent(hs)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for k, a := range content.Attributes {
		n.attrs[k] = literal(t, a.Expr)
	}
	for _, b := range content.Blocks {
		n.blocks[b.Type] = append(n.blocks[b.Type], read(t, b.Body, s.blocks[b.Type].schema, b.Labels))
	}
	return n
}

// literal is an attribute's value as Nomad's parser keeps it: runtime
// interpolations (${NOMAD_*}, ${node.*}, ${attr.*}) stay as text.
func literal(t *testing.T, expr hcl.Expression) any {
	t.Helper()
	switch e := expr.(type) {
	case *hclsyntax.TemplateExpr:
		var b strings.Builder
		for _, p := range e.Parts {
			b.WriteString(fmt.Sprint(literal(t, p)))
		}
		return b.String()
	case *hclsyntax.TemplateWrapExpr:
		return literal(t, e.Wrapped)
	case *hclsyntax.ScopeTraversalExpr:
		var b strings.Builder
		for _, tr := range e.Traversal {
			switch s := tr.(type) {
			case hcl.TraverseRoot:
				b.WriteString(s.Name)
			case hcl.TraverseAttr:
				b.WriteString("." + s.Name)
			}
		}
		return "${" + b.String() + "}"
	case *hclsyntax.TupleConsExpr:
		var out []string
		for _, x := range e.Exprs {
			out = append(out, fmt.Sprint(literal(t, x)))
		}
		return out
	}
	v, diags := expr.Value(nil)
	if diags.HasErrors() {
		t.Fatalf("%s: %s", expr.Range(), diags.Error())
	}
	switch v.Type() {
	case cty.String:
		return v.AsString()
	case cty.Number:
		f, _ := v.AsBigFloat().Float64()
		return f
	case cty.Bool:
		return v.True()
	}
	t.Fatalf("%s: unexpected value %#v", expr.Range(), v)
	return nil
}

func parseJob(t *testing.T, file string) *node {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCLFile(filepath.Join(jobsDir, file))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	top := read(t, f.Body, jobSchema, nil)
	return top.one(t, "job")
}

// argAfter is the argument following flag in args.
func argAfter(args []string, flag string) string {
	i := slices.Index(args, flag)
	if i < 0 || i+1 >= len(args) {
		return ""
	}
	return args[i+1]
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestWorkspaceJobs checks that the workspace and warm-pool jobs take what
// the orchestrator dispatches and deliver what the agent and the gateway
// expect.
func TestWorkspaceJobs(t *testing.T) {
	defaults := config.Default(func(string) string { return "" }).Nomad
	for _, tc := range []struct {
		file, id string
		warm     bool
	}{
		{"workspace.nomad.hcl", defaults.Job, false},
		{"warm-pool.nomad.hcl", defaults.WarmPoolJob, true},
	} {
		t.Run(tc.file, func(t *testing.T) {
			job := parseJob(t, tc.file)
			if job.labels[0] != tc.id {
				t.Errorf("job %q, want %q (the configuration's default)", job.labels[0], tc.id)
			}
			if job.str("type") != "batch" {
				t.Errorf("type %q, want batch", job.str("type"))
			}
			pj := job.one(t, "parameterized")
			if pj.str("payload") != "required" {
				t.Errorf("payload %q, want required: the secret", pj.str("payload"))
			}
			if got, want := pj.list("meta_required"), nomad.RequiredMeta(); !slices.Equal(sorted(got), sorted(want)) {
				t.Errorf("meta_required %q, want %q", got, want)
			}
			if got, want := pj.list("meta_optional"), nomad.OptionalMeta(); !slices.Equal(sorted(got), sorted(want)) {
				t.Errorf("meta_optional %q, want %q", got, want)
			}
			meta := job.one(t, "meta")
			for _, k := range append(nomad.OptionalMeta(), nomad.JobMetaStorageLimit) {
				if _, ok := meta.attrs[k]; !ok {
					t.Errorf("meta has no default for %q", k)
				}
			}

			var defaultGroups int
			for _, g := range job.blocks["group"] {
				t.Run(g.labels[0], func(t *testing.T) {
					if c, _ := g.attrs["count"].(float64); c > 0 {
						defaultGroups++
					}
					checkWorkspaceGroup(t, g, tc.warm)
				})
			}
			if defaultGroups != 1 {
				t.Errorf("%d groups with count > 0, want 1 (the orchestrator keeps the policy's driver's)", defaultGroups)
			}
		})
	}
}

func checkWorkspaceGroup(t *testing.T, g *node, warm bool) {
	restart := g.one(t, "restart")
	if a, _ := restart.attrs["attempts"].(float64); a < 1 || a > 5 || restart.str("mode") != "fail" || restart.str("delay") == "" {
		t.Errorf("restart %v: want a few attempts in place with a delay, then fail", restart.attrs)
	}
	resched := g.one(t, "reschedule")
	if u, _ := resched.attrs["unlimited"].(bool); u {
		t.Error("reschedule is unlimited")
	}
	if !warm && resched.str("delay_function") != "exponential" {
		t.Errorf("reschedule delay_function %q, want exponential", resched.str("delay_function"))
	}
	if g.one(t, "network").named("port", nomad.PortLabel) == nil {
		t.Errorf("no network port %q", nomad.PortLabel)
	}
	task := g.named("task", nomad.TaskName)
	if task == nil {
		t.Fatalf("no task %q", nomad.TaskName)
	}
	if task.one(t, "dispatch_payload").str("file") != nomad.PayloadFile {
		t.Errorf("dispatch_payload file %q, want %q", task.one(t, "dispatch_payload").str("file"), nomad.PayloadFile)
	}
	var copied bool
	for _, tmpl := range task.blocks["template"] {
		copied = copied || tmpl.str("source") == "local/"+nomad.PayloadFile &&
			tmpl.str("destination") == "secrets/"+nomad.SecretFile && tmpl.str("perms") == "0600"
	}
	if !copied {
		t.Errorf("no template copying local/%s to secrets/%s with perms 0600", nomad.PayloadFile, nomad.SecretFile)
	}
	cfg := task.one(t, "config")
	args := cfg.list("args")
	if len(args) == 0 || args[0] != "agent" {
		t.Errorf("args %q: want `codehub agent ...`", args)
	}
	if got := argAfter(args, "--listen"); got != "0.0.0.0:${NOMAD_PORT_"+nomad.PortLabel+"}" {
		t.Errorf("--listen %q", got)
	}
	if got := argAfter(args, "--secret-file"); got != "${NOMAD_SECRETS_DIR}/"+nomad.SecretFile {
		t.Errorf("--secret-file %q, want the template's 0600 copy", got)
	}
	if got := argAfter(args, "--storage-limit"); got != "${NOMAD_META_"+nomad.JobMetaStorageLimit+"}" {
		t.Errorf("--storage-limit %q", got)
	}
	switch task.str("driver") {
	case "docker":
		if cfg.str("image") != "${NOMAD_META_image}" {
			t.Errorf("image %q, want the dispatch's", cfg.str("image"))
		}
	case "exec":
		if c, _ := g.attrs["count"].(float64); c != 0 {
			t.Error("the exec group runs by default")
		}
	default:
		t.Errorf("driver %q", task.str("driver"))
	}

	svc := task.one(t, "service")
	if svc.str("name") != nomad.ServiceName || svc.str("port") != nomad.PortLabel {
		t.Errorf("service %q on %q", svc.str("name"), svc.str("port"))
	}
	tags := svc.list("tags")
	want := []string{"dc-${node.datacenter}", "workspace-${NOMAD_META_workspace_id}"}
	if warm {
		want = append(want, "warm")
	} else {
		want = append(want, "user-${NOMAD_META_user_id}")
	}
	for _, w := range want {
		if !slices.Contains(tags, w) {
			t.Errorf("service tags %q lack %q", tags, w)
		}
	}
	meta := svc.one(t, "meta")
	if meta.str("workspace_id") != "${NOMAD_META_workspace_id}" || meta.str("user_id") != "${NOMAD_META_user_id}" {
		t.Errorf("service meta %v", meta.attrs)
	}
	check := svc.one(t, "check")
	probe := strings.Join(check.list("args"), " ")
	if check.str("type") != "script" || !strings.Contains(probe, agentapi.PathHealth) ||
		!strings.Contains(probe, agentapi.SecretHeader) || !strings.Contains(probe, "$NOMAD_SECRETS_DIR/"+nomad.SecretFile) {
		t.Errorf("check %v: want a script check asking %s with the secret", check.attrs, agentapi.PathHealth)
	}
	if len(check.blocks["header"]) > 0 {
		t.Error("the check has headers: a secret there would be in Consul's catalog")
	}
}

func TestGatewayJob(t *testing.T) {
	job := parseJob(t, "gateway.nomad.hcl")
	if job.str("type") != "service" {
		t.Errorf("type %q", job.str("type"))
	}
	g := job.one(t, "group")
	if c, _ := g.attrs["count"].(float64); c < 2 {
		t.Errorf("count %v, want at least 2", g.attrs["count"])
	}
	g.one(t, "spread")
	if u := g.one(t, "update"); u.attrs["auto_revert"] != true || u.str("health_check") != "checks" {
		t.Errorf("update %v", u.attrs)
	}
	svc := g.one(t, "service")
	if svc.str("name") != "codehub-gateway" || svc.one(t, "check").str("type") != "http" || svc.one(t, "check").str("path") != "/healthz" {
		t.Errorf("service %v, check %v", svc.attrs, svc.one(t, "check").attrs)
	}
	// Signing keys are Vault transit's: no shared key file, no volume.
	if len(g.blocks["volume"]) != 0 {
		t.Error("a data volume: transit signs tokens, no key file is shared")
	}
	task := g.one(t, "task")
	if task.one(t, "vault").str("role") == "" {
		t.Error("no Vault role (workload identity)")
	}
	var data string
	for _, tpl := range task.blocks["template"] {
		if tpl.str("destination") == "secrets/codehub.hcl" {
			data = tpl.str("data")
		}
	}
	defaults := config.Default(func(string) string { return "" }).Nomad
	for _, want := range []string{`service "postgres"`, `service "redis"`, `nomadVar "nomad/jobs/codehub-gateway"`,
		`job           = "` + defaults.Job + `"`, `warm_pool_job = "` + defaults.WarmPoolJob + `"`,
		`namespace     = "` + defaults.Namespace + `"`, `role    = "` + config.Default(func(string) string { return "" }).Vault.Database.Role + `"`} {
		if !strings.Contains(data, want) {
			t.Errorf("the configuration template lacks %q", want)
		}
	}
	if !regexp.MustCompile(`transit \{\s*enabled\s*= true`).MatchString(data) {
		t.Error("the configuration template does not turn Vault transit signing on")
	}
}

// TestJobsParseInNomad has a real Nomad parse and validate every job file
// (skipped without NOMAD_ADDR).
func TestJobsParseInNomad(t *testing.T) {
	if !realNomad() {
		t.Skip("set NOMAD_ADDR to have a real Nomad parse jobs/*.hcl")
	}
	client, err := api.NewClient(api.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(jobsDir, "*.hcl"))
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		job, err := client.Jobs().ParseHCL(string(src), true)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if _, _, err := client.Jobs().Validate(job, nil); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		if pj := job.ParameterizedJob; pj != nil && !slices.Equal(sorted(pj.MetaRequired), sorted(nomad.RequiredMeta())) {
			t.Errorf("%s: Nomad reads meta_required %q", f, pj.MetaRequired)
		}
	}
}
