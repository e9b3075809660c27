package agent

import (
	"testing"
	"time"
)

func TestActivityTerminalInput(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a := &activity{now: func() time.Time { return now }}
	a.input()
	if s := a.snapshot(); s.TerminalInputs != 0 || !s.LastTerminalInput.IsZero() || !s.LastInput.Equal(now) {
		t.Fatalf("after editor input: %+v", s)
	}
	now = now.Add(time.Minute)
	a.terminalInput()
	a.terminalInput()
	s := a.snapshot()
	if s.TerminalInputs != 2 || !s.LastTerminalInput.Equal(now) || !s.LastInput.Equal(now) || !s.LastActive.Equal(now) {
		t.Fatalf("after terminal input: %+v", s)
	}
}
