// Package filelock takes exclusive locks on files (flock), shared by the
// processes of one machine: gateways and the CLI rotating a key file,
// writing a checkpoint, switching a host setting.
package filelock

import "context"

// With runs fn holding the lock on path (see Lock).
func With(ctx context.Context, path string, fn func() error) error {
	unlock, err := Lock(ctx, path)
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}
