package agent

import (
	"testing"
	"time"
)

func TestLogLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := &logLimiter{every: 10 * time.Second, now: func() time.Time { return now }}
	if ok, n := l.allow(); !ok || n != 0 {
		t.Fatalf("first line: %v %d", ok, n)
	}
	for i := 0; i < 5; i++ {
		now = now.Add(time.Second)
		if ok, _ := l.allow(); ok {
			t.Fatalf("line %d within the interval allowed", i)
		}
	}
	now = now.Add(5 * time.Second)
	if ok, n := l.allow(); !ok || n != 5 {
		t.Fatalf("after the interval: %v, %d held back; want true, 5", ok, n)
	}
}
