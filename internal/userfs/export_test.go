package userfs

// SetBeforeCommit makes WriteFrom call fn between writing its temporary
// file and moving it into place, so tests can race it.
func SetBeforeCommit(f *FS, fn func()) { f.beforeCommit = fn }
