// Package procenv finds the processes that carry a variable in their
// environment, and ends them. Every process inherits its parent's
// environment unless it clears it, so a variable set on a workspace's
// first process marks all it starts, including those that left its
// process group or were re-parented when their parent died. Where there is
// no cgroup to end (the directory strategy, the test fakes), that is how
// a workspace's processes are all found.
package procenv

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// AnyUID makes Kill consider processes of every user.
const AnyUID = -1

// Find returns the processes, other than this one, whose environment
// holds every entry of marks (each "KEY=value", matched whole) and whose
// effective user is uid (or any, with AnyUID). Processes it may not read
// are skipped. root is the proc file system's mount point ("/proc").
func Find(root string, uid int, marks ...string) ([]int, error) {
	var pids []int
	err := each(root, uid, func(pid int, env []byte) {
		if holdsAll(env, marks) {
			pids = append(pids, pid)
		}
	})
	return pids, err
}

// each calls fn with the pid and environment of every process, other than
// this one, whose effective user is uid (or any, with AnyUID); processes
// it may not read are skipped.
func each(root string, uid int, fn func(pid int, env []byte)) error {
	entries, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if uid != AnyUID {
			fi, err := os.Stat(filepath.Join(root, e.Name()))
			if err != nil {
				continue
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != uid {
				continue
			}
		}
		env, err := os.ReadFile(filepath.Join(root, e.Name(), "environ"))
		if err != nil {
			continue
		}
		fn(pid, env)
	}
	return nil
}

// holdsAll reports whether the NUL-separated environment env has every
// entry of marks. An empty marks matches nothing: Kill must never mean
// every process.
func holdsAll(env []byte, marks []string) bool {
	if len(marks) == 0 {
		return false
	}
	for _, m := range marks {
		found := false
		for entry := range bytes.SplitSeq(env, []byte{0}) {
			if string(entry) == m {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Kill sends SIGKILL to every process Find returns, again until none is
// left (processes may fork meanwhile) or ctx ends, and returns how many it
// signalled. A zombie's environment reads empty, so processes killed but
// not yet reaped do not count as left.
func Kill(ctx context.Context, uid int, marks ...string) (int, error) {
	killed := map[int]bool{}
	for {
		pids, err := Find("/proc", uid, marks...)
		if err != nil {
			return len(killed), err
		}
		if len(pids) == 0 {
			return len(killed), nil
		}
		for _, pid := range pids {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed[pid] = true
			}
		}
		select {
		case <-ctx.Done():
			return len(killed), ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Alive reports whether pid is a running process: it exists and is not a
// zombie (ended, waiting for its parent to reap it).
func Alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and
	// may itself hold any character.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// Values returns, for every process other than this one whose environment
// sets key, key's value, by pid. Processes it may not read are skipped.
// root is the proc file system's mount point ("/proc").
func Values(root, key string) (map[int]string, error) {
	prefix := []byte(key + "=")
	out := map[int]string{}
	err := each(root, AnyUID, func(pid int, env []byte) {
		for entry := range bytes.SplitSeq(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(entry, prefix); ok {
				out[pid] = string(v)
				return
			}
		}
	})
	return out, err
}
