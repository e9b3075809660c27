package workspace_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/workspace"
)

// TestOnTerminal: typing into a terminal is reported once per use (input
// after a pause of TerminalGap), with the number of inputs since the last
// report; continued typing is not reported again.
func TestOnTerminal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	type report struct {
		at     time.Time
		inputs int64
	}
	var mu sync.Mutex
	var got []report
	cfg.OnTerminal = func(w *workspace.Workspace, at time.Time, inputs int64) {
		if w.UserID != "mia" {
			t.Errorf("OnTerminal for %q", w.UserID)
		}
		mu.Lock()
		got = append(got, report{at, inputs})
		mu.Unlock()
	}
	reports := func() []report {
		mu.Lock()
		defer mu.Unlock()
		return append([]report(nil), got...)
	}
	m := e.manager(cfg)
	e.run(m)
	w := ensure(t, m, "mia")
	agent := e.orch.agent(w.ID)
	t0 := e.clock.Now()

	// Idle rounds run every few milliseconds: wait for a few of them.
	rounds := func() { time.Sleep(100 * time.Millisecond) }

	rounds()
	if r := reports(); len(r) != 0 {
		t.Fatalf("reports before any terminal input: %+v", r)
	}
	agent.typeInTerminal(t0, 3)
	waitFor(t, "the first report", func() bool { return len(reports()) == 1 })
	if r := reports()[0]; !r.at.Equal(t0) || r.inputs != 3 {
		t.Errorf("first report: %+v, want 3 inputs at t0", r)
	}

	// Typing on, without a pause: no new report.
	for i := 1; i <= 5; i++ {
		e.clock.Advance(time.Minute)
		agent.typeInTerminal(t0.Add(time.Duration(i)*time.Minute), 2)
		rounds()
	}
	if r := reports(); len(r) != 1 {
		t.Fatalf("continued typing reported again: %+v", r)
	}

	// A pause longer than TerminalGap, then typing: a new use.
	e.clock.Advance(workspace.TerminalGap + time.Minute)
	later := e.clock.Now()
	agent.typeInTerminal(later, 1)
	waitFor(t, "the second report", func() bool { return len(reports()) == 2 })
	if r := reports()[1]; !r.at.Equal(later) || r.inputs != 11 {
		t.Errorf("second report: %+v, want 11 inputs (10 unreported and 1 new) at %s", r, later)
	}
}

// TestSessionReachesTheOrchestrator: the session a start is made for is
// in the Spec, cut to a short prefix.
func TestSessionReachesTheOrchestrator(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.manager(e.config())
	e.run(m)
	ctx := workspace.WithSession(context.Background(), "0123456789abcdefSECRETISH")
	if _, err := m.Ensure(ctx, "noa"); err != nil {
		t.Fatal(err)
	}
	e.orch.mu.Lock()
	starts := append([]startCall(nil), e.orch.starts...)
	e.orch.mu.Unlock()
	if len(starts) != 1 {
		t.Fatalf("starts: %+v", starts)
	}
	if got := starts[0].SessionID; got != "0123456789ab" {
		t.Errorf("Spec.SessionID = %q, want the 12-character prefix", got)
	}
}
