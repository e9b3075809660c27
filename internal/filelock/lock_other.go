//go:build !unix

package filelock

import (
	"context"
	"errors"
)

// Lock is not implemented where there is no flock: sharing a file between
// processes needs it.
func Lock(ctx context.Context, path string) (unlock func(), err error) {
	return nil, errors.New("file locking is not supported on this platform")
}
