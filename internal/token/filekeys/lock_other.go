//go:build !unix

package filekeys

import (
	"context"
	"errors"
)

// lockFile is not implemented where there is no flock: sharing the key
// file between processes needs it.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	return nil, errors.New("file locking is not supported on this platform")
}
