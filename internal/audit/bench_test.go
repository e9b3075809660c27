package audit

import (
	"context"
	"path/filepath"
	"testing"
)

// BenchmarkFileAppend measures a keyed append of one event to the file
// (with its fsync), as the Logger does for a batch of one.
func BenchmarkFileAppend(b *testing.B) {
	keys, err := OpenKeyFile(KeyFileConfig{Path: filepath.Join(b.TempDir(), "audit-key.json"), Create: true})
	if err != nil {
		b.Fatal(err)
	}
	s, err := OpenFile(FileConfig{Path: filepath.Join(b.TempDir(), "audit.log"), Keys: keys})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ev := events(1)
	b.ResetTimer()
	for b.Loop() {
		if err := s.Append(context.Background(), ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyFiles measures verifying a keyed log of 10,000 entries,
// collecting them for a comparison.
func BenchmarkVerifyFiles(b *testing.B) {
	dir := b.TempDir()
	keys, err := OpenKeyFile(KeyFileConfig{Path: filepath.Join(dir, "audit-key.json"), Create: true})
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, "audit.log")
	s, err := OpenFile(FileConfig{Path: path, Keys: keys})
	if err != nil {
		b.Fatal(err)
	}
	for range 40 {
		if err := s.Append(context.Background(), events(250)); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	b.ResetTimer()
	for b.Loop() {
		r, err := VerifyFiles(context.Background(), []string{path}, VerifyOptions{Keys: keys, Collect: true})
		if err != nil || r.Count != 10001 {
			b.Fatal(r.Count, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10001, "ns/entry")
}
