// Package agentapi is the protocol between the gateway and `codehub agent`,
// the process that is one user's workspace: the header that carries the
// workspace secret, the agent's own endpoints and what they answer.
package agentapi

import "time"

// SecretHeader carries the per-workspace secret on every request the
// gateway sends an agent. The agent refuses requests without it, so that no
// one reaches a workspace except through the gateway.
const SecretHeader = "X-Codehub-Workspace-Secret"

// ControlHeader carries the same secret on the gateway's own calls to the
// agent's endpoints (PathHealth...). The proxy never sends it, and strips it
// from what browsers send: a person's traffic, which carries SecretHeader
// only, can never reach the agent's control endpoints.
const ControlHeader = "X-Codehub-Agent-Control"

// Paths of the agent's own endpoints; everything else is the IDE.
const (
	PathHealth   = "/_agent/health"   // GET: Health
	PathActivity = "/_agent/activity" // GET: Activity
	PathUsage    = "/_agent/usage"    // GET: Usage
	PathStop     = "/_agent/stop"     // POST: stop the IDE cleanly and exit
)

// ReadyPrefix starts the one line an agent prints on stdout once it
// listens: "CODEHUB-AGENT-READY <host:port>".
const ReadyPrefix = "CODEHUB-AGENT-READY "

// Health is the agent's state.
type Health struct {
	// Status is "starting", "running" (the IDE answers) or "stopping".
	Status string `json:"status"`
	// IDE is the state of the supervised code-server.
	IDE struct {
		State    string    `json:"state"`
		PID      int       `json:"pid,omitempty"`
		Restarts int       `json:"restarts"`
		Since    time.Time `json:"since"`
	} `json:"ide"`
	StartedAt time.Time `json:"startedAt"`
	Version   string    `json:"version"`
}

// Activity is what the agent saw the user do. Only real work counts: input
// sent by the editor (not its keep-alive traffic), terminal output, and CPU
// used by the IDE's processes.
type Activity struct {
	// LastActive is the latest of the times below (zero: never).
	LastActive time.Time `json:"lastActive"`
	// LastInput is the last editor message that was not a keep-alive.
	LastInput time.Time `json:"lastInput"`
	// LastCPU is the last time the IDE's processes used more than a
	// trickle of CPU.
	LastCPU time.Time `json:"lastCpu"`
	// Connections is the number of editor WebSockets open.
	Connections int `json:"connections"`
	// CPUSeconds is the CPU time used by the IDE's processes so far.
	CPUSeconds float64 `json:"cpuSeconds"`
	// LastTerminalInput is the last input typed into a terminal, and
	// TerminalInputs the number of such messages since the agent started.
	LastTerminalInput time.Time `json:"lastTerminalInput,omitzero"`
	TerminalInputs    int64     `json:"terminalInputs"`
}

// Usage is what the workspace consumes.
type Usage struct {
	// StorageBytes used in the user's home, and the limit (0: none).
	StorageBytes      int64 `json:"storageBytes"`
	StorageLimitBytes int64 `json:"storageLimitBytes"`
	// StorageCapacityBytes is what the home can hold for its user, used
	// and available together, and StorageAvailableBytes what they can
	// still write, when the home is a file system of its own (a quota'd
	// image or volume); 0 when it is a directory of a larger one.
	StorageCapacityBytes  int64 `json:"storageCapacityBytes,omitempty"`
	StorageAvailableBytes int64 `json:"storageAvailableBytes,omitempty"`
	// StorageFull says that writes fail for lack of room ("No space left
	// on device"): too little space or no inode left.
	StorageFull bool `json:"storageFull,omitempty"`
	// MemoryBytes resident in the IDE's processes.
	MemoryBytes int64 `json:"memoryBytes"`
	// CPUSeconds used by the IDE's processes so far.
	CPUSeconds float64 `json:"cpuSeconds"`
	// OOMKills counts the workspace's processes the kernel killed for
	// lack of memory since it started. The agent does not see its
	// cgroup's counter; the gateway fills this in from the orchestrator
	// where it can (workspace.OOMCounter).
	OOMKills int64 `json:"oomKills,omitempty"`
}
