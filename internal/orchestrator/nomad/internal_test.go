package nomad

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/workspace"
	"github.com/hashicorp/nomad/api"
)

func alloc(status string, events ...*api.TaskEvent) *api.Allocation {
	state := "pending"
	switch status {
	case api.AllocClientStatusRunning:
		state = "running"
	case api.AllocClientStatusComplete, api.AllocClientStatusFailed:
		state = "dead"
	}
	return &api.Allocation{
		ID: "0123456789abcdef", NodeName: "node-1", ClientStatus: status, DesiredStatus: api.AllocDesiredStatusRun,
		TaskStates: map[string]*api.TaskState{TaskName: {State: state, Events: events}},
		AllocatedResources: &api.AllocatedResources{Tasks: map[string]*api.AllocatedTaskResources{
			TaskName: {Memory: api.AllocatedMemoryResources{MemoryMB: 256, MemoryMaxMB: 512}},
		}},
	}
}

func ev(typ, msg string) *api.TaskEvent {
	return &api.TaskEvent{Type: typ, DisplayMessage: msg, Details: map[string]string{}}
}

func TestAllocState(t *testing.T) {
	oom := ev(api.TaskTerminated, `Exit Code: 137, Exit Message: "OOM Killed"`)
	oom.Details["oom_killed"] = "true"
	exit := ev(api.TaskTerminated, "Exit Code: 2")
	exit.ExitCode = 2
	killed := alloc(api.AllocClientStatusComplete, ev(api.TaskReceived, ""), ev(api.TaskKilled, "Task successfully killed"))
	killed.DesiredStatus, killed.DesiredDescription = api.AllocDesiredStatusStop, "alloc not needed due to job update"
	for _, tc := range []struct {
		name    string
		alloc   *api.Allocation
		running bool
		phase   string
		is      error
		msg     string
	}{
		{name: "running", alloc: alloc(api.AllocClientStatusRunning, ev(api.TaskStarted, "")), running: true},
		{name: "received", alloc: alloc(api.AllocClientStatusPending, ev(api.TaskReceived, "Task received by client")), phase: "Starting your workspace on node-1"},
		{name: "pulling", alloc: alloc(api.AllocClientStatusPending, ev(api.TaskReceived, ""), ev(api.TaskDriverMessage, "Downloading image")), phase: phaseImage},
		{name: "restarting", alloc: alloc(api.AllocClientStatusPending, ev(api.TaskRestarting, "Task restarting in 5s")), phase: phaseRestart},
		{name: "pull failure, unrecoverable", alloc: alloc(api.AllocClientStatusPending, ev(api.TaskDriverFailure, "Failed to pull `x:1`: manifest unknown"), ev(api.TaskNotRestarting, "Error was unrecoverable")),
			is: ErrImagePull, msg: "the workspace image could not be pulled: Failed to pull `x:1`"},
		{name: "pull failure, not yet decided", alloc: alloc(api.AllocClientStatusPending, ev(api.TaskDriverFailure, "Failed to pull `x:1`: i/o timeout")),
			phase: "Nomad is deciding whether to retry: Failed to pull `x:1`: i/o timeout"},
		{name: "pull failure, retried", alloc: alloc(api.AllocClientStatusPending, ev(api.TaskDriverFailure, "Failed to pull `x:1`: i/o timeout"), ev(api.TaskRestarting, "Task restarting in 5s")),
			phase: "Retrying: Failed to pull `x:1`: i/o timeout"},
		{name: "pull failure, retried, then pulled", alloc: alloc(api.AllocClientStatusPending, ev(api.TaskDriverFailure, "Failed to pull `x:1`: i/o timeout"), ev(api.TaskRestarting, "Task restarting in 5s"), ev(api.TaskDriverMessage, "Downloading image")),
			phase: phaseImage},
		{name: "pull failure, retried, then given up", alloc: alloc(api.AllocClientStatusPending, ev(api.TaskDriverFailure, "Failed to pull `x:1`: i/o timeout"), ev(api.TaskRestarting, "Task restarting in 5s"),
			ev(api.TaskDriverFailure, "Failed to pull `x:1`: i/o timeout"), ev(api.TaskNotRestarting, "Exceeded allowed attempts 3 in interval 10m0s and mode is \"fail\"")),
			is: ErrImagePull, msg: "i/o timeout"},
		{name: "driver failure", alloc: alloc(api.AllocClientStatusFailed, ev(api.TaskDriverFailure, "failed to create container")), is: ErrTaskFailed, msg: "its driver failed on node-1"},
		{name: "invalid", alloc: alloc(api.AllocClientStatusFailed, ev(api.TaskFailedValidation, "missing command")), is: ErrTaskFailed, msg: "is invalid for its driver: missing command"},
		{name: "oom", alloc: alloc(api.AllocClientStatusPending, oom), is: ErrTaskFailed, msg: "ran out of memory (512 MB)"},
		{name: "exited", alloc: alloc(api.AllocClientStatusFailed, exit), is: ErrTaskFailed, msg: "the agent exited with code 2 (see: nomad alloc logs -stderr 01234567 agent)"},
		{name: "stopped", alloc: killed, is: ErrTaskFailed, msg: "Nomad stopped it (alloc not needed due to job update)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var said []string
			p := newProgress(func(s string) { said = append(said, s) })
			running, err := allocState(tc.alloc, p)
			if running != tc.running {
				t.Errorf("running = %v", running)
			}
			if tc.is == nil && err != nil || tc.is != nil && (!errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.msg)) {
				t.Errorf("err = %v, want %v with %q", err, tc.is, tc.msg)
			}
			if tc.phase != "" && (len(said) == 0 || said[len(said)-1] != tc.phase) {
				t.Errorf("said %q, want %q", said, tc.phase)
			}
		})
	}
}

func TestUnplaceable(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    *api.AllocationMetric
		dcs  []string
		want string
	}{
		{"exhausted: wait", &api.AllocationMetric{NodesEvaluated: 3, NodesExhausted: 3, DimensionExhausted: map[string]int{"memory": 3}}, nil, ""},
		{"quota: wait", &api.AllocationMetric{NodesEvaluated: 3, QuotaExhausted: []string{"memory"}}, nil, ""},
		{"some filtered, some full: wait", &api.AllocationMetric{NodesEvaluated: 3, NodesFiltered: 1, NodesExhausted: 2}, nil, ""},
		{"no node in the datacenter", &api.AllocationMetric{NodesAvailable: map[string]int{"dc2": 0}}, []string{"dc2"}, "no ready node in datacenter dc2"},
		// Real Nomad names no datacenter no node is in: the job's are named.
		{"unknown datacenter", &api.AllocationMetric{NodesAvailable: map[string]int{}, NodePool: "default"}, []string{"dc-nowhere"}, "no ready node in datacenter dc-nowhere (node pool default)"},
		{"no node at all", &api.AllocationMetric{}, nil, "no ready node in the job's datacenters"},
		{"constraints", &api.AllocationMetric{NodesEvaluated: 2, NodesFiltered: 2, ConstraintFiltered: map[string]int{"missing drivers": 2}}, nil, "every node was filtered out: missing drivers (2 of 2 nodes)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unplaceable(map[string]*api.AllocationMetric{"workspace": tc.m}, tc.dcs); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAllocAddress(t *testing.T) {
	shared := &api.Allocation{AllocatedResources: &api.AllocatedResources{Shared: api.AllocatedSharedResources{
		Ports: []api.PortMapping{{Label: "other", Value: 1, HostIP: "10.0.0.1"}, {Label: "http", Value: 23456, To: 8080, HostIP: "10.0.0.2"}},
	}}}
	if got, err := allocAddress(shared, "http"); got != "10.0.0.2:23456" || err != nil {
		t.Errorf("shared ports: %q, %v", got, err)
	}
	legacy := &api.Allocation{AllocatedResources: &api.AllocatedResources{Tasks: map[string]*api.AllocatedTaskResources{
		"agent": {Networks: []*api.NetworkResource{{IP: "fd00::1", DynamicPorts: []api.Port{{Label: "http", Value: 30000}}}}},
	}}}
	if got, err := allocAddress(legacy, "http"); got != "[fd00::1]:30000" || err != nil {
		t.Errorf("task networks: %q, %v", got, err)
	}
	if _, err := allocAddress(&api.Allocation{}, "http"); !errors.Is(err, ErrTaskFailed) {
		t.Errorf("no port: %v", err)
	}
}

func TestDerive(t *testing.T) {
	o := New(Config{Client: nil, Datacenters: []string{"dc1", "dc2"}}, nil)
	tmpl := &api.Job{
		ID: new("codehub-workspace"), JobModifyIndex: new(uint64(7)), Version: new(uint64(3)),
		ParameterizedJob: &api.ParameterizedJobConfig{Payload: "required"},
		Meta:             map[string]string{JobMetaStorageLimit: "1"},
		TaskGroups: []*api.TaskGroup{
			{Name: new("workspace"), Count: new(1), Tasks: []*api.Task{{Name: TaskName, Driver: "docker", Config: map[string]any{"image": "x"}}}},
			{Name: new("workspace-exec"), Count: new(0), Tasks: []*api.Task{{Name: TaskName, Driver: "exec"}}},
		},
	}
	p := workspace.Policy{Name: "Big Team", MemoryMB: 4096, MemoryMaxMB: 8192, CPUPercent: 250, Pids: 512, StorageMB: 2048}
	j, hash, err := o.derive(tmpl, p)
	if err != nil {
		t.Fatal(err)
	}
	task := j.TaskGroups[0].Tasks[0]
	switch {
	case *j.ID != "codehub-workspace-big-team" || j.Version != nil || j.JobModifyIndex != nil:
		t.Errorf("identity: %s version %v", *j.ID, j.Version)
	case len(j.TaskGroups) != 1 || *j.TaskGroups[0].Name != "workspace" || *j.TaskGroups[0].Count != 1:
		t.Errorf("groups: %d, %s", len(j.TaskGroups), *j.TaskGroups[0].Name)
	case *task.Resources.CPU != 2500 || *task.Resources.MemoryMB != 4096 || *task.Resources.MemoryMaxMB != 8192 || task.Config["pids_limit"] != 512:
		t.Errorf("resources %+v, config %v", task.Resources, task.Config)
	case j.Meta[JobMetaStorageLimit] != "2147483648" || j.Meta[jobMetaHash] != hash || strings.Join(j.Datacenters, ",") != "dc1,dc2":
		t.Errorf("meta %v, datacenters %v", j.Meta, j.Datacenters)
	}
	if tmpl.TaskGroups[0].Tasks[0].Resources != nil || len(tmpl.TaskGroups) != 2 {
		t.Error("derive changed the template")
	}

	again, hash2, _ := o.derive(tmpl, p)
	if hash2 != hash || *again.ID != *j.ID {
		t.Error("the same policy derives another job")
	}
	p.MemoryMB = 2048
	if _, hash3, _ := o.derive(tmpl, p); hash3 == hash {
		t.Error("a changed policy derives the same hash")
	}

	// Only a limit, below the job's memory: Nomad refuses memory_max <
	// memory, so the limit becomes the (hard) memory.
	withMem := cloneJob(tmpl)
	withMem.TaskGroups[0].Tasks[0].Resources = &api.Resources{MemoryMB: new(2048), MemoryMaxMB: new(4096)}
	j, _, err = o.derive(withMem, workspace.Policy{Name: "small", MemoryMaxMB: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if r := j.TaskGroups[0].Tasks[0].Resources; *r.MemoryMB != 1024 || r.MemoryMaxMB != nil {
		t.Errorf("memory_max 1024 under memory 2048: memory %d, memory_max %v", *r.MemoryMB, r.MemoryMaxMB)
	}
	j, _, _ = o.derive(withMem, workspace.Policy{Name: "burst", MemoryMaxMB: 3072})
	if r := j.TaskGroups[0].Tasks[0].Resources; *r.MemoryMB != 2048 || *r.MemoryMaxMB != 3072 {
		t.Errorf("memory_max 3072 over memory 2048: memory %d, memory_max %v", *r.MemoryMB, r.MemoryMaxMB)
	}

	exec := workspace.Policy{Name: "exec", Driver: "exec", MemoryMB: 512, Datacenter: "dc9"}
	j, _, err = o.derive(tmpl, exec)
	if err != nil {
		t.Fatal(err)
	}
	if *j.TaskGroups[0].Name != "workspace-exec" || *j.TaskGroups[0].Count != 1 || j.TaskGroups[0].Tasks[0].Config["pids_limit"] != nil || j.Datacenters[0] != "dc9" {
		t.Errorf("exec policy: group %s count %d, datacenters %v", *j.TaskGroups[0].Name, *j.TaskGroups[0].Count, j.Datacenters)
	}
}

func TestIdempotencyToken(t *testing.T) {
	at := time.Unix(1700000000, 5)
	w := &workspace.Workspace{ID: "ws-1", StartedAt: at}
	same := &workspace.Workspace{ID: "ws-1", StartedAt: at}
	if idempotencyToken(w) != idempotencyToken(same) {
		t.Error("the same start has two tokens")
	}
	for _, other := range []*workspace.Workspace{{ID: "ws-2", StartedAt: at}, {ID: "ws-1", StartedAt: at.Add(1)}, {ID: "ws-1", StartedAt: at, Restarts: 1}} {
		if idempotencyToken(other) == idempotencyToken(w) {
			t.Errorf("%+v shares the token of another start", other)
		}
	}
}
