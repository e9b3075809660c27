package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestHomographNamesOverHTTP: through the API, an account cannot be made
// with an email that imitates another (400, saying why), and signing in
// with such a name, even with the real account's password, gets the very
// answer an unknown name gets.
func TestHomographNamesOverHTTP(t *testing.T) {
	e := newAdminEnv(t, adminSetup{registration: "open"})
	const cyrO = "\u043e" // о

	// bob@example.com exists; b(Cyrillic о)b@example.com is not him.
	body := `{"username":"bob2","email":"b` + cyrO + `b@example.com","password":"` + multiPW + `"}`
	st, b, _ := e.call("root", "POST", "/admin/users", body)
	if code, msg := errorCode(b); st != http.StatusBadRequest || code != "invalid_input" || !strings.Contains(msg, "ASCII") {
		t.Errorf("admin create with a Cyrillic letter: %d %s", st, b)
	}
	st, b, _ = e.call("", "POST", "/auth/register", body)
	if code, _ := errorCode(b); st != http.StatusBadRequest || code != "invalid_input" {
		t.Errorf("register with a Cyrillic letter: %d %s", st, b)
	}
	st, b, _ = e.call("root", "PATCH", "/admin/users/"+e.plain.ID, `{"email":"b`+cyrO+`b@example.org"}`)
	if code, _ := errorCode(b); st != http.StatusBadRequest || code != "invalid_input" {
		t.Errorf("admin update to a Cyrillic letter: %d %s", st, b)
	}

	login := func(name string) (int, string) {
		req, _ := json.Marshal(map[string]string{"username": name, "password": multiPW})
		st, b, _ := e.call("", "POST", "/auth/login", string(req))
		return st, b
	}
	wantSt, wantBody := login("nobody@example.com")
	if wantSt != http.StatusUnauthorized {
		t.Fatalf("unknown name: %d %s", wantSt, wantBody)
	}
	for _, name := range []string{"b" + cyrO + "b", "b" + cyrO + "b@example.com", "bob@ex\u0430mple.com", "\u212aob", "b\u03bfb"} {
		if st, b := login(name); st != wantSt || b != wantBody {
			t.Errorf("sign-in as %q: %d %s; an unknown name gets %d %s", name, st, b, wantSt, wantBody)
		}
	}
	if st, b := login("BOB@example.com"); st != http.StatusOK {
		t.Errorf("sign-in as the real bob: %d %s", st, b)
	}
}
