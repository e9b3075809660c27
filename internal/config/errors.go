package config

import "strings"

// FieldError is one problem with one setting.
type FieldError struct {
	Path string // canonical key path, e.g. "login-throttle.global-burst"
	Src  Source // where the value came from
	Msg  string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	key := e.Path
	if e.Src.Key != "" && e.Src.File != "" {
		key = e.Src.Key
		if i := strings.LastIndex(e.Path, "."); i >= 0 {
			key = e.Path[:i+1] + e.Src.Key
		}
	}
	switch {
	case e.Src.File != "" || e.Src.Env != "" || e.Src.Flag != "":
		b.WriteString(e.Src.String())
		b.WriteString(": ")
		if key != "" {
			b.WriteString(key)
			b.WriteString(": ")
		}
	case key != "":
		b.WriteString(key)
		b.WriteString(" (default): ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one pass, one per line.
type Errors []*FieldError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}
