// Package nomad runs workspaces on HashiCorp Nomad. A workspace is one
// dispatched instance of a parameterized batch job (jobs/workspace.nomad.hcl,
// or jobs/warm-pool.nomad.hcl for warm workspaces) whose task runs
// `codehub agent`; the job registers the agent in Consul, where the
// gateway's discovery finds it.
//
// Dispatch meta says who and what (user, workspace, policy and its
// limits); the per-workspace secret is the dispatch payload, which Nomad
// writes into the task's local/ directory and the job's template copies,
// mode 0600, into secrets/ for the agent's --secret-file. The secret is
// never in meta, which every holder of read-job sees.
//
// Nomad cannot take resources from dispatch meta (the scheduler needs them
// before anything is interpolated), so each isolation policy gets its own
// parameterized job, derived from the operator's job and registered by
// this package on first use: "<job>-<policy>", with the policy's CPU,
// memory, memory_max, pids and storage limit and datacenter, and only the
// task group of the policy's driver (docker or exec). A derived job is
// registered again only when the policy or the operator's job changed.
//
// Every wait is a blocking query (WaitIndex/WaitTime), never a polling
// loop: Start follows the dispatched job's evaluations and allocation and
// turns what Nomad says (queued for capacity, unplaceable, downloading the
// image, driver failures, OOM) into phrases for the person waiting and
// into clear errors; those a new start would meet again are marked
// workspace.ErrCannotStart. A workspace whose agent dies is brought back
// in place by its job's restart policy, and Recover waits for that.
package nomad

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/codehub-dev/codehub/internal/workspace"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/api"
)

// OrchestratorName is the orchestrator's name in the workspace registry.
const OrchestratorName = "nomad"

// Errors of Start, for errors.Is; their messages are meant for the person
// whose workspace did not start.
var (
	// ErrJobNotRegistered: the operator's parameterized job is missing.
	ErrJobNotRegistered = errors.New("the workspace job is not registered in Nomad")
	// ErrUnplaceable: no node could ever run the workspace as it is asked
	// (no node in its datacenter, no node with its driver, constraints).
	ErrUnplaceable = errors.New("no Nomad node can run the workspace")
	// ErrNoCapacity: nodes could run it but were full for the whole wait.
	ErrNoCapacity = errors.New("no Nomad node had room for the workspace")
	// ErrImagePull: the driver could not pull the workspace's image.
	ErrImagePull = errors.New("the workspace image could not be pulled")
	// ErrTaskFailed: the agent's task failed or ended while starting.
	ErrTaskFailed = errors.New("the workspace failed to start")
)

// cannotStartError marks an error of Start as one a new start would meet
// again (workspace.ErrCannotStart), keeping its message and cause.
type cannotStartError struct{ err error }

func (e *cannotStartError) Error() string   { return e.err.Error() }
func (e *cannotStartError) Unwrap() []error { return []error{e.err, workspace.ErrCannotStart} }

// cannotStart marks err (nil stays nil): the job, the cluster or the
// image must change before the workspace can start.
func cannotStart(err error) error {
	if err == nil {
		return nil
	}
	return &cannotStartError{err}
}

// Config configures an Orchestrator.
type Config struct {
	// Client talks to Nomad: its api.Config carries the address, TLS and,
	// by default, the region, namespace and ACL token.
	Client *api.Client
	// Namespace and Region of every call; empty: the Client's.
	Namespace, Region string
	// Token is the ACL token of every call; empty: the Client's
	// (NOMAD_TOKEN). It needs, in Namespace, submit-job (to register the
	// per-policy jobs), dispatch-job, read-job and list-jobs; node:read
	// lets Launched name the node's datacenter.
	Token string
	// Job is the parameterized workspace job (default
	// "codehub-workspace"); WarmPoolJob the warm workspaces' (default:
	// Job).
	Job, WarmPoolJob string
	// Datacenters run workspaces whose policy names none; empty: the
	// job's own.
	Datacenters []string
	// CPUMHzPerCore converts a policy's CPU percent into Nomad's MHz
	// (default 1000: 100% is 1000 MHz).
	CPUMHzPerCore int
	// StopTimeout bounds how long Stop waits for the allocations to end
	// (default 30s).
	StopTimeout time.Duration
	// JobCacheTTL is how long the operator's job is trusted before it is
	// read again (default 30s).
	JobCacheTTL time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Orchestrator is the Nomad workspace.Orchestrator. Safe for concurrent
// use.
type Orchestrator struct {
	cfg    Config
	log    hclog.Logger
	jobs   *api.Jobs
	allocs *api.Allocations
	evals  *api.Evaluations
	nodes  *api.Nodes

	mu         sync.Mutex
	templates  map[string]cachedJob // operator's jobs, by ID
	registered map[string]string    // derived job ID -> hash registered
	nodeDCs    map[string]string    // node ID -> datacenter
}

type cachedJob struct {
	job *api.Job
	at  time.Time
}

var _ workspace.Orchestrator = (*Orchestrator)(nil)

// New returns an Orchestrator.
func New(cfg Config, log hclog.Logger) *Orchestrator {
	if cfg.Job == "" {
		cfg.Job = "codehub-workspace"
	}
	if cfg.WarmPoolJob == "" {
		cfg.WarmPoolJob = cfg.Job
	}
	if cfg.CPUMHzPerCore <= 0 {
		cfg.CPUMHzPerCore = 1000
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 30 * time.Second
	}
	if cfg.JobCacheTTL <= 0 {
		cfg.JobCacheTTL = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Orchestrator{
		cfg: cfg, log: log,
		jobs: cfg.Client.Jobs(), allocs: cfg.Client.Allocations(), evals: cfg.Client.Evaluations(), nodes: cfg.Client.Nodes(),
		templates: map[string]cachedJob{}, registered: map[string]string{}, nodeDCs: map[string]string{},
	}
}

// Name implements workspace.Orchestrator.
func (o *Orchestrator) Name() string { return OrchestratorName }

// query returns the options of a read; waitIndex > 0 makes it a blocking
// query that returns when Nomad's index passes it or wait elapses.
func (o *Orchestrator) query(ctx context.Context, waitIndex uint64, wait time.Duration) *api.QueryOptions {
	q := &api.QueryOptions{Namespace: o.cfg.Namespace, Region: o.cfg.Region, AuthToken: o.cfg.Token, WaitIndex: waitIndex, WaitTime: wait}
	return q.WithContext(ctx)
}

func (o *Orchestrator) write(ctx context.Context, idempotencyToken string) *api.WriteOptions {
	q := &api.WriteOptions{Namespace: o.cfg.Namespace, Region: o.cfg.Region, AuthToken: o.cfg.Token, IdempotencyToken: idempotencyToken}
	return q.WithContext(ctx)
}

func (o *Orchestrator) namespace() string {
	if o.cfg.Namespace != "" {
		return o.cfg.Namespace
	}
	return "default"
}

// statusOf returns the HTTP status of a Nomad API error (0: not one).
func statusOf(err error) (int, string) {
	var ue api.UnexpectedResponseError
	if errors.As(err, &ue) {
		return ue.StatusCode(), strings.TrimSpace(ue.Body())
	}
	return 0, ""
}

func isNotFound(err error) bool {
	code, _ := statusOf(err)
	return code == 404
}

// apiError explains a failed call without burying the cause.
func apiError(op string, err error) error {
	switch code, body := statusOf(err); code {
	case 0:
		return fmt.Errorf("%s: Nomad did not answer: %w", op, err)
	case 401, 403:
		return fmt.Errorf("%s: Nomad refused the gateway's token (%s); check nomad.token and its ACL policy", op, body)
	default:
		return fmt.Errorf("%s: Nomad answered %d: %s", op, code, body)
	}
}

// retryable reports whether a write may be sent again: the request may
// not have arrived, or Nomad was briefly unable to serve it.
func retryable(err error) bool {
	switch code, body := statusOf(err); code {
	case 0:
		return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
	case 429, 502, 503, 504:
		return true
	case 500:
		return strings.Contains(body, "No cluster leader") || strings.Contains(body, "rpc error")
	}
	return false
}

// userIDRE is what a user ID must look like to be interpolated into the
// job (the name of the user's volume).
var userIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$`)

// Start implements workspace.Orchestrator: it registers the policy's job
// if needed, dispatches it with the workspace's meta and secret, and waits
// (blocking queries) until the agent's task runs. A workspace without a
// user is a warm one, dispatched from WarmPoolJob. On failure nothing is
// left queued or running.
func (o *Orchestrator) Start(ctx context.Context, spec workspace.Spec, progress func(string)) (workspace.Launched, error) {
	w := spec.Workspace
	if w == nil || w.ID == "" {
		return workspace.Launched{}, errors.New("nomad: start: no workspace")
	}
	if len(w.Secret) < 32 {
		return workspace.Launched{}, errors.New("nomad: start: the workspace has no secret of at least 32 bytes")
	}
	if w.UserID != "" && (!userIDRE.MatchString(w.UserID) || strings.Contains(w.UserID, "..")) {
		return workspace.Launched{}, fmt.Errorf("nomad: start: user id %q cannot name a Nomad volume", w.UserID)
	}
	p := newProgress(progress)
	template := o.cfg.Job
	if w.UserID == "" {
		template = o.cfg.WarmPoolJob
	}
	p.say("Preparing your workspace on Nomad")
	jobID, datacenters, err := o.policyJob(ctx, template, spec.Policy)
	if err != nil {
		return workspace.Launched{}, err
	}
	resp, err := o.dispatch(ctx, jobID, o.dispatchMeta(spec), []byte(w.Secret), idempotencyToken(w), w.ID)
	if err != nil {
		return workspace.Launched{}, err
	}
	child := resp.DispatchedJobID
	o.log.Debug("dispatched", "workspace", w.ID, "job", child, "eval", resp.EvalID)
	alloc, err := o.waitRunning(ctx, child, datacenters, resp, p)
	var addr string
	if err == nil {
		addr, err = allocAddress(alloc, PortLabel)
	}
	if err != nil {
		p.say(sentence(err))
		// Nothing may start later unobserved: a blocked evaluation
		// would place the workspace once capacity frees.
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, _, derr := o.jobs.Deregister(child, true, o.write(cleanup, "")); derr != nil && !isNotFound(derr) {
			o.log.Warn("could not stop a workspace job that failed to start", "job", child, "error", derr)
		}
		return workspace.Launched{}, err
	}
	return workspace.Launched{
		Address:    addr,
		ExternalID: child,
		Node:       alloc.NodeName,
		Meta: map[string]string{
			MetaAllocID:    alloc.ID,
			MetaJobID:      child,
			MetaDatacenter: o.datacenter(ctx, alloc),
			MetaNamespace:  alloc.Namespace,
		},
	}, nil
}

// Keys of Launched.Meta.
const (
	MetaAllocID    = "alloc_id"
	MetaJobID      = "job_id"
	MetaDatacenter = "datacenter"
	MetaNamespace  = "namespace"
)

// idempotencyToken names one start of one workspace: the manager stamps
// StartedAt on every start, so a retried dispatch of the same start
// returns the job dispatched the first time instead of a second one.
func idempotencyToken(w *workspace.Workspace) string {
	return fmt.Sprintf("codehub:%s:%d:%d", w.ID, w.Restarts, w.StartedAt.UnixNano())
}

// dispatch dispatches jobID, retrying what may not have arrived with the
// same idempotency token.
func (o *Orchestrator) dispatch(ctx context.Context, jobID string, meta map[string]string, payload []byte, token, prefix string) (*api.JobDispatchResponse, error) {
	delay := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		resp, _, err := o.jobs.DispatchOpts(&api.DispatchOptions{
			JobID: jobID, Meta: meta, Payload: payload, IdPrefixTemplate: prefix,
		}, o.write(ctx, token))
		if err == nil {
			return resp, nil
		}
		if attempt == 3 || !retryable(err) || ctx.Err() != nil {
			return nil, apiError(fmt.Sprintf("dispatch the Nomad job %q", jobID), err)
		}
		o.log.Warn("dispatch failed; retrying with the same idempotency token", "job", jobID, "attempt", attempt, "error", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, apiError(fmt.Sprintf("dispatch the Nomad job %q", jobID), err)
		case <-t.C:
		}
		delay *= 2
	}
}

// datacenter is the datacenter of the allocation's node: the job's only
// datacenter, else the node's (read once per node, with node:read).
func (o *Orchestrator) datacenter(ctx context.Context, a *api.Allocation) string {
	if a.Job != nil && len(a.Job.Datacenters) == 1 && !strings.ContainsAny(a.Job.Datacenters[0], "*?[") {
		return a.Job.Datacenters[0]
	}
	o.mu.Lock()
	dc, ok := o.nodeDCs[a.NodeID]
	o.mu.Unlock()
	if ok {
		return dc
	}
	n, _, err := o.nodes.Info(a.NodeID, o.query(ctx, 0, 0))
	if err != nil {
		o.log.Debug("cannot read the workspace's node", "node", a.NodeID, "error", err)
		return ""
	}
	o.mu.Lock()
	o.nodeDCs[a.NodeID] = n.Datacenter
	o.mu.Unlock()
	return n.Datacenter
}

// allocAddress is where the allocation's port label is reachable: the
// host address and port Nomad gave it.
func allocAddress(a *api.Allocation, label string) (string, error) {
	if r := a.AllocatedResources; r != nil {
		for _, p := range r.Shared.Ports {
			if p.Label == label && p.HostIP != "" && p.Value > 0 {
				return net.JoinHostPort(p.HostIP, strconv.Itoa(p.Value)), nil
			}
		}
		nets := slices.Clone(r.Shared.Networks)
		for _, t := range r.Tasks {
			nets = append(nets, t.Networks...)
		}
		for _, n := range nets {
			for _, p := range append(slices.Clone(n.DynamicPorts), n.ReservedPorts...) {
				if p.Label == label && n.IP != "" && p.Value > 0 {
					return net.JoinHostPort(n.IP, strconv.Itoa(p.Value)), nil
				}
			}
		}
	}
	return "", fmt.Errorf("%w: its allocation has no %q port; the job's group needs network { port %q {} }", ErrTaskFailed, label, label)
}

// Stop implements workspace.Orchestrator: the dispatched job is
// deregistered and purged, and Stop waits (blocking queries, at most
// StopTimeout) until its allocations have ended. The user's files live on
// their volume and stay. A workspace whose start failed before its job
// was recorded is found by its ID in the dispatched jobs' names.
func (o *Orchestrator) Stop(ctx context.Context, w *workspace.Workspace) error {
	if w.ExternalID != "" {
		return o.StopJob(ctx, w.ExternalID)
	}
	ids, err := o.dispatchedOf(ctx, w.ID)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		errs = append(errs, o.StopJob(ctx, id))
	}
	return errors.Join(errs...)
}

// StopJob deregisters and purges a dispatched workspace job and waits
// until its allocations have ended; a job that does not exist is stopped.
func (o *Orchestrator) StopJob(ctx context.Context, jobID string) error {
	if _, _, err := o.jobs.Deregister(jobID, true, o.write(ctx, "")); err != nil && !isNotFound(err) {
		return apiError(fmt.Sprintf("stop the Nomad job %q", jobID), err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.cfg.StopTimeout)
	defer cancel()
	var index uint64
	for {
		stubs, qm, err := o.jobs.Allocations(jobID, true, o.query(ctx, index, o.cfg.StopTimeout))
		switch {
		case isNotFound(err):
			return nil
		case err != nil && ctx.Err() != nil:
			return fmt.Errorf("the Nomad job %q did not stop within %s", jobID, o.cfg.StopTimeout)
		case err != nil:
			return apiError(fmt.Sprintf("wait for the Nomad job %q to stop", jobID), err)
		}
		running := 0
		for _, s := range stubs {
			if !terminal(s.ClientStatus) {
				running++
			}
		}
		if running == 0 {
			return nil
		}
		index = qm.LastIndex
	}
}

func terminal(clientStatus string) bool {
	switch clientStatus {
	case api.AllocClientStatusComplete, api.AllocClientStatusFailed, api.AllocClientStatusLost:
		return true
	}
	return false
}

// Alive implements workspace.Orchestrator: the workspace's allocation is
// running and meant to. An allocation Nomad moved to another node is not
// alive: its address changed, and the manager restarts the workspace.
func (o *Orchestrator) Alive(ctx context.Context, w *workspace.Workspace) (bool, error) {
	if id := w.Meta[MetaAllocID]; id != "" {
		a, _, err := o.allocs.Info(id, o.query(ctx, 0, 0))
		switch {
		case isNotFound(err):
			return false, nil
		case err != nil:
			return false, apiError("read the workspace's allocation", err)
		}
		return a.ClientStatus == api.AllocClientStatusRunning && a.DesiredStatus == api.AllocDesiredStatusRun, nil
	}
	if w.ExternalID == "" {
		return false, nil
	}
	stubs, _, err := o.jobs.Allocations(w.ExternalID, true, o.query(ctx, 0, 0))
	switch {
	case isNotFound(err):
		return false, nil
	case err != nil:
		return false, apiError("read the workspace's allocations", err)
	}
	for _, s := range stubs {
		if s.ClientStatus == api.AllocClientStatusRunning && s.DesiredStatus == api.AllocDesiredStatusRun {
			return true, nil
		}
	}
	return false, nil
}

// Assign implements workspace.Orchestrator. Nothing changes in Nomad when
// a warm workspace is claimed: a job's meta cannot change without a new
// version, which would restart the task. The gateway's registry is what
// says whose it is; in Nomad and Consul it stays the warm-pool job's
// dispatch with user_id "" and the "warm" tag, so discovery must find
// workspaces by their workspace-<id> tag, not by user.
func (o *Orchestrator) Assign(_ context.Context, w *workspace.Workspace, userID, _ string) error {
	o.log.Debug("warm workspace claimed", "workspace", w.ID, "job", w.ExternalID, "user", userID)
	return nil
}

// dispatchedOf lists the live dispatched jobs whose ID carries the
// workspace ID (Start dispatches with it as the ID prefix template).
func (o *Orchestrator) dispatchedOf(ctx context.Context, workspaceID string) ([]string, error) {
	children, err := o.children(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range children {
		if strings.Contains(c.ID, "/dispatch-"+workspaceID+"-") {
			out = append(out, c.ID)
		}
	}
	return out, nil
}

// children lists the live (not dead) dispatched children of the workspace
// and warm-pool jobs and of the jobs derived from them.
func (o *Orchestrator) children(ctx context.Context) ([]*api.JobListStub, error) {
	seen := map[string]bool{}
	var out []*api.JobListStub
	for _, prefix := range []string{o.cfg.Job, o.cfg.WarmPoolJob} {
		q := o.query(ctx, 0, 0)
		q.Prefix = prefix
		stubs, _, err := o.jobs.List(q)
		if err != nil {
			return nil, apiError("list the workspace jobs", err)
		}
		for _, s := range stubs {
			if seen[s.ID] || s.ParentID == "" || s.Status == "dead" || !o.ours(s.ParentID) {
				continue
			}
			seen[s.ID] = true
			out = append(out, s)
		}
	}
	return out, nil
}

// ours reports whether a parameterized job is one of the templates or
// derived from one.
func (o *Orchestrator) ours(parent string) bool {
	for _, t := range []string{o.cfg.Job, o.cfg.WarmPoolJob} {
		if parent == t || strings.HasPrefix(parent, t+"-") {
			return true
		}
	}
	return false
}

// Reconcile returns the dispatched workspace jobs still alive in Nomad
// that known (the registry's ExternalIDs) does not have: workspaces whose
// gateway died between dispatch and recording them. The gateway stops
// them with StopJob when it starts.
func (o *Orchestrator) Reconcile(ctx context.Context, known map[string]bool) ([]string, error) {
	children, err := o.children(ctx)
	if err != nil {
		return nil, err
	}
	var orphans []string
	for _, c := range children {
		if !known[c.ID] {
			orphans = append(orphans, c.ID)
		}
	}
	sort.Strings(orphans)
	return orphans, nil
}
