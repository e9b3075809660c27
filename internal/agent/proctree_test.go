package agent

import (
	"fmt"
	"math"
	"os"
	"testing"
	"testing/fstest"
	"time"
)

// fakeProc is a /proc with the processes given.
type fakeProc map[int]fakeProcess

type fakeProcess struct {
	ppid                  int
	comm                  string
	start                 uint64
	self, children, pages uint64
}

func (p fakeProc) fs() fstest.MapFS {
	m := fstest.MapFS{
		"self":    &fstest.MapFile{Mode: 0o777},
		"cpuinfo": &fstest.MapFile{Data: []byte("processor: 0\n")},
	}
	for pid, q := range p {
		comm := q.comm
		if comm == "" {
			comm = "node"
		}
		// Fields 3 to 24 of proc(5); utime and stime split the own time,
		// cutime and cstime the children's.
		line := fmt.Sprintf("%d (%s) S %d %d %d 0 -1 4194304 100 0 0 0 %d %d %d %d 20 0 11 0 %d 1000000 %d 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
			pid, comm, q.ppid, pid, pid, q.self-q.self/3, q.self/3, q.children-q.children/2, q.children/2, q.start, q.pages)
		m[fmt.Sprint(pid)+"/stat"] = &fstest.MapFile{Data: []byte(line)}
	}
	return m
}

func TestParseStat(t *testing.T) {
	line := "4242 (my (weird) prog) R 1 4242 4242 0 -1 4194560 1 0 0 0 150 50 7 3 20 0 1 0 987654 100 2560 18446744073709551615\n"
	p, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	want := procStat{pid: 4242, ppid: 1, start: 987654, self: 200, children: 10, rssPages: 2560}
	if p != want {
		t.Errorf("parseStat = %+v, want %+v", p, want)
	}
	for _, bad := range []string{"", "12 (x", "x (y) R 1", "12 (y) R 1 2 3"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) accepted", bad)
		}
	}
}

func TestTreeSampler(t *testing.T) {
	const page = 4096
	procs := fakeProc{
		1:   {ppid: 0, comm: "init", start: 1, self: 99999},
		100: {ppid: 1, comm: "code-server", start: 500, self: 100, pages: 1000},
		101: {ppid: 100, comm: "ptyHost", start: 510, self: 50, pages: 500},
		102: {ppid: 101, comm: "bash", start: 520, self: 10, pages: 100},
		200: {ppid: 1, comm: "someone else", start: 600, self: 5000, pages: 99999},
	}
	s := newTreeSampler(procs.fs(), page)
	step := func(what string, wantUsed float64, wantComparable bool) treeSample {
		t.Helper()
		got, err := s.sample(100)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got.Comparable != wantComparable || math.Abs(got.Used-wantUsed) > 1e-9 {
			t.Fatalf("%s: used %.2fs comparable %v, want %.2fs %v", what, got.Used, got.Comparable, wantUsed, wantComparable)
		}
		return got
	}

	first := step("first sample", 1.60, false)
	if first.Procs != 3 || first.RSSBytes != 1600*page {
		t.Errorf("first sample: %d processes, %d bytes resident; want 3 and %d (not the unrelated one)", first.Procs, first.RSSBytes, 1600*page)
	}
	step("nothing happened", 0, true)

	// The shell runs a busy command for 3 s.
	procs[103] = fakeProcess{ppid: 102, comm: "yes", start: 700, self: 300}
	s.proc = procs.fs()
	step("a new busy child", 3.00, true)
	procs[103] = fakeProcess{ppid: 102, comm: "yes", start: 700, self: 500}
	s.proc = procs.fs()
	step("it keeps going", 2.00, true)

	// It exits after 0.5 s more; the shell reaps it, so its 5.5 s land in
	// the shell's children time. Only the last 0.5 s are new.
	delete(procs, 103)
	procs[102] = fakeProcess{ppid: 101, comm: "bash", start: 520, self: 10, children: 550, pages: 100}
	s.proc = procs.fs()
	step("the child was reaped", 0.50, true)

	// A pid is reused by another process: its whole time is new.
	procs[102] = fakeProcess{ppid: 101, comm: "bash", start: 900, self: 20, pages: 100}
	s.proc = procs.fs()
	got := step("a reused pid", 0.20, true)
	if want := 1.60 + 3 + 2 + 0.5 + 0.2; math.Abs(got.CPUSeconds-want) > 1e-9 {
		t.Errorf("CPUSeconds = %.2f, want %.2f", got.CPUSeconds, want)
	}

	// code-server restarted: a new tree, not comparable with the old one;
	// the total keeps growing.
	procs[300] = fakeProcess{ppid: 1, comm: "code-server", start: 1000, self: 80}
	s.proc = procs.fs()
	again, err := s.sample(300)
	if err != nil {
		t.Fatal(err)
	}
	if again.Comparable || again.CPUSeconds < got.CPUSeconds+0.8-1e-9 {
		t.Errorf("after a restart: %+v", again)
	}
	if _, err := s.sample(4444); err == nil {
		t.Error("sampling a missing process succeeded")
	}
}

// TestTreeSamplerRealProc measures this test process in the real /proc.
func TestTreeSamplerRealProc(t *testing.T) {
	s := newTreeSampler(os.DirFS("/proc"), os.Getpagesize())
	first, err := s.sample(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if first.RSSBytes <= 0 || first.Procs < 1 {
		t.Fatalf("first sample of this process: %+v", first)
	}
	// Spin until the samples show 0.2 s of CPU: however loaded the
	// machine, this process gets that much within the guard.
	deadline := time.Now().Add(guard)
	for {
		spin := time.Now().Add(50 * time.Millisecond)
		for n := 0; time.Now().Before(spin); n++ {
			_ = n * n
		}
		next, err := s.sample(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if !next.Comparable {
			t.Fatalf("a second sample of the same process is not comparable: %+v", next)
		}
		if next.CPUSeconds-first.CPUSeconds >= 0.2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a spinning process: %.2f s of CPU counted", next.CPUSeconds-first.CPUSeconds)
		}
	}
}

func TestActivityCPUThreshold(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	a := &activity{now: func() time.Time { return now }}
	cases := []struct {
		used       float64
		comparable bool
		busy       bool
	}{
		{used: 5, comparable: false, busy: false},   // the first sample of a tree
		{used: 0.05, comparable: true, busy: false}, // 1% of one CPU over 5 s
		{used: 0.15, comparable: true, busy: true},  // 3%
	}
	for i, tc := range cases {
		now = now.Add(5 * time.Second)
		before := a.snapshot().LastCPU
		a.measured(treeSample{Used: tc.used, Comparable: tc.comparable, CPUSeconds: float64(i)}, now, 5*time.Second, busyShare)
		moved := !a.snapshot().LastCPU.Equal(before)
		if moved != tc.busy {
			t.Errorf("%.2fs in 5s (comparable %v): LastCPU moved %v, want %v", tc.used, tc.comparable, moved, tc.busy)
		}
	}
	a.input()
	act := a.snapshot()
	if !act.LastActive.Equal(now) || !act.LastInput.Equal(now) || act.CPUSeconds != 2 {
		t.Errorf("snapshot %+v", act)
	}
}
