package agent

import (
	"context"
	"sync"
	"time"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/hashicorp/go-hclog"
)

// busyShare is the default share of one CPU above which the IDE's
// processes count as working. An idle code-server with an open workbench
// stays below it (about 0.5%) unless VS Code's port finder scans /proc,
// which on a busy machine alone takes more (see Config.BusyCPU).
const busyShare = 0.02

// activity records what the user did and what the IDE's processes use.
type activity struct {
	now func() time.Time

	mu         sync.Mutex
	lastInput  time.Time
	lastTerm   time.Time // last input typed into a terminal
	termInputs int64
	lastCPU    time.Time
	cpuSeconds float64
	rssBytes   int64
}

// input records a message from the browser that was real input.
func (a *activity) input() {
	t := a.now()
	a.mu.Lock()
	if t.After(a.lastInput) {
		a.lastInput = t
	}
	a.mu.Unlock()
}

// terminalInput records input typed into a terminal (also input).
func (a *activity) terminalInput() {
	t := a.now()
	a.mu.Lock()
	if t.After(a.lastInput) {
		a.lastInput = t
	}
	if t.After(a.lastTerm) {
		a.lastTerm = t
	}
	a.termInputs++
	a.mu.Unlock()
}

// measured records one sample of the IDE's process tree taken at t, elapsed
// after the previous one; the tree was busy if it used more than busy of
// one CPU meanwhile.
func (a *activity) measured(s treeSample, t time.Time, elapsed time.Duration, busy float64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cpuSeconds, a.rssBytes = s.CPUSeconds, s.RSSBytes
	if s.Comparable && elapsed > 0 && s.Used > busy*elapsed.Seconds() {
		a.lastCPU = t
	}
}

// snapshot returns the activity, Connections aside.
func (a *activity) snapshot() agentapi.Activity {
	a.mu.Lock()
	defer a.mu.Unlock()
	act := agentapi.Activity{LastInput: a.lastInput, LastCPU: a.lastCPU, CPUSeconds: a.cpuSeconds,
		LastTerminalInput: a.lastTerm, TerminalInputs: a.termInputs}
	act.LastActive = act.LastInput
	if act.LastCPU.After(act.LastActive) {
		act.LastActive = act.LastCPU
	}
	return act
}

// usage returns the memory and CPU time of the IDE's processes.
func (a *activity) usage() (rss int64, cpuSeconds float64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rssBytes, a.cpuSeconds
}

// sampleCPU measures the process tree of pid() every interval until ctx
// ends. pid returns 0 while there is no process.
func (a *activity) sampleCPU(ctx context.Context, s *treeSampler, pid func() int, interval time.Duration, busy float64, log hclog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var last time.Time
	for {
		if root := pid(); root == 0 {
			s.reset()
		} else if smp, err := s.sample(root); err != nil {
			log.Debug("sample the IDE's processes", "pid", root, "error", err)
		} else {
			now := a.now()
			a.measured(smp, now, now.Sub(last), busy)
			log.Trace("IDE processes", "pid", root, "procs", smp.Procs, "cpu_used", smp.Used, "rss", smp.RSSBytes)
			last = now
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
