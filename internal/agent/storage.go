package agent

import (
	"context"
	"io/fs"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/codehub-dev/codehub/internal/quota"
	"github.com/hashicorp/go-hclog"
)

// storageMeter measures the storage used under one path. When the path is
// the root of its own file system (a volume or a quota'd mount per user),
// the file system's own figures are exact and cheap, and are read on every
// call. Otherwise the files under it are summed by a walk, which may take
// long: it runs in the background, at most once per interval, and callers
// get the last result.
type storageMeter struct {
	path     string
	limit    int64 // the quota (0: none), to tell the user's own file system from the host's
	interval time.Duration
	log      hclog.Logger
	ctx      context.Context // ends the walks

	mu       sync.Mutex
	bytes    int64
	walkedAt time.Time
	walking  bool
	closed   bool
	walks    sync.WaitGroup
}

// Bytes returns the storage used, in bytes (0 while the first walk runs,
// or without a path).
func (m *storageMeter) Bytes() int64 { return m.Measure().Used }

// Measure returns the storage used and, when the path is the root of a
// file system of its own, its capacity and what is left, as the user sees
// them (see quota.Space). A file system much larger than the limit (a
// volume on the host's disk) is not the user's own: its figures would be
// the host's, so the files under the path are summed instead.
func (m *storageMeter) Measure() quota.Space {
	if m.path == "" {
		return quota.Space{}
	}
	if sp, ok := ownFileSystem(m.path, m.limit); ok {
		return sp
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.walking && (m.walkedAt.IsZero() || time.Since(m.walkedAt) >= m.interval) && !m.closed {
		m.walking = true
		m.walks.Add(1)
		go m.walk()
	}
	return quota.Space{Used: m.bytes}
}

// wait returns once no walk runs, and starts no more; cancel ctx first.
func (m *storageMeter) wait() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.walks.Wait()
}

func (m *storageMeter) walk() {
	defer m.walks.Done()
	start := time.Now()
	n, err := duBytes(m.ctx, m.path)
	m.mu.Lock()
	m.walking = false
	m.walkedAt = time.Now()
	if err == nil {
		m.bytes = n
	}
	m.mu.Unlock()
	if err != nil {
		m.log.Warn("measure storage", "path", m.path, "error", err)
		return
	}
	m.log.Debug("measured storage", "path", m.path, "bytes", n, "took", time.Since(start).Round(time.Millisecond))
}

// ownFileSystem measures path's file system when path is its root (its
// device differs from its parent's, or it is /) and, with a limit, the
// file system is not much larger than the limit (an eighth more, for the
// images of an older codehub that never shrink under a lowered quota).
func ownFileSystem(path string, limit int64) (quota.Space, bool) {
	var st, parent syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return quota.Space{}, false
	}
	if err := syscall.Stat(filepath.Join(path, ".."), &parent); err != nil {
		return quota.Space{}, false
	}
	if st.Dev == parent.Dev && st.Ino != parent.Ino {
		return quota.Space{}, false // a directory within a larger file system
	}
	sp, err := quota.Measure(path)
	if err != nil {
		return quota.Space{}, false
	}
	if limit > 0 && sp.Capacity > limit+limit/8+(64<<20) {
		return quota.Space{}, false
	}
	return sp, true
}

// duBytes sums the space allocated to the files and directories under
// root, like du -sx: hard links count once, symbolic links are not
// followed and other file systems mounted below are not entered.
// Unreadable directories are skipped.
func duBytes(ctx context.Context, root string) (int64, error) {
	var rootSt syscall.Stat_t
	if err := syscall.Stat(root, &rootSt); err != nil {
		return 0, err
	}
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	var total int64
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil // vanished or unreadable: skip it
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			total += fi.Size()
			return nil
		}
		if uint64(st.Dev) != uint64(rootSt.Dev) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if st.Nlink > 1 && !d.IsDir() {
			k := inode{uint64(st.Dev), uint64(st.Ino)}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		total += st.Blocks * 512
		return nil
	})
	return total, err
}
