//go:build unix

package userfs

import (
	"io/fs"
	"syscall"
)

// Owner returns the numeric owner of a file described by Stat or Lstat;
// ok is false where the platform has no such notion.
func Owner(fi fs.FileInfo) (uid, gid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return -1, -1, false
	}
	return int(st.Uid), int(st.Gid), true
}
