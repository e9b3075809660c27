package password

import (
	"reflect"
	"testing"
)

// FuzzParse reads any string as an encoded hash, as from a configuration
// or the user database: what is accepted stays within the cost bounds, so
// that verifying against it cannot take minutes or gigabytes, and encodes
// back to a string that reads the same.
func FuzzParse(f *testing.F) {
	h, err := New("correct horse", Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		h.String(), " " + h.String() + "\n",
		"$argon2i$v=19$m=4096,t=3,p=1$c29tZXNhbHQ$iWh06vD8Fy27wf9npn6FXWiCX4K6pW6Ue1Bnzz07Z8A",
		"$argon2id$m=65536,t=2,p=1$c29tZXNhbHQ$aGFzaA",
		"$argon2id$v=19$m=4294967295,t=1,p=1$c29tZXNhbHQ$aGFzaGhhc2g",
		"$argon2id$v=19$m=65536,t=4294967295,p=1$c29tZXNhbHQ$aGFzaGhhc2g",
		"$argon2id$v=19$m=8,t=1,p=255$c29tZXNhbHQ$aGFzaGhhc2g",
		"$argon2d$v=19$m=64,t=1,p=1$c29tZXNhbHQ$aGFzaGhhc2g",
		"$argon2id$v=19$m=64,t=1,p=1,keyid=x$c29tZXNhbHQ=$aGFzaGhhc2g==",
		"$2b$10$abcdefghijklmnopqrstuv", "", "$$$$$",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := Parse(s)
		if err != nil {
			return
		}
		p := h.Params
		switch {
		case p.Memory == 0 || p.Memory > maxMemoryKiB || p.Time == 0 || p.Time > maxTime || p.Threads == 0:
			t.Fatalf("%q accepted with cost %+v", s, p)
		case p.Memory < 8*uint32(p.Threads):
			t.Fatalf("%q accepted with memory below 8 per lane: %+v", s, p)
		case len(h.Salt) < 8 || len(h.Key) < 4 || len(h.Key) > maxKeyLen:
			t.Fatalf("%q accepted with a %d-byte salt and a %d-byte key", s, len(h.Salt), len(h.Key))
		case h.Variant != "argon2id" && h.Variant != "argon2i":
			t.Fatalf("%q accepted as %q", s, h.Variant)
		}
		again, err := Parse(h.String())
		if err != nil || !reflect.DeepEqual(again, h) {
			t.Fatalf("%q re-encoded as %q reads %+v, %v; want %+v", s, h.String(), again, err, h)
		}
	})
}
