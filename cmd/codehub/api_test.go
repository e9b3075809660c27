package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestMultiAPIBadInput sends malformed, hostile or wrong requests to every
// endpoint of the JSON API: each gets a 4xx with a JSON error (code and
// message), never a 5xx, and the gateway keeps serving. It runs with users
// in SQLite and in PostgreSQL, whose drivers refuse different things.
func TestMultiAPIBadInput(t *testing.T) {
	t.Parallel()
	backends := []struct {
		name  string
		setup func(t *testing.T, c *multiConfig)
	}{
		{"sqlite", func(t *testing.T, c *multiConfig) {}},
		{"postgres", func(t *testing.T, c *multiConfig) { c.PostgresURL = testPostgres(t) }},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			c := multiConfig{Upstream: startStandInIDE(t), Registration: "open"}
			b.setup(t, &c)
			cfg := c.write(t)
			createUser(t, cfg, "alice", "alice-password-1")
			createUser(t, cfg, "bob", "bob-password-01")
			createUser(t, cfg, "dave", "dave-password-1")
			g := startMultiGateway(t, cfg)
			testAPIBadInput(t, g, cfg)
		})
	}
}

func testAPIBadInput(t *testing.T, g *testGateway, cfg string) {
	alice := apiLogin(t, g, "alice", "alice-password-1")
	bob := apiLogin(t, g, "bob", "bob-password-01")
	dave := apiLogin(t, g, "dave", "dave-password-1")
	_, bobMe := getMe(t, g, bearer(bob.AccessToken)...)
	if bobMe.Session.ID == "" {
		t.Fatal("no session id in /api/v1/me")
	}
	aliceCookie := mustFormLogin(t, g, "alice", "alice-password-1")

	const jsonCT = "application/json"
	huge := `{"username":"` + strings.Repeat("a", 100<<10) + `","password":"x"}`
	long := func(n int) string { return strings.Repeat("x", n) }
	validLooking := "chr1." + strings.Repeat("A", 43) + ".0." + strings.Repeat("A", 43)

	type tc struct {
		name   string
		method string
		path   string
		ct     string // Content-Type; none when empty
		body   string
		hdr    []string
		status int
		code   string
	}
	login, refresh, register := "/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/register"
	post := http.MethodPost
	cases := []tc{
		// POST /api/v1/auth/login
		{"login/no body", post, login, jsonCT, "", nil, 400, "invalid_input"},
		{"login/no content type", post, login, "", `{"username":"alice","password":"x"}`, nil, 400, "invalid_input"},
		{"login/form content type", post, login, "application/x-www-form-urlencoded", "username=alice&password=x", nil, 400, "invalid_input"},
		{"login/bad content type", post, login, "application/json; charset", `{}`, nil, 400, "invalid_input"},
		{"login/malformed JSON", post, login, jsonCT, `{"username": "alice",`, nil, 400, "invalid_input"},
		{"login/not JSON", post, login, jsonCT, `username=alice`, nil, 400, "invalid_input"},
		{"login/unknown field", post, login, jsonCT, `{"username":"alice","password":"x","admin":true}`, nil, 400, "invalid_input"},
		{"login/huge body", post, login, jsonCT, huge, nil, 400, "invalid_input"},
		{"login/two values", post, login, jsonCT, `{"username":"alice","password":"x"} {}`, nil, 400, "invalid_input"},
		{"login/empty object", post, login, jsonCT, `{}`, nil, 400, "invalid_input"},
		{"login/null", post, login, jsonCT, `null`, nil, 400, "invalid_input"},
		{"login/missing password", post, login, jsonCT, `{"username":"alice"}`, nil, 400, "invalid_input"},
		{"login/missing username", post, login, jsonCT, `{"password":"alice-password-1"}`, nil, 400, "invalid_input"},
		{"login/blank username", post, login, jsonCT, `{"username":"   ","password":"x"}`, nil, 400, "invalid_input"},
		{"login/number username", post, login, jsonCT, `{"username":1,"password":"x"}`, nil, 400, "invalid_input"},
		{"login/array password", post, login, jsonCT, `{"username":"alice","password":["x"]}`, nil, 400, "invalid_input"},
		{"login/array body", post, login, jsonCT, `[]`, nil, 400, "invalid_input"},
		{"login/string body", post, login, jsonCT, `"alice"`, nil, 400, "invalid_input"},
		{"login/long username", post, login, jsonCT, `{"username":"` + long(300) + `","password":"x"}`, nil, 400, "invalid_input"},
		{"login/long password", post, login, jsonCT, `{"username":"nobody","password":"` + long(2000) + `"}`, nil, 400, "invalid_input"},
		{"login/unknown user", post, login, jsonCT, `{"username":"nobody","password":"whatever-1"}`, nil, 401, "invalid_credentials"},
		{"login/unknown email", post, login, jsonCT, `{"username":"nobody@example.com","password":"whatever-1"}`, nil, 401, "invalid_credentials"},
		{"login/invalid UTF-8", post, login, jsonCT, "{\"username\":\"\xff\xfe\",\"password\":\"whatever-1\"}", nil, 401, "invalid_credentials"},
		{"login/NUL in username", post, login, jsonCT, `{"username":"ali\u0000ce","password":"whatever-1"}`, nil, 401, "invalid_credentials"},
		{"login/NUL in email", post, login, jsonCT, `{"username":"al\u0000ice@example.com","password":"whatever-1"}`, nil, 401, "invalid_credentials"},
		{"login/GET", http.MethodGet, login, "", "", nil, 405, "method_not_allowed"},
		{"login/cross-site", post, login, jsonCT, `{"username":"alice","password":"alice-password-1"}`,
			[]string{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"}, 403, "cross_origin"},
		{"unknown endpoint", http.MethodGet, "/api/v1/nope", "", "", nil, 404, "not_found"},

		// POST /api/v1/auth/refresh
		{"refresh/no body", post, refresh, jsonCT, "", nil, 400, "invalid_input"},
		{"refresh/empty token", post, refresh, jsonCT, `{"refresh_token":""}`, nil, 400, "invalid_input"},
		{"refresh/number", post, refresh, jsonCT, `{"refresh_token":12}`, nil, 400, "invalid_input"},
		{"refresh/unknown field", post, refresh, jsonCT, `{"refresh_token":"x","scope":"all"}`, nil, 400, "invalid_input"},
		{"refresh/garbage", post, refresh, jsonCT, `{"refresh_token":"garbage"}`, nil, 401, "invalid_token"},
		{"refresh/four dots", post, refresh, jsonCT, `{"refresh_token":"chr1...."}`, nil, 401, "invalid_token"},
		{"refresh/wrong parts", post, refresh, jsonCT, `{"refresh_token":"chr1.a.b.c"}`, nil, 401, "invalid_token"},
		{"refresh/unknown session", post, refresh, jsonCT, `{"refresh_token":"` + validLooking + `"}`, nil, 401, "invalid_token"},
		{"refresh/huge generation", post, refresh, jsonCT, `{"refresh_token":"chr1.` + strings.Repeat("A", 43) + `.99999999999999999999.` + strings.Repeat("A", 43) + `"}`, nil, 401, "invalid_token"},
		{"refresh/negative generation", post, refresh, jsonCT, `{"refresh_token":"chr1.` + strings.Repeat("A", 43) + `.-1.` + strings.Repeat("A", 43) + `"}`, nil, 401, "invalid_token"},
		{"refresh/very long", post, refresh, jsonCT, `{"refresh_token":"` + long(10000) + `"}`, nil, 401, "invalid_token"},
		{"refresh/access token", post, refresh, jsonCT, `{"refresh_token":"` + alice.AccessToken + `"}`, nil, 401, "invalid_token"},
		{"refresh/tampered secret", post, refresh, jsonCT, `{"refresh_token":"` + tamper(alice.RefreshToken) + `"}`, nil, 401, "invalid_token"},
		{"refresh/NUL", post, refresh, jsonCT, `{"refresh_token":"chr1.\u0000.0.x"}`, nil, 401, "invalid_token"},

		// POST /api/v1/auth/register (registration is open)
		{"register/no body", post, register, jsonCT, "", nil, 400, "invalid_input"},
		{"register/wrong content type", post, register, "text/plain", `{}`, nil, 400, "invalid_input"},
		{"register/missing email", post, register, jsonCT, `{"username":"erin","password":"erin-password-1"}`, nil, 400, "invalid_input"},
		{"register/number username", post, register, jsonCT, `{"username":7,"email":"erin@example.com","password":"erin-password-1"}`, nil, 400, "invalid_input"},
		{"register/unknown field", post, register, jsonCT, `{"username":"erin","email":"erin@example.com","password":"erin-password-1","role":"admin"}`, nil, 400, "invalid_input"},
		{"register/bad username", post, register, jsonCT, `{"username":"erin smith!","email":"erin@example.com","password":"erin-password-1"}`, nil, 400, "invalid_input"},
		{"register/short username", post, register, jsonCT, `{"username":"er","email":"erin@example.com","password":"erin-password-1"}`, nil, 400, "invalid_input"},
		{"register/long username", post, register, jsonCT, `{"username":"` + strings.Repeat("e", 41) + `","email":"erin@example.com","password":"erin-password-1"}`, nil, 400, "invalid_input"},
		{"register/NUL username", post, register, jsonCT, `{"username":"er\u0000in","email":"erin@example.com","password":"erin-password-1"}`, nil, 400, "invalid_input"},
		{"register/NUL in email", post, register, jsonCT, `{"username":"erin","email":"er\u0000in@example.com","password":"erin-password-1"}`, nil, 400, "invalid_input"},
		{"register/bad email", post, register, jsonCT, `{"username":"erin","email":"not-an-email","password":"erin-password-1"}`, nil, 400, "invalid_input"},
		{"register/email without domain", post, register, jsonCT, `{"username":"erin","email":"erin@localhost","password":"erin-password-1"}`, nil, 400, "invalid_input"},
		{"register/long email", post, register, jsonCT, `{"username":"erin","email":"erin@` + long(300) + `.com","password":"erin-password-1"}`, nil, 400, "invalid_input"},
		{"register/weak password", post, register, jsonCT, `{"username":"erin","email":"erin@example.com","password":"short"}`, nil, 400, "weak_password"},
		{"register/password is username", post, register, jsonCT, `{"username":"erin-smith","email":"erin@example.com","password":"Erin-Smith"}`, nil, 400, "weak_password"},
		{"register/long password", post, register, jsonCT, `{"username":"erin","email":"erin@example.com","password":"` + long(600) + `"}`, nil, 400, "weak_password"},
		{"register/duplicate username", post, register, jsonCT, `{"username":"alice","email":"alice2@example.com","password":"alice-password-2"}`, nil, 409, "conflict"},
		{"register/duplicate username, other case", post, register, jsonCT, `{"username":"ALICE","email":"alice2@example.com","password":"alice-password-2"}`, nil, 409, "conflict"},
		{"register/duplicate email", post, register, jsonCT, `{"username":"alice2","email":"Alice@Example.com","password":"alice-password-2"}`, nil, 409, "conflict"},
		{"register/bad invite", post, register, jsonCT, `{"username":"erin","email":"erin@example.com","password":"erin-password-1","invite":"garbage"}`, nil, 400, "invalid_invite"},
		{"register/long invite", post, register, jsonCT, `{"username":"erin","email":"erin@example.com","password":"erin-password-1","invite":"` + long(500) + `"}`, nil, 400, "invalid_invite"},

		// The signed-in endpoints without a session.
		{"me/anonymous", http.MethodGet, "/api/v1/me", "", "", nil, 401, "unauthorized"},
		{"me/garbage bearer", http.MethodGet, "/api/v1/me", "", "", bearer("garbage"), 401, "unauthorized"},
		{"me/long bearer", http.MethodGet, "/api/v1/me", "", "", bearer(long(5000)), 401, "unauthorized"},
		{"me/refresh token as bearer", http.MethodGet, "/api/v1/me", "", "", bearer(alice.RefreshToken), 401, "unauthorized"},
		{"me/tampered bearer", http.MethodGet, "/api/v1/me", "", "", bearer(tamper(alice.AccessToken)), 401, "unauthorized"},
		{"me/empty bearer", http.MethodGet, "/api/v1/me", "", "", []string{"Authorization", "Bearer "}, 401, "unauthorized"},
		{"me/basic auth", http.MethodGet, "/api/v1/me", "", "", []string{"Authorization", "Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQtMQ=="}, 401, "unauthorized"},
		{"me/garbage cookie", http.MethodGet, "/api/v1/me", "", "", []string{"Cookie", sessionCookie("garbage")}, 401, "unauthorized"},
		{"me/long cookie", http.MethodGet, "/api/v1/me", "", "", []string{"Cookie", sessionCookie(long(4000))}, 401, "unauthorized"},
		{"me/sessions anonymous", http.MethodGet, "/api/v1/me/sessions", "", "", nil, 401, "unauthorized"},
		{"me/revoke all anonymous", http.MethodDelete, "/api/v1/me/sessions", "", "", nil, 401, "unauthorized"},
		{"me/revoke one anonymous", http.MethodDelete, "/api/v1/me/sessions/" + bobMe.Session.ID, "", "", nil, 401, "unauthorized"},
		{"me/password anonymous", post, "/api/v1/me/password", jsonCT, `{"current_password":"a","new_password":"b"}`, nil, 401, "unauthorized"},
		{"logout anonymous", post, "/api/v1/auth/logout", "", "", nil, 401, "unauthorized"},
		{"me/POST", post, "/api/v1/me", "", "", bearer(alice.AccessToken), 405, "method_not_allowed"},

		// DELETE /api/v1/me/sessions/{id}
		{"revoke/very long id", http.MethodDelete, "/api/v1/me/sessions/" + long(5000), "", "", bearer(alice.AccessToken), 404, "not_found"},
		{"revoke/129-byte id", http.MethodDelete, "/api/v1/me/sessions/" + long(129), "", "", bearer(alice.AccessToken), 404, "not_found"},
		{"revoke/unknown id", http.MethodDelete, "/api/v1/me/sessions/nope", "", "", bearer(alice.AccessToken), 404, "not_found"},
		{"revoke/encoded slash", http.MethodDelete, "/api/v1/me/sessions/a%2Fb", "", "", bearer(alice.AccessToken), 404, "not_found"},
		{"revoke/encoded NUL", http.MethodDelete, "/api/v1/me/sessions/a%00b", "", "", bearer(alice.AccessToken), 404, "not_found"},
		{"revoke/someone else's session", http.MethodDelete, "/api/v1/me/sessions/" + bobMe.Session.ID, "", "", bearer(alice.AccessToken), 404, "not_found"},
		{"revoke/someone else's, by cookie", http.MethodDelete, "/api/v1/me/sessions/" + bobMe.Session.ID, "", "", []string{"Cookie", sessionCookie(aliceCookie)}, 404, "not_found"},

		// POST /api/v1/me/password (dave: failures count towards his lock)
		{"password/wrong current", post, "/api/v1/me/password", jsonCT, `{"current_password":"not-daves-1","new_password":"dave-password-2"}`, bearer(dave.AccessToken), 401, "invalid_credentials"},
		{"password/weak new", post, "/api/v1/me/password", jsonCT, `{"current_password":"dave-password-1","new_password":"short"}`, bearer(dave.AccessToken), 400, "weak_password"},
		{"password/missing new", post, "/api/v1/me/password", jsonCT, `{"current_password":"dave-password-1"}`, bearer(dave.AccessToken), 400, "invalid_input"},
		{"password/malformed", post, "/api/v1/me/password", jsonCT, `{"current_password":`, bearer(dave.AccessToken), 400, "invalid_input"},
		{"password/no content type", post, "/api/v1/me/password", "", `{"current_password":"dave-password-1","new_password":"dave-password-2"}`, bearer(dave.AccessToken), 400, "invalid_input"},
		{"password/huge", post, "/api/v1/me/password", jsonCT, `{"current_password":"` + long(100<<10) + `","new_password":"x"}`, bearer(dave.AccessToken), 400, "invalid_input"},
		{"password/long current", post, "/api/v1/me/password", jsonCT, `{"current_password":"` + long(5000) + `","new_password":"dave-password-2"}`, bearer(dave.AccessToken), 401, "invalid_credentials"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := c.hdr
			if c.ct != "" {
				hdr = append([]string{"Content-Type", c.ct}, hdr...)
			}
			var r reply
			if c.body != "" {
				r = do(t, c.method, g.URL+c.path, strings.NewReader(c.body), hdr...)
			} else {
				r = do(t, c.method, g.URL+c.path, nil, hdr...)
			}
			if r.Status >= 500 || r.Status < 400 {
				t.Errorf("status %d, want a 4xx (%d): %.300s", r.Status, c.status, r.Body)
			} else if r.Status != c.status {
				t.Errorf("status %d, want %d: %.300s", r.Status, c.status, r.Body)
			}
			if e := r.errorBody(t); c.code != "" && e.Error.Code != c.code {
				t.Errorf("error code %q, want %q (message %q)", e.Error.Code, c.code, e.Error.Message)
			}
		})
	}

	// A sign-in is not refused for the client's User-Agent, whatever its
	// bytes: not valid UTF-8, or long enough to be cut in the middle of a
	// character when it is stored.
	for name, ua := range map[string]string{
		"invalid UTF-8":           "Mozilla/5.0 \xff\xfe",
		"multi-byte at the limit": strings.Repeat("a", 511) + "é and more",
	} {
		t.Run("login/user agent "+name, func(t *testing.T) {
			r := postJSON(t, g.URL+"/api/v1/auth/login", map[string]string{"username": "alice", "password": "alice-password-1"}, "User-Agent", ua)
			if r.Status != http.StatusOK {
				t.Errorf("API login with that User-Agent: %d %s", r.Status, r.Body)
			}
			resp, err := noRedirects.Do(formRequest(t, g, ua, url.Values{"username": {"alice"}, "password": {"alice-password-1"}}))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusSeeOther {
				t.Errorf("form login with that User-Agent: %d", resp.StatusCode)
			}
		})
	}

	// The login form: a username no account can have is wrong, not a
	// failure of the service.
	for name, username := range map[string]string{
		"NUL":           "ali\x00ce",
		"NUL in email":  "ali\x00ce@example.com",
		"invalid UTF-8": "ali\xffce",
		"long":          long(300),
	} {
		t.Run("login form/"+name, func(t *testing.T) {
			resp, err := noRedirects.Do(formRequest(t, g, "", url.Values{"username": {username}, "password": {"whatever-1"}}))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode >= 500 || resp.StatusCode < 400 {
				t.Errorf("form login as %q: %d, want a 4xx", username, resp.StatusCode)
			}
		})
	}

	// Nothing above changed anyone's sessions or passwords.
	for _, tok := range []string{alice.AccessToken, bob.AccessToken, dave.AccessToken} {
		if r, _ := getMe(t, g, bearer(tok)...); r.Status != http.StatusOK {
			t.Errorf("a session ended by bad input: %d %s", r.Status, r.Body)
		}
	}
	wantIDE(t, g, aliceCookie, "/still-here")
	apiLogin(t, g, "dave", "dave-password-1")
	if r := do(t, http.MethodGet, g.URL+"/healthz", nil); r.Status != http.StatusOK {
		t.Errorf("/healthz after bad input: %d", r.Status)
	}
	if us := listUsers(t, cfg); len(us) != 3 {
		t.Errorf("bad registrations created accounts: %+v", us)
	}
	if s := g.stderr.String(); strings.Contains(s, "panic") {
		t.Errorf("the gateway panicked:\n%s", s)
	}
}

// formRequest is a post of the login form with a valid CSRF token and, if
// not empty, the given User-Agent.
func formRequest(t *testing.T, g *testGateway, userAgent string, form url.Values) *http.Request {
	t.Helper()
	r := do(t, http.MethodGet, g.URL+"/login", nil)
	m := csrfRE.FindSubmatch(r.Body)
	if m == nil {
		t.Fatalf("no CSRF token on the login page:\n%s", r.Body)
	}
	var csrfCookie string
	for _, ck := range (&http.Response{Header: r.Header}).Cookies() {
		if ck.Name == "codehub_csrf" {
			csrfCookie = ck.Value
		}
	}
	form.Set("csrf", string(m[1]))
	form.Set("to", "/")
	req, err := http.NewRequest(http.MethodPost, g.URL+"/login", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Cookie", "codehub_csrf="+csrfCookie)
	if userAgent != "" {
		req.Header.Set("User-Agent", userAgent)
	}
	return req
}

// tamper changes a character near the end of a token (not the last one,
// whose low bits may be padding that a lenient decoder ignores).
func tamper(tok string) string {
	i := len(tok) - 5
	repl := byte('A')
	if tok[i] == 'A' {
		repl = 'B'
	}
	return tok[:i] + string(repl) + tok[i+1:]
}
