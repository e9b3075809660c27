package nomad

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/codehub-dev/codehub/internal/workspace"
	"github.com/hashicorp/nomad/api"
)

// What the workspace job must look like (jobs/workspace.nomad.hcl and
// jobs/warm-pool.nomad.hcl; their test checks them against these).
const (
	// ServiceName is the Consul service of every workspace's agent.
	ServiceName = "codehub-workspace"
	// TaskName is the task that runs `codehub agent`.
	TaskName = "agent"
	// PortLabel is the group's port the agent listens on.
	PortLabel = "http"
	// PayloadFile is the dispatch_payload file, in the task's local/:
	// the workspace secret, as Nomad writes it (mode 0777 less umask).
	PayloadFile = "secret"
	// SecretFile is where the job's template copies the secret with mode
	// 0600, in the task's secrets/: the agent's --secret-file.
	SecretFile = "agent-secret"
)

// Dispatch meta keys.
const (
	MetaUserID      = "user_id"
	MetaWorkspaceID = "workspace_id"
	MetaPolicy      = "policy"
	MetaSessionID   = "session_id"
	MetaUsername    = "username"
	MetaMemoryMB    = "memory_mb"
	MetaMemoryMaxMB = "memory_max_mb"
	MetaCPU         = "cpu"
	MetaImage       = "image"
	MetaStorageMB   = "storage_mb"
	MetaDataCenter  = "datacenter"
)

// Job meta the derived per-policy jobs carry (not dispatch meta).
const (
	// JobMetaStorageLimit is the policy's storage in bytes, for the
	// agent's --storage-limit (interpolation cannot multiply).
	JobMetaStorageLimit = "storage_limit_bytes"
	jobMetaPolicy       = "codehub_policy"
	jobMetaTemplate     = "codehub_template"
	jobMetaHash         = "codehub_hash"
)

// RequiredMeta returns the meta every dispatch carries: the job's
// parameterized meta_required.
func RequiredMeta() []string { return []string{MetaUserID, MetaWorkspaceID, MetaPolicy} }

// OptionalMeta returns the meta a dispatch may carry: the job's
// parameterized meta_optional. session_id is reserved for when the
// manager passes the session that caused the start.
func OptionalMeta() []string {
	return []string{MetaSessionID, MetaUsername, MetaMemoryMB, MetaMemoryMaxMB, MetaCPU, MetaImage, MetaStorageMB, MetaDataCenter}
}

var notSlugRE = regexp.MustCompile(`[^a-z0-9_-]+`)

// policyName is the policy's name as a job ID suffix.
func policyName(p workspace.Policy) string {
	n := notSlugRE.ReplaceAllString(strings.ToLower(p.Name), "-")
	n = strings.Trim(n, "-")
	if n == "" {
		return "default"
	}
	return n
}

// cpuMHz converts the policy's share of a CPU into Nomad's MHz.
func (o *Orchestrator) cpuMHz(p workspace.Policy) int {
	if p.CPUPercent <= 0 {
		return 0
	}
	return max(p.CPUPercent*o.cfg.CPUMHzPerCore/100, 100)
}

// dispatchMeta is who and what: the workspace, its user and its policy's
// limits (the limits Nomad enforces come from the derived job; these are
// for people and the task's environment).
func (o *Orchestrator) dispatchMeta(spec workspace.Spec) map[string]string {
	w, p := spec.Workspace, spec.Policy
	m := map[string]string{MetaUserID: w.UserID, MetaWorkspaceID: w.ID, MetaPolicy: policyName(p)}
	set := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	pos := func(n int) string {
		if n <= 0 {
			return ""
		}
		return strconv.Itoa(n)
	}
	set(MetaUsername, spec.Username)
	set(MetaSessionID, spec.SessionID)
	set(MetaMemoryMB, pos(p.MemoryMB))
	if p.MemoryMaxMB > p.MemoryMB {
		set(MetaMemoryMaxMB, pos(p.MemoryMaxMB))
	}
	set(MetaCPU, pos(o.cpuMHz(p)))
	set(MetaImage, p.Image)
	set(MetaStorageMB, pos(p.StorageMB))
	set(MetaDataCenter, p.Datacenter)
	return m
}

// template returns the operator's parameterized job, read at most every
// JobCacheTTL, checked to accept the meta and payload Start sends.
func (o *Orchestrator) template(ctx context.Context, id string) (*api.Job, error) {
	now := o.cfg.Now()
	o.mu.Lock()
	c, ok := o.templates[id]
	o.mu.Unlock()
	if ok && now.Sub(c.at) < o.cfg.JobCacheTTL {
		return c.job, nil
	}
	job, _, err := o.jobs.Info(id, o.query(ctx, 0, 0))
	if isNotFound(err) {
		return nil, cannotStart(fmt.Errorf("%w: no job %q in namespace %q (register it: nomad job run jobs/workspace.nomad.hcl)", ErrJobNotRegistered, id, o.namespace()))
	}
	if err != nil {
		return nil, apiError(fmt.Sprintf("read the Nomad job %q", id), err)
	}
	if err := checkTemplate(job); err != nil {
		return nil, cannotStart(err)
	}
	o.mu.Lock()
	o.templates[id] = cachedJob{job: job, at: now}
	o.mu.Unlock()
	return job, nil
}

// checkTemplate verifies that a dispatch of Start's will be accepted.
func checkTemplate(job *api.Job) error {
	id := *job.ID
	pj := job.ParameterizedJob
	if pj == nil || job.Dispatched {
		return fmt.Errorf("the Nomad job %q is not a parameterized job", id)
	}
	if pj.Payload == "forbidden" {
		return fmt.Errorf("the Nomad job %q forbids a payload; the workspace secret is its payload", id)
	}
	accepted := append(slices.Clone(pj.MetaRequired), pj.MetaOptional...)
	sent := append(RequiredMeta(), OptionalMeta()...)
	for _, k := range sent {
		if !slices.Contains(accepted, k) {
			return fmt.Errorf("the Nomad job %q does not accept the dispatch meta %q; its parameterized block must have meta_required = %q and meta_optional = %q", id, k, RequiredMeta(), OptionalMeta())
		}
	}
	for _, k := range pj.MetaRequired {
		if !slices.Contains(RequiredMeta(), k) {
			return fmt.Errorf("the Nomad job %q requires the dispatch meta %q, which codehub does not send", id, k)
		}
	}
	return nil
}

// policyJob makes sure the policy's job, derived from the template, is
// registered as it should be, and returns its ID and datacenters.
func (o *Orchestrator) policyJob(ctx context.Context, template string, p workspace.Policy) (string, []string, error) {
	tmpl, err := o.template(ctx, template)
	if err != nil {
		return "", nil, err
	}
	job, hash, err := o.derive(tmpl, p)
	if err != nil {
		return "", nil, cannotStart(err)
	}
	id := *job.ID
	o.mu.Lock()
	done := o.registered[id] == hash
	o.mu.Unlock()
	if done {
		return id, job.Datacenters, nil
	}
	cur, _, err := o.jobs.Info(id, o.query(ctx, 0, 0))
	switch {
	case err == nil && cur.Meta[jobMetaHash] == hash && (cur.Stop == nil || !*cur.Stop):
	case err == nil || isNotFound(err):
		resp, _, err := o.jobs.Register(job, o.write(ctx, ""))
		if err != nil {
			return "", nil, apiError(fmt.Sprintf("register the Nomad job %q of policy %q", id, policyName(p)), err)
		}
		o.log.Info("registered the workspace job of a policy", "job", id, "policy", policyName(p), "template", template)
		o.registrationWarnings(id, p, resp.Warnings)
	default:
		return "", nil, apiError(fmt.Sprintf("read the Nomad job %q", id), err)
	}
	if t := agentTask(job.TaskGroups[0]); t.Driver == "exec" && p.Pids > 0 {
		o.log.Warn("the exec driver cannot limit a workspace's processes: the policy's pids limit is enforced for the docker driver only",
			"policy", policyName(p), "pids", p.Pids)
	}
	o.mu.Lock()
	o.registered[id] = hash
	o.mu.Unlock()
	return id, job.Datacenters, nil
}

// registrationWarnings logs what Nomad warned of when a policy's job was
// registered: once per version of the job, since it is registered only
// when it changed. memory_max is the one that matters: Nomad ignores it
// unless the cluster allows memory oversubscription (off by default).
func (o *Orchestrator) registrationWarnings(jobID string, p workspace.Policy, warnings string) {
	warnings = strings.TrimSpace(warnings)
	if warnings == "" {
		return
	}
	hint := ""
	if strings.Contains(warnings, "Memory oversubscription is not enabled") {
		hint = "workspaces get their memory and no burst above it; to allow memory_max: nomad operator scheduler set-config -memory-oversubscription=true"
	}
	o.log.Warn("Nomad warned about the workspace job of a policy", "job", jobID, "policy", policyName(p), "warnings", warnings, "hint", hint)
}

// agentTask is the group's task that runs the agent.
func agentTask(tg *api.TaskGroup) *api.Task {
	for _, t := range tg.Tasks {
		if t.Name == TaskName {
			return t
		}
	}
	for _, t := range tg.Tasks {
		if t.DispatchPayload != nil {
			return t
		}
	}
	return nil
}

// derive returns the policy's parameterized job: the template with the
// policy's resources, datacenter and the one task group of its driver,
// and a hash of it all.
func (o *Orchestrator) derive(tmpl *api.Job, p workspace.Policy) (*api.Job, string, error) {
	j := cloneJob(tmpl)
	id := *tmpl.ID + "-" + policyName(p)
	j.ID, j.Name = &id, &id
	j.ParentID, j.Dispatched, j.Payload, j.DispatchIdempotencyToken = nil, false, nil, nil
	j.Status, j.StatusDescription, j.Stable, j.Version, j.SubmitTime = nil, nil, nil, nil, nil
	j.CreateIndex, j.ModifyIndex, j.JobModifyIndex, j.Stop, j.VersionTag = nil, nil, nil, nil, nil
	j.NomadTokenID = nil
	switch {
	case p.Datacenter != "":
		j.Datacenters = []string{p.Datacenter}
	case len(o.cfg.Datacenters) > 0:
		j.Datacenters = slices.Clone(o.cfg.Datacenters)
	}

	// The group of the policy's driver; the default group (count > 0)
	// when the policy names no Nomad driver.
	var group *api.TaskGroup
	driver := p.Driver
	if driver == "process" || driver == "directory" {
		driver = ""
	}
	for _, tg := range j.TaskGroups {
		t := agentTask(tg)
		if t == nil {
			continue
		}
		if driver == "" && tg.Count != nil && *tg.Count > 0 || driver != "" && t.Driver == driver {
			group = tg
			break
		}
	}
	if group == nil {
		if driver == "" {
			return nil, "", fmt.Errorf("the Nomad job %q has no group with a task %q and count > 0", *tmpl.ID, TaskName)
		}
		return nil, "", fmt.Errorf("the Nomad job %q has no group whose %q task uses the %q driver that policy %q asks for", *tmpl.ID, TaskName, driver, policyName(p))
	}
	group.Count = new(1)
	j.TaskGroups = []*api.TaskGroup{group}
	t := agentTask(group)
	if t.Resources == nil {
		t.Resources = &api.Resources{}
	}
	if cpu := o.cpuMHz(p); cpu > 0 {
		t.Resources.CPU = new(cpu)
	}
	if p.MemoryMB > 0 {
		t.Resources.MemoryMB = new(p.MemoryMB)
		t.Resources.MemoryMaxMB = nil
	}
	if p.MemoryMaxMB > p.MemoryMB {
		t.Resources.MemoryMaxMB = new(p.MemoryMaxMB)
	}
	// Nomad refuses a memory_max below memory. A policy that names only a
	// limit lower than the job's memory: that limit is the memory, hard.
	if m, mm := t.Resources.MemoryMB, t.Resources.MemoryMaxMB; m != nil && mm != nil && *mm > 0 && *mm < *m {
		if p.MemoryMB <= 0 && p.MemoryMaxMB > 0 {
			t.Resources.MemoryMB = new(p.MemoryMaxMB)
		}
		t.Resources.MemoryMaxMB = nil
	}
	// Of Nomad's drivers only docker limits processes (pids_limit); exec
	// has no such setting and refuses unknown ones at start.
	if t.Driver == "docker" && p.Pids > 0 {
		if t.Config == nil {
			t.Config = map[string]any{}
		}
		t.Config["pids_limit"] = p.Pids
	}
	if j.Meta == nil {
		j.Meta = map[string]string{}
	}
	if p.StorageMB > 0 {
		j.Meta[JobMetaStorageLimit] = strconv.FormatInt(int64(p.StorageMB)<<20, 10)
	}
	j.Meta[jobMetaPolicy] = policyName(p)
	mod := uint64(0)
	if tmpl.JobModifyIndex != nil {
		mod = *tmpl.JobModifyIndex
	}
	j.Meta[jobMetaTemplate] = fmt.Sprintf("%s@%d", *tmpl.ID, mod)
	delete(j.Meta, jobMetaHash)
	b, err := json.Marshal(j)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(b)
	hash := hex.EncodeToString(sum[:8])
	j.Meta[jobMetaHash] = hash
	return j, hash, nil
}

func cloneJob(j *api.Job) *api.Job {
	b, err := json.Marshal(j)
	if err != nil {
		panic(err) // an api.Job always marshals
	}
	var out api.Job
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return &out
}
