package gateway

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/codehub-dev/codehub/internal/config"
	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/user"
	"github.com/codehub-dev/codehub/internal/web"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/net/http/httpguts"
)

// Fuzz targets for what the gateway reads from browsers and API clients.
// Each checks a property of the answer, not only that nothing panics.

// onSite reports whether a browser that follows Location loc stays on the
// site that sent it. Browsers (WHATWG URL) drop tabs and newlines, trim
// controls and spaces, and read a back slash as a slash; what is left
// stays on the site when it is a path: one slash, then not another.
func onSite(loc string) bool {
	loc = strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, loc)
	loc = strings.TrimFunc(loc, func(r rune) bool { return r <= ' ' })
	loc = strings.ReplaceAll(loc, `\`, "/")
	return strings.HasPrefix(loc, "/") && !strings.HasPrefix(loc, "//")
}

var redirectSeeds = []string{
	"/", "/?folder=/src", "//evil.example", "/\\evil.example", "\\\\evil.example", "https://evil.example/",
	"/%2F%2Fevil.example", "/\t/evil.example", "javascript:alert(1)", "/admin/users?x=1", "/account", "/admin/../account",
	"/./\\evil", " //evil.example", "/\x00/evil", "http:/evil.example", "/@evil.example", "/..//evil.example",
}

// FuzzSafeRedirect: a post-sign-in destination, and the dashboard's "back",
// is always on the gateway's site, as the Location the browser follows;
// and a destination that is already safe is kept as it is.
func FuzzSafeRedirect(f *testing.F) {
	for _, s := range redirectSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, to string) {
		got := safeRedirect(to)
		if got != "/" && got != to {
			t.Fatalf("safeRedirect(%q) = %q: neither the destination nor /", to, got)
		}
		back := dashBack(to, "/admin")
		for _, dest := range []string{got, back} {
			if !onSite(dest) {
				t.Fatalf("destination %q (from %q) leaves the site", dest, to)
			}
			rec := httptest.NewRecorder()
			http.Redirect(rec, httptest.NewRequest("POST", "https://gw.example/login", nil), dest, http.StatusSeeOther)
			if loc := rec.Header().Get("Location"); !onSite(loc) {
				t.Fatalf("Location %q (from %q) leaves the site", loc, to)
			}
		}
		if !strings.HasPrefix(back, "/admin") && !strings.HasPrefix(back, "/account") {
			t.Fatalf("dashBack(%q) = %q, outside the dashboard", to, back)
		}
	})
}

// quiet is the logger of fuzzed gateways: millions of refused requests
// would fill the test log.
var quiet = hclog.NewNullLogger()

// unthrottled lets the fuzzer try as many passwords as it likes.
func unthrottled(c *config.Config) {
	c.LoginThrottle.PerAddressBurst, c.LoginThrottle.GlobalBurst = 1<<30, 1<<30
}

// FuzzLoginForm posts any body to the sign-in form (with a valid CSRF
// cookie): the answer is never a server error, a session is given exactly
// when the form carries the right password and CSRF token, and the
// redirect after it never leaves the site.
func FuzzLoginForm(f *testing.F) {
	const tok = "cccccccccccccccccccccccccccccccccccccccccccc"
	form := "application/x-www-form-urlencoded"
	pw := url.QueryEscape(testPassword)
	for _, s := range []string{
		"csrf=" + tok + "&password=" + pw + "&to=%2F%3Ffolder%3D%2Fsrc",
		"csrf=" + tok + "&password=" + pw + "&to=%2F%2Fevil.example",
		"csrf=" + tok + "&password=" + pw + "&to=%2F%5Cevil.example",
		"csrf=" + tok + "&password=" + pw + "&to=https%3A%2F%2Fevil.example",
		"csrf=" + tok + "&password=wrong",
		"csrf=" + tok + "&password=" + pw + "&password=other",
		"csrf=wrong&password=" + pw,
		"csrf=" + tok + "&password=%zz",
		"", "&&&", "password=" + pw,
	} {
		f.Add(form, s)
	}
	f.Add("multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n"+tok+"\r\n--x--\r\n")
	f.Add("text/plain", "csrf="+tok)
	e := newEnvLogging(f, quiet, unthrottled)
	f.Fuzz(func(t *testing.T, ctype, body string) {
		if len(body) > 4*maxFormBytes {
			return
		}
		req := httptest.NewRequest("POST", "/login", strings.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		req.AddCookie(&http.Cookie{Name: csrfCookie, Value: tok})
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusSeeOther, http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("%q %q: status %d", ctype, body, rec.Code)
		}
		var session bool
		for _, c := range rec.Result().Cookies() {
			session = session || c.Name == e.cfg.Session.CookieName && c.Value != ""
		}
		if session != (rec.Code == http.StatusSeeOther) {
			t.Fatalf("%q: status %d, session cookie %v", body, rec.Code, session)
		}
		if rec.Code == http.StatusSeeOther && !onSite(rec.Header().Get("Location")) {
			t.Fatalf("%q: redirected off the site to %q", body, rec.Header().Get("Location"))
		}
		if ctype == form && len(body) <= maxFormBytes {
			v, err := url.ParseQuery(body)
			right := err == nil && v.Get("csrf") == tok && v.Get("password") == testPassword
			if right != session {
				t.Fatalf("%q: right password and token %v, signed in %v", body, right, session)
			}
		}
	})
}

// FuzzSessionCookie sends the IDE any Cookie header ("{tok}" stands for a
// live session's token): only the live session's cookie, as Go reads the
// header, reaches the IDE, and the gateway's own cookies never go on to
// it, however they are spelled.
func FuzzSessionCookie(f *testing.F) {
	for _, s := range []string{
		"codehub_session={tok}", "codehub_session={tok}; codehub_csrf=x; theme=dark", "a=b; codehub_session={tok}",
		"codehub_session=x; codehub_session={tok}", "codehub_session =  {tok}", " codehub_session={tok} ;codehub_csrf =y",
		"codehub_session=\"{tok}\"", "CODEHUB_SESSION={tok}", "codehub_session={tok}x", "codehub_session",
		"codehub_session\t={tok}", "codehub_session={tok};;;", "=;=;", "",
	} {
		f.Add(s)
	}
	e := newEnvLogging(f, quiet, unthrottled)
	c := e.client()
	e.login(c, testPassword).Body.Close()
	u, _ := url.Parse(e.front.URL)
	var token string
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == e.cfg.Session.CookieName {
			token = ck.Value
		}
	}
	if token == "" {
		f.Fatal("no session")
	}
	gatewayCookies := []string{e.cfg.Session.CookieName, csrfCookie}
	f.Fuzz(func(t *testing.T, header string) {
		header = strings.ReplaceAll(header, "{tok}", token)
		if len(header) > 8192 || !httpguts.ValidHeaderFieldValue(header) {
			return // the server refuses such headers itself
		}
		req := httptest.NewRequest("GET", "/x", nil)
		req.Header.Set("Cookie", header)
		before := len(e.upstream.reqs)
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, req)
		e.upstream.mu.Lock()
		reached := len(e.upstream.reqs) > before
		var up *http.Request
		if reached {
			up = e.upstream.reqs[len(e.upstream.reqs)-1]
		}
		e.upstream.reqs = e.upstream.reqs[:0]
		e.upstream.mu.Unlock()
		if !reached {
			if rec.Code != http.StatusUnauthorized {
				t.Fatalf("%q: %d without reaching the IDE", header, rec.Code)
			}
			return
		}
		if ck, err := req.Cookie(e.cfg.Session.CookieName); err != nil || ck.Value != token {
			t.Fatalf("%q reached the IDE without the session's cookie (%v, %v)", header, ck, err)
		}
		for _, line := range up.Header.Values("Cookie") {
			for _, ck := range (&http.Request{Header: http.Header{"Cookie": {line}}}).Cookies() {
				for _, name := range gatewayCookies {
					if ck.Name == name {
						t.Fatalf("%q: the IDE got the gateway's cookie %s in %q", header, name, line)
					}
				}
			}
			for _, part := range strings.Split(line, ";") {
				name, _, _ := strings.Cut(part, "=")
				name = strings.Trim(name, " \t")
				for _, g := range gatewayCookies {
					if strings.EqualFold(name, g) {
						t.Fatalf("%q: the IDE got something named like the gateway's cookie %s in %q", header, g, line)
					}
				}
			}
		}
	})
}

// FuzzForwardedHeaders: the client's address and scheme come from
// X-Forwarded-For and -Proto only when the connection comes from a trusted
// proxy; the address is always a real one, the scheme http or https.
func FuzzForwardedHeaders(f *testing.F) {
	for _, s := range []struct{ remote, xff, proto string }{
		{"10.0.0.5:4000", "203.0.113.9", "https"},
		{"10.0.0.5:4000", "203.0.113.9, 10.0.0.7", "http"},
		{"192.0.2.1:4000", "203.0.113.9", "https"},
		{"[::1]:4000", "2001:db8::1, ::1", "HTTPS"},
		{"10.0.0.5:4000", "not an address, 10.0.0.8", "https, http"},
		{"10.0.0.5:4000", "", ""},
		{"garbage", "1.2.3.4", "https"},
		{"[::ffff:10.0.0.5]:1", "::ffff:198.51.100.1", "https"},
	} {
		f.Add(s.remote, s.xff, s.proto)
	}
	e := newEnvLogging(f, quiet, func(c *config.Config) { c.TrustedProxies = []string{"10.0.0.0/8", "::1"} })
	f.Fuzz(func(t *testing.T, remote, xff, proto string) {
		if !httpguts.ValidHeaderFieldValue(xff) || !httpguts.ValidHeaderFieldValue(proto) {
			return // the server refuses such headers itself
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		r.Header.Set("X-Forwarded-For", xff)
		r.Header.Set("X-Forwarded-Proto", proto)
		addr, fwd, scheme := e.srv.clientInfo(r)
		if scheme != "http" && scheme != "https" {
			t.Fatalf("scheme %q", scheme)
		}
		if !addr.IsValid() {
			t.Fatalf("client address %v from %q / %q", addr, remote, xff)
		}
		peer, err := netip.ParseAddrPort(remote)
		if err != nil || !e.srv.isTrusted(peer.Addr().Unmap()) {
			want := netip.IPv4Unspecified()
			if err == nil {
				want = peer.Addr().Unmap()
			}
			if addr != want || fwd != "" || scheme != "http" {
				t.Fatalf("untrusted peer %q with X-Forwarded-For %q, -Proto %q: %v %q %s", remote, xff, proto, addr, fwd, scheme)
			}
			return
		}
		if addr != peer.Addr().Unmap() {
			found := false
			for _, p := range strings.Split(xff, ",") {
				if a, err := netip.ParseAddr(strings.TrimSpace(p)); err == nil && a.Unmap() == addr {
					found = true
				}
			}
			if !found {
				t.Fatalf("client %v is neither the peer %q nor in X-Forwarded-For %q", addr, remote, xff)
			}
		}
		if !strings.HasPrefix(strings.ReplaceAll(xff, " ", ""), strings.ReplaceAll(fwd, " ", "")) {
			t.Fatalf("forwarded-for %q is not the start of %q", fwd, xff)
		}
	})
}

// FuzzOrigin: an Origin is the gateway's own only when its scheme, host
// and port are those the browser used to reach the gateway, which are
// trusted from X-Forwarded-Proto only from a trusted proxy; and the
// gateway's own origin, written any legal way, is always its own.
func FuzzOrigin(f *testing.F) {
	for _, s := range []struct {
		origin, host, proto string
		trusted, tls        bool
	}{
		{"https://gw.example", "gw.example", "https", true, false},
		{"http://gw.example", "gw.example", "https", true, false},
		{"https://gw.example", "gw.example", "https", false, false},
		{"https://gw.example:443", "GW.example", "", false, true},
		{"http://gw.example:80", "gw.example:80", "", false, false},
		{"http://[::1]:8080", "[::1]:8080", "", false, false},
		{"https://ide.example.com", "gw.example", "", false, true},
		{"http://ide.example.com", "gw.example", "", false, false},
		{"null", "gw.example", "", false, false},
		{"http://gw.example.", "gw.example", "", false, false},
	} {
		f.Add(s.origin, s.host, s.proto, s.trusted, s.tls)
	}
	e := newEnvLogging(f, quiet, func(c *config.Config) {
		c.TrustedProxies = []string{"10.0.0.0/8"}
		c.TrustedOrigins = []string{"https://ide.example.com", "editor.example.com:8443"}
	})
	f.Fuzz(func(t *testing.T, origin, host, proto string, trusted, overTLS bool) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = host
		r.RemoteAddr = "192.0.2.1:1000"
		if trusted {
			r.RemoteAddr = "10.1.2.3:1000"
		}
		if overTLS {
			r.TLS = &tls.ConnectionState{}
		}
		r.Header.Set("X-Forwarded-Proto", proto)
		r.Header.Set("Origin", origin)
		scheme := "http"
		if overTLS {
			scheme = "https"
		}
		if trusted && (proto == "http" || proto == "https") {
			scheme = proto
		}
		verdict := e.srv.checkOrigin(r)
		u, err := url.Parse(origin)
		switch verdict {
		case originAbsent:
			if origin != "" {
				t.Fatalf("origin %q taken for none", origin)
			}
		case originOwn, originTrusted:
			if err != nil || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
				t.Fatalf("origin %q (%v) accepted", origin, err)
			}
			port := u.Port()
			if port == "" {
				port = defaultPort(strings.ToLower(u.Scheme))
			}
			if verdict == originOwn {
				hp := host
				if h, p, err := net.SplitHostPort(host); err == nil {
					hp = net.JoinHostPort(h, strings.TrimLeft(p, "0"))
				} else {
					hp = net.JoinHostPort(strings.Trim(host, "[]"), defaultPort(scheme))
				}
				want := net.JoinHostPort(u.Hostname(), strings.TrimLeft(port, "0"))
				if !strings.EqualFold(u.Scheme, scheme) || !strings.EqualFold(want, hp) {
					t.Fatalf("origin %q taken for the gateway's own, served as %s://%s", origin, scheme, host)
				}
			} else {
				h := strings.ToLower(u.Hostname())
				ok := strings.EqualFold(u.Scheme, "https") && h == "ide.example.com" && port == "443" ||
					strings.EqualFold(u.Scheme, scheme) && h == "editor.example.com" && port == "8443"
				if !ok {
					t.Fatalf("origin %q taken for a trusted one (gateway on %s)", origin, scheme)
				}
			}
		}
		if own, ok := parseOrigin(scheme + "://" + host); ok && verdict != originOwn && strings.EqualFold(origin, scheme+"://"+host) {
			t.Fatalf("the gateway's own origin %q (as %s) refused", origin, own)
		}
	})
}

// rolesNow returns whether the user with id is an administrator, or an
// auditor, now: fuzzed requests of an administrator change roles, so that
// who is staff is read before each request, as the gateway reads it.
func rolesNow(t *testing.T, e *adminEnv, id string) (admin, auditor bool) {
	t.Helper()
	if id == "" {
		return false, false
	}
	u, err := e.id.User(context.Background(), id)
	if err != nil {
		return false, false // deleted
	}
	return u.IsAdmin() && u.Active, u.HasRole(user.RoleAuditor) && u.Active
}

// FuzzAPI sends the JSON API any method, path, content type and body, as
// nobody, an ordinary user or an administrator ("{bob}" and "{root}" in
// the path or body stand for their ids). The answer is never a server
// error, an error is JSON with a code, and the admin API answers no one
// but administrators and auditors.
func FuzzAPI(f *testing.F) {
	const js = "application/json"
	pw := multiPW
	for _, s := range []struct {
		method, path, ctype, body string
		as                        byte
	}{
		{"POST", "/auth/login", js, `{"username":"bob","password":"` + pw + `"}`, 0},
		{"POST", "/auth/login", js, `{"username":"bob@example.com","password":"x"}`, 0},
		{"POST", "/auth/login", js, `{"username":"b\u043eb","password":"` + pw + `"}`, 0},
		{"POST", "/auth/login", js, `{"username":1}`, 0},
		{"POST", "/auth/login", js, `{"username":"bob","password":"x"} {}`, 0},
		{"POST", "/auth/login", "text/plain", `{}`, 0},
		{"POST", "/auth/refresh", js, `{"refresh_token":"chr1.x.0.y"}`, 0},
		{"POST", "/auth/register", js, `{"username":"newbie","email":"newbie@example.com","password":"` + pw + `"}`, 0},
		{"POST", "/auth/register", js, `{"username":"newbie","email":"n\u0435wbie@example.com","password":"` + pw + `","invite":"x"}`, 0},
		{"POST", "/auth/logout", js, ``, 2},
		{"GET", "/me", "", "", 2},
		{"GET", "/me/sessions", "", "", 2},
		{"DELETE", "/me/sessions/x", "", "", 2},
		{"POST", "/me/password", js, `{"current_password":"` + pw + `","new_password":"short"}`, 2},
		{"GET", "/admin/users?search=o&offset=-1&limit=100000", "", "", 1},
		{"GET", "/admin/users/{bob}", "", "", 1},
		{"GET", "/admin/users/{bob}", "", "", 2},
		{"GET", "/admin/users/{bob}", "", "", 0},
		{"POST", "/admin/users", js, `{"username":"carol","email":"carol@example.com","password":"` + pw + `","role":"auditor","metadata":{"groups":["a"]}}`, 1},
		{"PATCH", "/admin/users/{bob}", js, `{"email":"bob2@example.com","role":"admin","policy":"","active":true,"metadata":{}}`, 1},
		{"PATCH", "/admin/users/{root}", js, `{"active":false}`, 1},
		{"POST", "/admin/users/{bob}/lock", js, `{"until":"2999-01-01T00:00:00Z"}`, 1},
		{"POST", "/admin/users/{bob}/lock", js, `{"until":"yesterday"}`, 1},
		{"POST", "/admin/users/{bob}/unlock", js, ``, 1},
		{"POST", "/admin/users/{bob}/password", js, `{"password":"` + pw + `"}`, 1},
		{"DELETE", "/admin/users/{bob}/sessions", "", "", 1},
		{"POST", "/admin/invites", js, `{"email":"x@example.com","role":"user","ttl":"72h"}`, 1},
		{"POST", "/admin/invites", js, `{"ttl":"-1s"}`, 1},
		{"GET", "/admin/sessions?user={bob}&limit=1", "", "", 1},
		{"GET", "/admin/audit?user=bob&type=user.created&since=2020-01-01T00:00:00Z&until=x", "", "", 1},
		{"GET", "/admin/users/{bob}/usage?period=7d", "", "", 1},
		{"GET", "/admin/users/{bob}/quotas", "", "", 1},
		{"GET", "/admin/usage?offset=x", "", "", 1},
		{"GET", "/admin/overview", "", "", 3},
		{"DELETE", "/admin/users/{bob}", "", "", 1},
		{"PUT", "/nothing/here", js, `{}`, 1},
	} {
		f.Add(s.method, s.path, s.ctype, s.body, s.as)
	}
	e := newAdminEnv(f, adminSetup{logger: quiet, registration: "open"})
	who := []string{"", e.admin.Username, e.plain.Username, e.auditor.Username}
	ids := []string{"", e.admin.ID, e.plain.ID, e.auditor.ID}
	f.Fuzz(func(t *testing.T, method, path, ctype, body string, as byte) {
		if len(body) > 2*maxJSONBytes || len(path) > 2048 {
			return
		}
		path = strings.NewReplacer("{bob}", e.plain.ID, "{root}", e.admin.ID).Replace(path)
		body = strings.NewReplacer("{bob}", e.plain.ID, "{root}", e.admin.ID).Replace(body)
		req, err := http.NewRequest(method, "http://gw.example/api/v1"+path, strings.NewReader(body))
		if err != nil || req.URL.Host != "gw.example" || strings.ContainsAny(ctype, "\r\n") {
			return // not a request a client can send
		}
		req.Header.Set("Content-Type", ctype)
		caller := who[int(as)%len(who)]
		admin, auditor := rolesNow(t, e, ids[int(as)%len(ids)])
		if caller != "" {
			req.Header.Set("Authorization", "Bearer "+e.tokens[caller])
		}
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s as %q: %d %s", method, path, caller, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			if code, _ := errorCode(rec.Body.String()); code == "" || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
				t.Fatalf("%s %s as %q: %d without a JSON error: %q", method, path, caller, rec.Code, rec.Body)
			}
		}
		if strings.HasPrefix(req.URL.Path, "/api/v1/admin") && rec.Code < 400 &&
			!admin && !(auditor && (req.Method == http.MethodGet || req.Method == http.MethodHead)) {
			t.Fatalf("%s %s as %q: %d, the admin API answered a non-administrator", method, path, caller, rec.Code)
		}
	})
}

// FuzzPages sends the dashboard, the account page and the sign-up form any
// method, path, form and flash cookie, as nobody, an ordinary user or an
// administrator ("{bob}", "{root}" stand for their ids), with a valid CSRF
// pair. The answer is never a server error; the dashboard answers only
// staff and the account page only the signed in; redirects stay on the
// site; and no page carries a script but the dashboard's own, whatever
// the flash cookie or the form says.
func FuzzPages(f *testing.F) {
	const tok = "cccccccccccccccccccccccccccccccccccccccccccc"
	for _, s := range []struct {
		method, path, form, flash string
		as                        byte
	}{
		{"GET", "/admin", "", "", 1},
		{"GET", "/admin/users?search=%3Cscript%3E&page=-1", "", "", 1},
		{"GET", "/admin/users/{bob}", "", "PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg", 1},
		{"GET", "/admin/audit?user=bob&type=x&since=yesterday", "", "", 1},
		{"GET", "/admin/users", "", "", 2},
		{"GET", "/account", "", "PHNjcmlwdD4", 2},
		{"GET", "/account", "", "", 0},
		{"POST", "/admin/users/{bob}/role", "csrf=" + tok + "&role=admin&confirmed=yes&back=%2F%2Fevil.example", "", 1},
		{"POST", "/admin/users/{bob}/policy", "csrf=" + tok + "&policy=%3Cb%3E&confirmed=yes", "", 1},
		{"POST", "/admin/users/{root}/disable", "csrf=" + tok + "&confirmed=yes", "", 1},
		{"POST", "/admin/users/{bob}/delete", "csrf=" + tok, "", 1},
		{"POST", "/admin/users/{bob}/role", "csrf=" + tok + "&role=admin&confirmed=yes", "", 2},
		{"POST", "/admin/users", "csrf=" + tok + "&username=carol&email=carol%40example.com&password=" + multiPW + "&role=user", "", 1},
		{"POST", "/admin/invites", "csrf=" + tok + "&email=x%40example.com&role=auditor&ttl=72h", "", 1},
		{"POST", "/account/password", "csrf=" + tok + "&current_password=" + multiPW + "&new_password=a&confirm_password=b", "", 2},
		{"POST", "/account/sessions/x/revoke", "csrf=" + tok + "&back=%2Faccount%3Fx", "", 2},
		{"POST", "/signup", "csrf=" + tok + "&username=dave&email=d%D0%B0ve%40example.com&password=" + multiPW, "", 0},
		{"GET", "/signup?invite=%3Cx%3E", "", "", 0},
		{"POST", "/logout", "csrf=" + tok, "", 2},
	} {
		f.Add(s.method, s.path, s.form, s.flash, s.as)
	}
	e := newAdminEnv(f, adminSetup{logger: quiet, registration: "open"})
	sessions, ids := []string{""}, []string{"", e.admin.ID, e.plain.ID, e.auditor.ID}
	for _, u := range []string{e.admin.Username, e.plain.Username, e.auditor.Username} {
		res, err := e.id.Login(context.Background(), u, multiPW, identity.Client{IP: "192.0.2.7"})
		if err != nil {
			f.Fatal(err)
		}
		sessions = append(sessions, res.CookieToken)
	}
	f.Fuzz(func(t *testing.T, method, path, form, flash string, as byte) {
		if len(form) > 4*maxFormBytes || len(path) > 2048 {
			return
		}
		byName := strings.NewReplacer("{bob}", e.plain.ID, "{root}", e.admin.ID)
		req, err := http.NewRequest(method, "http://gw.example"+byName.Replace(path), strings.NewReader(byName.Replace(form)))
		if err != nil || req.URL.Host != "gw.example" || !httpguts.ValidHeaderFieldValue(flash) {
			return
		}
		who := int(as) % len(sessions)
		admin, auditor := rolesNow(t, e, ids[who])
		req.Header.Set("Accept", "text/html")
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		req.AddCookie(&http.Cookie{Name: csrfCookie, Value: tok})
		if sessions[who] != "" {
			req.AddCookie(&http.Cookie{Name: e.cfg.Session.CookieName, Value: sessions[who]})
		}
		if flash != "" {
			req.Header.Add("Cookie", flashCookie+"="+flash)
		}
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, req)
		p := req.URL.Path
		switch {
		case rec.Code >= 500:
			t.Fatalf("%s %s as %d: %d\n%s", method, p, who, rec.Code, rec.Body)
		case rec.Code < 300 && (p == "/admin" || strings.HasPrefix(p, "/admin/")) && !admin && !auditor:
			t.Fatalf("%s %s: %d to someone not staff", method, p, rec.Code)
		case rec.Code < 300 && (p == "/account" || strings.HasPrefix(p, "/account/")) && who == 0:
			t.Fatalf("%s %s: %d to someone not signed in", method, p, rec.Code)
		case rec.Code >= 300 && rec.Code < 400 && !onSite(rec.Header().Get("Location")):
			t.Fatalf("%s %s: redirected off the site to %q", method, p, rec.Header().Get("Location"))
		}
		if strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
			body := strings.ToLower(rec.Body.String())
			if n, own := strings.Count(body, "<script"), strings.Count(body, `<script src="`+web.StaticPrefix); n != own {
				t.Fatalf("%s %s: a script that is not the dashboard's:\n%s", method, p, rec.Body)
			}
		}
	})
}
