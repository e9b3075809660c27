package nomad

import (
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/nomad/api"
)

// ACLs, when Options.Token is set: that token is a management token, and
// others are made through the API (PUT /v1/acl/policy/{name}, PUT
// /v1/acl/token) from policies written in Nomad's ACL language. Of it the
// fake enforces what codehub's calls need: namespace capabilities (and
// the read and write policies that stand for them), host_volume mount
// capabilities on job registration, and the node, agent and operator
// policies.

// Namespace capabilities the fake checks.
const (
	capListJobs       = "list-jobs"
	capParseJob       = "parse-job"
	capReadJob        = "read-job"
	capSubmitJob      = "submit-job"
	capDispatchJob    = "dispatch-job"
	capReadFS         = "read-fs"
	capAllocLifecycle = "alloc-lifecycle"
)

// namespacePolicies are the capabilities a namespace's policy = "..."
// stands for, as Nomad expands them.
var namespacePolicies = map[string][]string{
	"read": {capListJobs, capParseJob, capReadJob, "csi-list-volume", "csi-read-volume", "list-scaling-policies",
		"read-scaling-policy", "read-job-scaling", "host-volume-read"},
	"write": {capListJobs, capParseJob, capReadJob, "csi-list-volume", "csi-read-volume", "list-scaling-policies",
		"read-scaling-policy", "read-job-scaling", "host-volume-read", "scale-job", capSubmitJob, capDispatchJob,
		"read-logs", capReadFS, "alloc-exec", capAllocLifecycle, "csi-mount-volume", "csi-write-volume",
		"submit-recommendation", "host-volume-write"},
	"scale": {"list-scaling-policies", "read-scaling-policy", "read-job-scaling", "scale-job"},
}

// aclRules is a parsed ACL policy.
type aclRules struct {
	namespaces  map[string][]string // label (a glob) -> capabilities; "deny" denies
	hostVolumes map[string][]string // label (a glob) -> mount-readonly, mount-readwrite, deny
	node        string              // "", read, write, deny
	agent       string
	operator    string
}

// parseACLPolicy reads a policy in Nomad's ACL language.
func parseACLPolicy(name, rules string) (*aclRules, error) {
	f, diags := hclsyntax.ParseConfig([]byte(rules), name, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	out := &aclRules{namespaces: map[string][]string{}, hostVolumes: map[string][]string{}}
	body := f.Body.(*hclsyntax.Body)
	for n := range body.Attributes {
		return nil, fmt.Errorf("%s: unexpected attribute %q", name, n)
	}
	for _, b := range body.Blocks {
		policy, caps, err := aclBlock(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		switch b.Type {
		case "namespace":
			if len(b.Labels) != 1 {
				return nil, fmt.Errorf("%s: a namespace block takes one label", name)
			}
			if policy != "" {
				exp, ok := namespacePolicies[policy]
				if !ok && policy != "deny" {
					return nil, fmt.Errorf("%s: invalid namespace policy %q", name, policy)
				}
				caps = append(caps, exp...)
				if policy == "deny" {
					caps = append(caps, "deny")
				}
			}
			out.namespaces[b.Labels[0]] = append(out.namespaces[b.Labels[0]], caps...)
		case "host_volume":
			if len(b.Labels) != 1 {
				return nil, fmt.Errorf("%s: a host_volume block takes one label", name)
			}
			switch policy {
			case "read":
				caps = append(caps, "mount-readonly")
			case "write":
				caps = append(caps, "mount-readonly", "mount-readwrite")
			case "deny":
				caps = append(caps, "deny")
			case "":
			default:
				return nil, fmt.Errorf("%s: invalid host_volume policy %q", name, policy)
			}
			out.hostVolumes[b.Labels[0]] = append(out.hostVolumes[b.Labels[0]], caps...)
		case "node":
			out.node = policy
		case "agent":
			out.agent = policy
		case "operator":
			out.operator = policy
		case "quota", "plugin", "node_pool":
		default:
			return nil, fmt.Errorf("%s: unknown block %q", name, b.Type)
		}
	}
	return out, nil
}

// aclBlock reads a rule's policy and capabilities (its variables block,
// and anything else the fake does not check, is left alone).
func aclBlock(b *hclsyntax.Block) (string, []string, error) {
	var policy string
	var caps []string
	for n, a := range b.Body.Attributes {
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() {
			return "", nil, diags
		}
		switch n {
		case "policy":
			policy = v.AsString()
		case "capabilities":
			for it := v.ElementIterator(); it.Next(); {
				_, c := it.Element()
				caps = append(caps, c.AsString())
			}
		}
	}
	return policy, caps, nil
}

// aclToken is who a request comes from: a management token, or the
// union of a client token's policies.
type aclToken struct {
	management bool
	rules      []*aclRules
}

// matchCaps collects the capabilities of the most specific rule whose
// glob matches name (an exact label wins over a glob), as Nomad does.
func matchCaps(rules map[string][]string, name string) []string {
	if c, ok := rules[name]; ok {
		return c
	}
	var best string
	var caps []string
	found := false
	for label, c := range rules {
		if ok, _ := path.Match(label, name); ok && (!found || len(label) > len(best)) {
			best, caps, found = label, c, true
		}
	}
	return caps
}

func (t *aclToken) allowNamespace(ns, capability string) bool {
	if t.management {
		return true
	}
	allowed := false
	for _, r := range t.rules {
		caps := matchCaps(r.namespaces, ns)
		if slices.Contains(caps, "deny") {
			return false
		}
		allowed = allowed || slices.Contains(caps, capability)
	}
	return allowed
}

func (t *aclToken) allowHostVolume(name string, readOnly bool) bool {
	if t.management {
		return true
	}
	want := "mount-readwrite"
	if readOnly {
		want = "mount-readonly"
	}
	allowed := false
	for _, r := range t.rules {
		caps := matchCaps(r.hostVolumes, name)
		if slices.Contains(caps, "deny") {
			return false
		}
		allowed = allowed || slices.Contains(caps, want)
	}
	return allowed
}

// allowPolicy checks a node, agent or operator rule.
func (t *aclToken) allowPolicy(of func(*aclRules) string, write bool) bool {
	if t.management {
		return true
	}
	allowed := false
	for _, r := range t.rules {
		switch of(r) {
		case "deny":
			return false
		case "write":
			allowed = true
		case "read":
			allowed = allowed || !write
		}
	}
	return allowed
}

// aclState is the fake's ACL tables. Guarded by Server.mu.
type aclState struct {
	policies map[string]*api.ACLPolicy
	compiled map[string]*aclRules
	tokens   map[string]*api.ACLToken // by secret
}

// requestToken is the request's token: X-Nomad-Token, or a bearer token.
func requestToken(r *http.Request) string {
	if t := r.Header.Get("X-Nomad-Token"); t != "" {
		return t
	}
	t, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return t
}

// resolveToken returns the request's token; ok false with the error
// Nomad answers (403) when it is unknown. Without ACLs every request is
// a management one. Called with s.mu held.
func (s *Server) resolveTokenLocked(r *http.Request) (*aclToken, string) {
	if s.opts.Token == "" {
		return &aclToken{management: true}, ""
	}
	secret := requestToken(r)
	switch {
	case secret == s.opts.Token:
		return &aclToken{management: true}, ""
	case secret == "":
		return &aclToken{}, "" // anonymous: no policy
	}
	tok := s.acl.tokens[secret]
	if tok == nil {
		return nil, "ACL token not found"
	}
	if tok.Type == "management" {
		return &aclToken{management: true}, ""
	}
	t := &aclToken{}
	for _, p := range tok.Policies {
		if c := s.acl.compiled[p]; c != nil {
			t.rules = append(t.rules, c)
		}
	}
	return t, ""
}

func (s *Server) handleACLPolicies(w http.ResponseWriter, r *http.Request) {
	if s.opts.Token == "" {
		writeError(w, http.StatusBadRequest, "ACL support disabled")
		return
	}
	s.blockingQuery(w, r, func() (any, uint64, error) {
		out := []*api.ACLPolicyListStub{}
		for _, p := range s.acl.policies {
			out = append(out, &api.ACLPolicyListStub{Name: p.Name, Description: p.Description, CreateIndex: p.CreateIndex, ModifyIndex: p.ModifyIndex})
		}
		return out, max(s.tables["acl_policy"], 1), nil
	})
}

func (s *Server) handleACLPolicyUpsert(w http.ResponseWriter, r *http.Request) {
	var p api.ACLPolicy
	if err := decodeBody(r, &p); err != nil {
		writeErr(w, err)
		return
	}
	name := r.PathValue("name")
	if p.Name != name {
		writeError(w, http.StatusBadRequest, "ACL policy name does not match request path")
		return
	}
	rules, err := parseACLPolicy(name, p.Rules)
	if err != nil {
		writeError(w, http.StatusBadRequest, "policy "+name+": "+err.Error())
		return
	}
	s.mu.Lock()
	idx := s.bumpLocked("acl_policy")
	p.CreateIndex, p.ModifyIndex = idx, idx
	if old := s.acl.policies[name]; old != nil {
		p.CreateIndex = old.CreateIndex
	}
	s.acl.policies[name], s.acl.compiled[name] = &p, rules
	s.mu.Unlock()
	writeJSON(w, idx, []byte("null"))
}

func (s *Server) handleACLPolicyDelete(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	delete(s.acl.policies, r.PathValue("name"))
	delete(s.acl.compiled, r.PathValue("name"))
	idx := s.bumpLocked("acl_policy")
	s.mu.Unlock()
	writeJSON(w, idx, []byte("null"))
}

func (s *Server) handleACLTokenCreate(w http.ResponseWriter, r *http.Request) {
	var t api.ACLToken
	if err := decodeBody(r, &t); err != nil {
		writeErr(w, err)
		return
	}
	switch t.Type {
	case "client":
		if len(t.Policies) == 0 {
			writeError(w, http.StatusBadRequest, "client token missing policies")
			return
		}
	case "management":
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("token type must be client or management, not %q", t.Type))
		return
	}
	s.mu.Lock()
	for _, p := range t.Policies {
		if s.acl.policies[p] == nil {
			s.mu.Unlock()
			writeError(w, http.StatusBadRequest, fmt.Sprintf("policy %q does not exist", p))
			return
		}
	}
	t.AccessorID, t.SecretID, t.CreateTime = uuid(), uuid(), time.Now().UTC()
	idx := s.bumpLocked("acl_token")
	t.CreateIndex, t.ModifyIndex = idx, idx
	s.acl.tokens[t.SecretID] = &t
	s.mu.Unlock()
	writeJSONValue(w, idx, &t)
}

func (s *Server) handleACLTokenDelete(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	for secret, t := range s.acl.tokens {
		if t.AccessorID == r.PathValue("accessor") {
			delete(s.acl.tokens, secret)
		}
	}
	idx := s.bumpLocked("acl_token")
	s.mu.Unlock()
	writeJSON(w, idx, []byte("null"))
}
