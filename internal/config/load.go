package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
)

// Setting is one value given on the command line, for a key path.
type Setting struct {
	Path  string // canonical key path, e.g. "bind-addr"
	Value string
	Flag  string // how the user wrote it, e.g. "--bind-addr"
}

// LoadOptions says where Load finds the layers above the defaults.
type LoadOptions struct {
	// File is the configuration file (.hcl, or .yaml/.yml/.json); optional.
	File string
	// Getenv reads the environment.
	Getenv func(string) string
	// Flags are the settings given on the command line, applied last.
	Flags []Setting
}

// envAliases are the environment variables code-server users already have,
// mapped to their settings. CODEHUB_* names win over them.
var envAliases = map[string]string{
	"PASSWORD":                    "password",
	"HASHED_PASSWORD":             "hashed-password",
	"CODE_SERVER_DEPLOYMENT_MODE": "deployment-mode",
}

// Load builds the configuration: defaults, then the file, then the
// environment, then flags; and validates the result once. The error, if
// any, is an Errors listing every problem with its file, line and key.
func Load(opts LoadOptions) (*Config, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	cfg := Default(getenv)
	d := &decoder{sources: cfg.sources}

	if opts.File != "" {
		root, err := parseFile(opts.File, getenv)
		if err != nil {
			return nil, err
		}
		d.decode(root, reflect.ValueOf(cfg).Elem(), "")
	}

	for _, e := range envSettings(getenv) {
		d.set(cfg, e.path, e.value, Source{Env: e.name})
	}
	for _, f := range opts.Flags {
		d.set(cfg, f.Path, f.Value, Source{Flag: f.Flag})
	}
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	cfg.followDataDir()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// parseFile reads a configuration file into a format-neutral tree, choosing
// the parser by extension.
func parseFile(path string, getenv func(string) string) (*node, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".hcl":
		return parseHCL(src, path, getenv)
	case ".yaml", ".yml", ".json":
		return parseYAML(src, path, getenv)
	}
	return nil, fmt.Errorf("%s: unknown configuration format: name the file *.hcl, *.yaml or *.yml", path)
}

// set applies one string value to a key path, as from a flag or variable.
func (d *decoder) set(cfg *Config, path, value string, src Source) {
	v := reflect.ValueOf(cfg).Elem()
	for _, part := range strings.Split(path, ".") {
		if v.Kind() != reflect.Struct {
			d.fail(src, path, "not a settable key")
			return
		}
		found := false
		for _, f := range structFields(v.Type()) {
			if f.name == part {
				v, found = v.Field(f.index), true
				break
			}
		}
		if !found {
			d.fail(src, path, "unknown key")
			return
		}
	}
	src.Key = path
	d.decode(&node{kind: scalarNode, value: value, src: src}, v, path)
}

type envSetting struct{ name, path, value string }

// EnvName is the CODEHUB_* environment variable of a key path.
func EnvName(path string) string {
	r := strings.NewReplacer("-", "_", ".", "_")
	return "CODEHUB_" + strings.ToUpper(r.Replace(path))
}

// envSettings lists the settings found in the environment, the code-server
// names first so that CODEHUB_* names override them.
func envSettings(getenv func(string) string) []envSetting {
	var out []envSetting
	aliases := make([]string, 0, len(envAliases))
	for name := range envAliases {
		aliases = append(aliases, name)
	}
	sort.Strings(aliases)
	for _, name := range aliases {
		if v := getenv(name); v != "" {
			out = append(out, envSetting{name, envAliases[name], v})
		}
	}
	for _, path := range LeafPaths() {
		name := EnvName(path)
		if v := getenv(name); v != "" {
			out = append(out, envSetting{name, path, v})
		}
	}
	return out
}

// LeafPaths lists every key path that takes a single value (or a
// comma-separated list), in declaration order.
func LeafPaths() []string {
	var out []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for _, f := range structFields(t) {
			ft := t.Field(f.index).Type
			path := joinPath(prefix, f.name)
			if _, custom := reflect.New(ft).Interface().(nodeDecoder); custom {
				out = append(out, path)
				continue
			}
			switch ft.Kind() {
			case reflect.Struct:
				walk(ft, path)
			case reflect.Map:
			case reflect.Slice:
				if ft.Elem().Kind() != reflect.Struct {
					out = append(out, path)
				}
			default:
				out = append(out, path)
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	return out
}

// followDataDir puts the files that live in the data directory by default
// (the SQLite database, the audit log) in the data directory given, unless
// they are set themselves: data-dir = "/srv/codehub" moves all of them.
func (c *Config) followDataDir() {
	if c.SourceOf("data-dir").String() == "default" {
		return
	}
	if c.SourceOf("multi-user.auth.database.path").String() == "default" {
		c.MultiUser.Auth.Database.Path = filepath.Join(c.DataDir, "codehub.db")
	}
	if c.SourceOf("audit.file").String() == "default" {
		c.Audit.File = filepath.Join(c.DataDir, "audit.log")
	}
}
