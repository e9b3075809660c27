package workspace

import "path/filepath"

// Layout is one user's tree under the users base path:
//
//	<base>/<user-id>/
//	  settings.json     -> state/User/settings.json
//	  keybindings.json  -> state/User/keybindings.json
//	  extensions/       the user's extensions
//	  workspaces/       the user's projects; the IDE opens it
//	  state/            code-server's user data directory
//	  logs/             the agent's and code-server's logs
//
// settings.json and keybindings.json at the top are links to the files
// code-server reads, so that they are where people look for them.
type Layout struct {
	// Home is <base>/<user-id>; the user's HOME as well.
	Home string
}

// NewLayout returns the layout of one user's (or one pool workspace's) tree.
func NewLayout(base, id string) Layout { return Layout{Home: filepath.Join(base, id)} }

// Paths of the tree.
func (l Layout) Settings() string    { return filepath.Join(l.Home, "settings.json") }
func (l Layout) Keybindings() string { return filepath.Join(l.Home, "keybindings.json") }
func (l Layout) Extensions() string  { return filepath.Join(l.Home, "extensions") }
func (l Layout) Workspaces() string  { return filepath.Join(l.Home, "workspaces") }
func (l Layout) State() string       { return filepath.Join(l.Home, "state") }
func (l Layout) Logs() string        { return filepath.Join(l.Home, "logs") }

// StateUser is code-server's User directory, where it reads settings.
func (l Layout) StateUser() string { return filepath.Join(l.Home, "state", "User") }
