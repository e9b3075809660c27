package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is a length of time written either as a number of seconds (as
// the design's YAML examples do: ttl: 86400) or as a Go duration ("24h").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String renders d as a Go duration.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText renders d as a Go duration, for JSON and golden files.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d *Duration) decodeNode(n *node) error {
	if n.kind != scalarNode {
		return fmt.Errorf("expected a duration such as \"30s\", \"24h\" or a number of seconds, got %s", n.describe())
	}
	switch x := n.value.(type) {
	case int64:
		*d = Duration(time.Duration(x) * time.Second)
		return nil
	case float64:
		*d = Duration(time.Duration(x * float64(time.Second)))
		return nil
	case string:
		return d.parse(x)
	}
	return fmt.Errorf("expected a duration such as \"30s\", \"24h\" or a number of seconds, got %s", n.describe())
}

func (d *Duration) parse(s string) error {
	s = strings.TrimSpace(s)
	if secs, err := strconv.ParseInt(s, 10, 64); err == nil {
		*d = Duration(time.Duration(secs) * time.Second)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("expected a duration such as \"30s\", \"24h\" or a number of seconds, got %q", s)
	}
	*d = Duration(v)
	return nil
}

// Cert is code-server's cert setting: false (plain HTTP), true (TLS with the
// certificate of cert-path, or a self-signed one when no path is given) or
// the path of a PEM certificate.
type Cert struct {
	Enabled bool
	Path    string
}

func (c *Cert) decodeNode(n *node) error {
	if n.kind != scalarNode {
		return fmt.Errorf("expected true, false or the path of a certificate, got %s", n.describe())
	}
	switch x := n.value.(type) {
	case nil:
		*c = Cert{}
	case bool:
		*c = Cert{Enabled: x}
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "", "false":
			*c = Cert{}
		case "true":
			*c = Cert{Enabled: true}
		default:
			*c = Cert{Enabled: true, Path: x}
		}
	default:
		return fmt.Errorf("expected true, false or the path of a certificate, got %s", n.describe())
	}
	return nil
}
