package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
)

// ticksPerSecond is USER_HZ, the unit of the times in /proc/<pid>/stat:
// the kernel reports them in 1/100 s on every architecture we run on,
// whatever its internal tick rate.
const ticksPerSecond = 100

// procStat is what the agent reads from one /proc/<pid>/stat.
type procStat struct {
	pid, ppid int
	start     uint64 // start time, in ticks since boot: tells a reused pid apart
	self      uint64 // utime + stime, in ticks
	children  uint64 // cutime + cstime: children that exited and were reaped
	rssPages  int64
}

// parseStat parses one /proc/<pid>/stat line. The command name (field 2)
// is in parentheses and may itself contain spaces and parentheses, so the
// fields are counted from the last ')'.
func parseStat(b []byte) (procStat, error) {
	var p procStat
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 1 || end < open {
		return p, errors.New("malformed stat line")
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return p, fmt.Errorf("pid: %w", err)
	}
	p.pid = pid
	f := bytes.Fields(b[end+1:])
	// f[0] is field 3 (state) of proc(5): field n is f[n-3].
	if len(f) < 22 {
		return p, errors.New("short stat line")
	}
	num := func(n int) uint64 {
		v, e := strconv.ParseUint(string(f[n-3]), 10, 64)
		if e != nil && err == nil {
			err = fmt.Errorf("field %d: %w", n, e)
		}
		return v
	}
	p.ppid = int(num(4))
	p.self = num(14) + num(15)
	p.children = num(16) + num(17)
	p.start = num(22)
	p.rssPages = int64(num(24))
	return p, err
}

// treeSample is one measurement of a process tree.
type treeSample struct {
	// Used is the CPU time, in seconds, the tree used since the previous
	// sample; valid only if Comparable.
	Used float64
	// Comparable is false for the first sample of a tree (a new root: the
	// IDE started or restarted), which has nothing to compare with.
	Comparable bool
	// CPUSeconds is the CPU time used by every tree measured so far.
	CPUSeconds float64
	// RSSBytes is the memory resident in the tree now.
	RSSBytes int64
	// Procs is the number of processes in the tree.
	Procs int
}

// treeSampler measures the CPU time and memory of a process and all its
// descendants, from a /proc file system (os.DirFS("/proc"), or a fake in
// tests).
type treeSampler struct {
	proc     fs.FS
	pageSize int64

	root  int
	prev  map[int]procStat // the tree at the previous sample
	total uint64           // ticks used by every tree measured so far
}

func newTreeSampler(proc fs.FS, pageSize int) *treeSampler {
	return &treeSampler{proc: proc, pageSize: int64(pageSize)}
}

// reset forgets the previous sample: the next one starts afresh.
func (s *treeSampler) reset() { s.root, s.prev = 0, nil }

// sample measures the tree under root.
//
// The CPU used between two samples is, for each process in the tree, the
// growth of its own time and of the time of its reaped children, plus the
// whole time of processes that appeared since. A process that exited
// moves its time into its parent's children time when reaped; that part
// was counted already while it ran, so it is taken off the parent's growth.
// Processes that exit and are reaped by someone outside the tree (orphans
// adopted by init) lose at most their last interval.
func (s *treeSampler) sample(root int) (treeSample, error) {
	all, err := s.readAll()
	if err != nil {
		return treeSample{}, err
	}
	if _, ok := all[root]; !ok {
		s.reset()
		return treeSample{CPUSeconds: float64(s.total) / ticksPerSecond}, fmt.Errorf("process %d not found", root)
	}
	// The tree: root and its descendants.
	kids := map[int][]int{}
	for pid, p := range all {
		kids[p.ppid] = append(kids[p.ppid], pid)
	}
	tree := map[int]procStat{}
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if _, seen := tree[pid]; seen {
			continue
		}
		tree[pid] = all[pid]
		queue = append(queue, kids[pid]...)
	}

	comparable := s.prev != nil && s.root == root
	if !comparable {
		s.prev = nil
	}
	// Growth of each process's own and reaped children's time.
	ownGrowth := map[int]uint64{}
	childGrowth := map[int]uint64{}
	for pid, p := range tree {
		old, ok := s.prev[pid]
		if !ok || old.start != p.start {
			ownGrowth[pid] = p.self + p.children // new since the last sample
			continue
		}
		ownGrowth[pid] = sub(p.self, old.self)
		childGrowth[pid] = sub(p.children, old.children)
	}
	// Processes gone since: their counted time reappears in their parent.
	for pid, old := range s.prev {
		if p, ok := tree[pid]; ok && p.start == old.start {
			continue
		}
		if g, ok := childGrowth[old.ppid]; ok {
			childGrowth[old.ppid] = sub(g, old.self+old.children)
		}
	}
	var used uint64
	var rss int64
	for pid, p := range tree {
		used += ownGrowth[pid] + childGrowth[pid]
		rss += p.rssPages * s.pageSize
	}
	s.total += used
	s.root, s.prev = root, tree
	return treeSample{
		Used:       float64(used) / ticksPerSecond,
		Comparable: comparable,
		CPUSeconds: float64(s.total) / ticksPerSecond,
		RSSBytes:   rss,
		Procs:      len(tree),
	}, nil
}

// readAll reads the stat of every process; processes that exit while
// being read are skipped.
func (s *treeSampler) readAll() (map[int]procStat, error) {
	entries, err := fs.ReadDir(s.proc, ".")
	if err != nil {
		return nil, fmt.Errorf("read /proc: %w", err)
	}
	all := make(map[int]procStat, len(entries))
	for _, e := range entries {
		name := e.Name()
		if name == "" || name[0] < '0' || name[0] > '9' {
			continue
		}
		b, err := fs.ReadFile(s.proc, name+"/stat")
		if err != nil {
			continue // gone, or not ours to read
		}
		p, err := parseStat(b)
		if err != nil {
			continue
		}
		all[p.pid] = p
	}
	return all, nil
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}
