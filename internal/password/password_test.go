package password

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
)

// Hashes made by the argon2 package code-server itself uses (node-argon2,
// through code-server's hash function and argon2-cli's defaults), so that
// hashed-password values users already have keep working.
var codeServerHashes = []struct{ name, hash, password string }{
	{"code-server default (argon2id m=64MiB t=3 p=4)",
		"$argon2id$v=19$m=65536,t=3,p=4$ly4lnWqiURCNsF9WXstipw$So1VAlYyQ9Wa2OLiUTBh27UBV8bk4f4MbkplK7koYp8",
		"correct horse battery staple"},
	{"argon2id",
		"$argon2id$v=19$m=65536,t=3,p=4$GIqCjSRR+ReuMUy7iL/tMA$IZSM4ymNYy4ibIQqtwNTz8hR2S8Mng6v9XAOzUcDJKY",
		"mysecretpassword"},
	{"argon2i m=64MiB",
		"$argon2i$v=19$m=65536,t=3,p=4$XdqeUsGBPL9NfenNKeBdfQ$XRdxUO13d3CKkNz20yBjGGlDP3ix3Zd0xzBO5MN7Eys",
		"mysecretpassword"},
	{"argon2-cli -e default (argon2i m=4MiB t=3 p=1)",
		"$argon2i$v=19$m=4096,t=3,p=1$0w9ApJQfyvUHu2Jeoct7uA$8zkZ5a19gKF7Hs7ZstWJ3mgz/PHjvxm+cdDFobsbsc8",
		"thisismypassword"},
}

func TestCodeServerHashesVerify(t *testing.T) {
	for _, c := range codeServerHashes {
		t.Run(c.name, func(t *testing.T) {
			ok, err := Verify(c.password, c.hash)
			if err != nil || !ok {
				t.Fatalf("Verify(right password) = %v, %v", ok, err)
			}
			ok, err = Verify(c.password+"x", c.hash)
			if err != nil || ok {
				t.Fatalf("Verify(wrong password) = %v, %v", ok, err)
			}
		})
	}
}

// TestOurHashVerifiesInNode: this hash, made by New with DefaultParams, was
// checked with node-argon2's verify (code-server's library): true.
func TestOurHashFormat(t *testing.T) {
	const fromGo = "$argon2id$v=19$m=19456,t=2,p=1$fLrUlUTZmU+oE1fm+8TO/g$Xurql8f+sSyWoedEaTN3F7uUl9W0rNv+7IjsWYF/TaA"
	if ok, err := Verify("pw-from-go", fromGo); err != nil || !ok {
		t.Fatalf("Verify = %v, %v", ok, err)
	}
	h, err := New("pw-from-go", DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	s := h.String()
	if !strings.HasPrefix(s, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("encoded hash %q", s)
	}
	parsed, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.String() != s || !parsed.Matches("pw-from-go") || parsed.Matches("pw-from-g0") {
		t.Fatal("round trip failed")
	}
	if h2, _ := New("pw-from-go", DefaultParams); h2.String() == s {
		t.Fatal("two hashes of one password share a salt")
	}
}

func TestParseRejects(t *testing.T) {
	for _, bad := range []string{
		"",
		"mysecretpassword",
		"$2b$10$abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuv", // bcrypt
		"$argon2d$v=19$m=4096,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
		"$argon2id$v=18$m=4096,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
		"$argon2id$v=19$m=4096,t=3$c2FsdHNhbHQ$aGFzaGhhc2g",
		"$argon2id$v=19$m=4096,t=0,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
		"$argon2id$v=19$m=99999999,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2g", // 95 GiB
		"$argon2id$v=19$m=4096,t=1000,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
		"$argon2id$v=19$m=4096,t=3,p=1$!!!$aGFzaGhhc2g",
		"$argon2id$v=19$m=4096,t=3,p=1$c2Fs$aGFzaGhhc2g", // 3-byte salt
		"$argon2id$v=19$m=4096,t=3,p=300$c2FsdHNhbHQ$aGFzaGhhc2g",
		"$argon2id$v=19$m=4,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
	} {
		if _, err := Parse(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q) err = %v, want ErrMalformed", bad, err)
		}
		if _, err := Verify("x", bad); err == nil {
			t.Errorf("Verify accepted %q", bad)
		}
	}
}

func TestNeedsRehash(t *testing.T) {
	h, _ := New("pw", DefaultParams)
	if h.NeedsRehash(DefaultParams) {
		t.Error("fresh hash needs rehash")
	}
	stronger := DefaultParams
	stronger.Time++
	if !h.NeedsRehash(stronger) {
		t.Error("changed parameters not noticed")
	}
	old, _ := Parse(codeServerHashes[3].hash)
	if !old.NeedsRehash(DefaultParams) {
		t.Error("argon2i hash not marked for rehash")
	}
}

func BenchmarkVerifyDefault(b *testing.B) {
	h, _ := New("benchmark password", DefaultParams)
	b.ReportAllocs()
	for b.Loop() {
		h.Matches("benchmark password")
	}
}

func TestHasherBoundsConcurrency(t *testing.T) {
	h, err := NewHasher(Params{Memory: 64, Time: 1, Threads: 1}, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Hold the only slot; a second computation must wait, and give up with
	// its context.
	if err := h.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := h.Hash(ctx, "pw")
		done <- err
	}()
	for h.Waiting() != 1 {
		runtime.Gosched()
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("waiting Hash returned %v", err)
	}
	h.release()
	enc, err := h.Hash(context.Background(), "pw")
	if err != nil {
		t.Fatal(err)
	}
	ok, rehash, err := h.Verify(context.Background(), "pw", enc)
	if !ok || rehash || err != nil {
		t.Fatalf("Verify = %v %v %v", ok, rehash, err)
	}
	ok, rehash, err = h.Verify(context.Background(), "mysecretpassword", codeServerHashes[1].hash)
	if !ok || !rehash || err != nil {
		t.Fatalf("old-parameter hash: ok=%v rehash=%v err=%v, want a rehash", ok, rehash, err)
	}
	if err := h.VerifyDummy(context.Background(), "x"); err != nil {
		t.Fatal(err)
	}
}
