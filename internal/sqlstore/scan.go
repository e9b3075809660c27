package sqlstore

import (
	"encoding/json"
	"fmt"
	"time"
)

// timeCol scans a time column of either database into a UTC time.Time:
// SQLite's unix microseconds, PostgreSQL's timestamptz, and NULL as the
// zero time.
type timeCol struct{ t *time.Time }

// Scan implements sql.Scanner.
func (c timeCol) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*c.t = time.Time{}
	case int64:
		*c.t = time.UnixMicro(v).UTC()
	case time.Time:
		*c.t = v.UTC()
	default:
		return fmt.Errorf("scan %T as a time", src)
	}
	return nil
}

// jsonCol scans a JSON column (text or bytes) into v. An empty value
// leaves v alone.
type jsonCol struct{ v any }

// Scan implements sql.Scanner.
func (c jsonCol) Scan(src any) error {
	var b []byte
	switch v := src.(type) {
	case nil:
		return nil
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		return fmt.Errorf("scan %T as JSON", src)
	}
	if len(b) == 0 {
		return nil
	}
	return json.Unmarshal(b, c.v)
}

// jsonArg encodes v for a JSON column; a nil v is stored as empty, not
// as null, so the column is always an array or an object.
func jsonArg(v any, empty string) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	if string(b) == "null" {
		return empty, nil
	}
	return string(b), nil
}
