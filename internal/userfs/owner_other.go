//go:build !unix

package userfs

import "io/fs"

// Owner returns the numeric owner of a file described by Stat or Lstat;
// ok is false where the platform has no such notion.
func Owner(fi fs.FileInfo) (uid, gid int, ok bool) { return -1, -1, false }
