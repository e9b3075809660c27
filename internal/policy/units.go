package policy

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const mib = 1 << 20

// sizeUnits are the units a size may be written in: decimal (kB = 1000
// bytes, as disks are sold) and binary (KiB = 1024 bytes; Ki as
// Kubernetes writes it). A bare "K", "M" or "G" is refused: Docker reads
// it as binary, people often mean decimal.
var sizeUnits = map[string]float64{
	"b":  1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
	"ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30, "ti": 1 << 40,
}

var sizeRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]+)$`)

// maxSize bounds sizes well below where MiB counts overflow an int32.
const maxSize = 1 << 50 // 1PiB

// parseSize reads a size such as "2GiB", "512MiB" or "10GB" and returns
// it in whole MiB, rounded down (Nomad and cgroups take MiB).
func parseSize(s string) (int, error) {
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("expected a size such as \"2GiB\" or \"512MiB\", got %q", s)
	}
	unit, ok := sizeUnits[strings.ToLower(m[2])]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q in %q: use B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)", m[2], s)
	}
	n, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("expected a size such as \"2GiB\", got %q", s)
	}
	bytes := n * unit
	if bytes > maxSize {
		return 0, fmt.Errorf("%s is too large (at most 1PiB)", s)
	}
	return int(bytes / mib), nil
}

// parseDuration reads a Go duration ("30m", "1h30m"); "0" means never.
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("expected a duration such as \"30m\" or \"2h\" (\"0\": never), got %q", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("must not be negative, got %q", s)
	}
	return d, nil
}
