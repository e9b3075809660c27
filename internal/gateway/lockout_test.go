package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/config"
	"github.com/codehub-dev/codehub/internal/throttle"
	"github.com/codehub-dev/codehub/internal/user"
)

// These tests sign in over HTTP as people and attackers do, from many
// addresses: the gateway trusts the loopback proxy's X-Forwarded-For.

// lockoutEnv is an admin env whose clients may come from any address,
// with a manual clock and the given throttle.
func lockoutEnv(t *testing.T, th *throttle.Config) (*adminEnv, *fakeClock) {
	clock := &fakeClock{t: time.Now().Truncate(time.Second)}
	if th != nil {
		th.Now = clock.Now
	}
	e := newAdminEnv(t, adminSetup{throttle: th, now: clock.Now, mutate: func(c *config.Config) {
		c.TrustedProxies = []string{"127.0.0.0/8", "::1"}
	}})
	return e, clock
}

// httpAnswer is what one sign-in attempt tells whoever sent it.
type httpAnswer struct {
	Status           int
	Code, Message    string
	RetryAfter, Body string
}

// apiLogin signs in through the API from address ip.
func (e *adminEnv) apiLogin(name, pw, ip string) httpAnswer {
	e.t.Helper()
	body, _ := json.Marshal(map[string]string{"username": name, "password": pw})
	st, b, hdr := e.call("", "POST", "/auth/login", string(body), "X-Forwarded-For", ip)
	a := httpAnswer{Status: st, RetryAfter: hdr.Get("Retry-After")}
	if st == http.StatusOK {
		a.Body = b
		return a
	}
	a.Code, a.Message = errorCode(b)
	return a
}

// For a name with an account and one without, every answer of a long
// sequence of attempts is the same: status, error code and message, and
// Retry-After, through failures, a lock of the address, throttling, and
// a lock of the name for everyone (which answers the right password as a
// wrong one).
func TestLoginSameAnswersForUnknownNamesHTTP(t *testing.T) {
	run := func(name string, exists bool) []httpAnswer {
		e, clock := lockoutEnv(t, &throttle.Config{PerAddressBurst: 7, PerAddressInterval: time.Minute, GlobalBurst: 1000, GlobalInterval: time.Second})
		if exists {
			e.mustUser(name, user.RoleUser)
		}
		var out []httpAnswer
		for range 8 {
			out = append(out, e.apiLogin(name, "wrong-password-1", "192.0.2.7"))
		}
		clock.Advance(30 * time.Second)
		out = append(out, e.apiLogin(name, "wrong-password-1", "192.0.2.7"))
		for i := 1; i <= 10; i++ {
			out = append(out, e.apiLogin(name, "wrong-password-1", fmt.Sprintf("203.0.113.%d", i)))
		}
		out = append(out, e.apiLogin(name, multiPW, "198.51.100.1"))
		out = append(out, e.apiLogin(name, "wrong-password-1", "198.51.100.2"))
		return out
	}
	known, unknown := run("alice", true), run("nobody", false)
	if !slices.Equal(known, unknown) {
		for i := range known {
			t.Logf("%2d %+v\n   %+v", i+1, known[i], unknown[i])
		}
		t.Fatal("a name with an account and one without were answered differently")
	}
	var seen []string
	for _, a := range known {
		seen = append(seen, fmt.Sprintf("%d %s", a.Status, a.Code))
	}
	for _, want := range []string{"401 invalid_credentials", "423 account_locked", "429 too_many_attempts"} {
		if !slices.Contains(seen, want) {
			t.Fatalf("answers %v lack %q", seen, want)
		}
	}
	last := known[len(known)-1]
	if last.Status != http.StatusLocked || !strings.Contains(last.Message, "many addresses") || last.RetryAfter != "900" {
		t.Fatalf("name lock: %+v", last)
	}
}

// Five failures from five addresses, then the right password from a
// sixth: signed in. Failures from one address lock only that address.
func TestLoginFiveAddressesThenSixthHTTP(t *testing.T) {
	e, _ := lockoutEnv(t, nil)
	e.mustUser("alice", user.RoleUser)
	for i := 1; i <= 5; i++ {
		if a := e.apiLogin("alice", "wrong-password-1", fmt.Sprintf("203.0.113.%d", i)); a.Status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %+v", i, a)
		}
	}
	if a := e.apiLogin("alice", multiPW, "192.0.2.6"); a.Status != http.StatusOK {
		t.Fatalf("right password from a sixth address: %+v; want 200", a)
	}
	for range 5 {
		e.apiLogin("alice", "wrong-password-1", "203.0.113.1")
	}
	if a := e.apiLogin("alice", multiPW, "203.0.113.1"); a.Status != http.StatusLocked || a.RetryAfter != "60" {
		t.Fatalf("right password from the address that failed 6 times: %+v; want 423 for a minute", a)
	}
	if a := e.apiLogin("alice", multiPW, "203.0.113.2"); a.Status != http.StatusOK {
		t.Fatalf("right password from another address: %+v", a)
	}
}

// An attack from other addresses that empties the global throttle bucket
// does not keep the real user out.
func TestLoginGlobalBucketEmptyStillSignsIn(t *testing.T) {
	e, _ := lockoutEnv(t, &throttle.Config{PerAddressBurst: 5, PerAddressInterval: time.Minute, GlobalBurst: 3, GlobalInterval: time.Hour})
	e.mustUser("alice", user.RoleUser)
	for i := 1; i <= 6; i++ {
		e.apiLogin(fmt.Sprintf("victim%d", i), "wrong-password-1", fmt.Sprintf("203.0.113.%d", i%3+1))
	}
	if a := e.apiLogin("someone", "wrong-password-1", "203.0.113.1"); a.Status != http.StatusTooManyRequests {
		t.Fatalf("an address that failed, with the global bucket empty: %+v; want 429", a)
	}
	for i := range 3 {
		if a := e.apiLogin("alice", multiPW, "192.0.2.7"); a.Status != http.StatusOK {
			t.Fatalf("sign-in %d from a clean address with the global bucket empty: %+v; want 200", i+1, a)
		}
	}
}

// formBrowser is a browser with a cookie jar, signing in with the form.
type formBrowser struct {
	t    testing.TB
	base string
	c    *http.Client
	ip   string
}

func (e *adminEnv) formBrowser(ip string) *formBrowser {
	jar, _ := cookiejar.New(nil)
	return &formBrowser{t: e.t, base: e.front.URL, ip: ip, c: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *formBrowser) do(method, path string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	var rd *strings.Reader
	if form != nil {
		rd = strings.NewReader(form.Encode())
	} else {
		rd = strings.NewReader("")
	}
	req, err := http.NewRequest(method, b.base+path, rd)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html")
	req.Header.Set("X-Forwarded-For", b.ip)
	req.Header.Set("User-Agent", "form-browser/1.0")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", b.base)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp, sb.String()
}

func (b *formBrowser) cookie(name string) string {
	u, _ := url.Parse(b.base)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// login posts the sign-in form and returns the answer.
func (b *formBrowser) login(name, pw, to string) (*http.Response, string) {
	b.t.Helper()
	b.do("GET", "/login", nil)
	return b.do("POST", "/login", url.Values{"username": {name}, "password": {pw}, "csrf": {b.cookie(csrfCookie)}, "to": {to}})
}

// A browser that signed in before keeps its device cookie, which lets it
// through a lock of the name for every address; another browser with the
// right password is answered as the attackers are.
func TestLoginDeviceCookieThroughNameLock(t *testing.T) {
	e, _ := lockoutEnv(t, nil)
	e.mustUser("alice", user.RoleUser)
	laptop := e.formBrowser("192.0.2.7")
	resp, _ := laptop.login("alice", multiPW, "/")
	if resp.StatusCode != http.StatusSeeOther || laptop.cookie(deviceCookie) == "" {
		t.Fatalf("form sign-in: %d, device cookie %q", resp.StatusCode, laptop.cookie(deviceCookie))
	}
	for _, c := range resp.Cookies() {
		if c.Name == deviceCookie && (!c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.MaxAge < 29*24*3600) {
			t.Fatalf("device cookie: %+v", c)
		}
	}
	for i := 1; i <= 10; i++ {
		e.apiLogin("alice", "wrong-password-1", fmt.Sprintf("203.0.113.%d", i))
	}
	stranger := e.formBrowser("198.51.100.3")
	resp, body := stranger.login("alice", multiPW, "/")
	if resp.StatusCode != http.StatusLocked || !strings.Contains(body, "many addresses") {
		t.Fatalf("another browser during the name lock: %d", resp.StatusCode)
	}
	// The laptop, now on another network, gets in.
	laptop.ip = "198.51.100.4"
	resp, _ = laptop.login("alice", multiPW, "/")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("trusted browser during the name lock: %d %q; want signed in", resp.StatusCode, resp.Header.Get("Location"))
	}
	// A device cookie of alice does not help with another name.
	e.mustUser("carol", user.RoleUser)
	for i := 1; i <= 10; i++ {
		e.apiLogin("carol", "wrong-password-1", fmt.Sprintf("203.0.113.%d", i))
	}
	if resp, _ := laptop.login("carol", multiPW, "/"); resp.StatusCode != http.StatusLocked {
		t.Fatalf("alice's device cookie for carol: %d; want 423", resp.StatusCode)
	}
}

// The sixth browser sign-in with the default cap of five ends the least
// recently used session, and the next page says so, once.
func TestLoginOverSessionCapShowsNotice(t *testing.T) {
	e, clock := lockoutEnv(t, nil)
	alice := e.mustUser("alice", user.RoleUser) // one API session
	var browsers []*formBrowser
	for i := range 5 {
		clock.Advance(time.Second)
		b := e.formBrowser(fmt.Sprintf("192.0.2.%d", 10+i))
		resp, _ := b.login("alice", multiPW, "/?folder=/src")
		browsers = append(browsers, b)
		if i < 4 && resp.Header.Get("Location") != "/?folder=/src" {
			t.Fatalf("sign-in %d: %d to %q; want straight to the IDE", i+1, resp.StatusCode, resp.Header.Get("Location"))
		}
		if i == 4 {
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login/notice?to=%2F%3Ffolder%3D%2Fsrc" {
				t.Fatalf("sign-in over the cap: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
			}
		}
	}
	last := browsers[4]
	resp, body := last.do("GET", "/login/notice?to=%2F%3Ffolder%3D%2Fsrc", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "You were signed in 5 times, the most allowed") ||
		!strings.Contains(body, `href="/?folder=/src"`) || !strings.Contains(body, `http-equiv="refresh"`) {
		t.Fatalf("notice page: %d %.600s", resp.StatusCode, body)
	}
	resp, _ = last.do("GET", "/login/notice?to=%2F%3Ffolder%3D%2Fsrc", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/?folder=/src" {
		t.Fatalf("notice page again: %d %q; want on to the IDE", resp.StatusCode, resp.Header.Get("Location"))
	}
	ss, err := e.id.UserSessions(context.Background(), alice.ID)
	if err != nil || len(ss) != 5 {
		t.Fatalf("%d sessions, %v; want 5", len(ss), err)
	}
	for _, b := range browsers {
		if resp, _ := b.do("GET", "/index.html", nil); resp.StatusCode != http.StatusOK {
			t.Errorf("browser at %s: %d; want its session alive", b.ip, resp.StatusCode)
		}
	}
	if st, _, _ := e.call("alice", "GET", "/me", ""); st != http.StatusUnauthorized {
		t.Errorf("the API session, least recently used: %d; want ended", st)
	}
	var reasons []string
	for _, ev := range e.audit.since(0) {
		if ev.EventType == audit.SessionRevoked {
			reasons = append(reasons, fmt.Sprint(ev.Metadata["reason"]))
		}
	}
	if !slices.Contains(reasons, "max sessions per user: least recently used ended") {
		t.Fatalf("session.revoked reasons %q", reasons)
	}
	// Without a session the notice page sends to sign-in.
	if resp, _ := e.formBrowser("192.0.2.99").do("GET", "/login/notice?to=/x", nil); resp.StatusCode != http.StatusSeeOther ||
		!strings.HasPrefix(resp.Header.Get("Location"), "/login?to=") {
		t.Fatalf("notice page without a session: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// The admin API shows a user's locks per address and clears one or all.
func TestAdminUserLocks(t *testing.T) {
	e, _ := lockoutEnv(t, nil)
	u := e.mustUser("alice", user.RoleUser)
	for range 5 {
		e.apiLogin("alice", "wrong-password-1", "192.0.2.7")
		e.apiLogin("alice@example.com", "wrong-password-1", "2001:db8:1:2::7")
	}
	var got struct {
		Username string     `json:"username"`
		Locks    []lockView `json:"locks"`
	}
	e.decode("root", "GET", "/admin/users/"+u.ID, "", &got)
	var clients []string
	for _, l := range got.Locks {
		if l.Locked {
			clients = append(clients, l.Name+" "+l.Client)
		}
	}
	if want := []string{"alice 192.0.2.7", "alice@example.com 2001:db8:1:2::/64"}; !slices.Equal(clients, want) {
		t.Fatalf("locks = %+v; want %q", got.Locks, want)
	}
	if st, b, _ := e.call("root", "POST", "/admin/users/"+u.ID+"/unlock", `{"client":"192.0.2.7"}`); st != http.StatusNoContent {
		t.Fatalf("clear one lock: %d %s", st, b)
	}
	if a := e.apiLogin("alice", multiPW, "192.0.2.7"); a.Status != http.StatusOK {
		t.Fatalf("after clearing: %+v", a)
	}
	if a := e.apiLogin("alice@example.com", multiPW, "2001:db8:1:2::8"); a.Status != http.StatusLocked {
		t.Fatalf("the other lock: %+v; want still locked", a)
	}
	if st, b, _ := e.call("root", "POST", "/admin/users/"+u.ID+"/unlock", `{"client":"192.0.2.7"}`); st != http.StatusNotFound {
		t.Fatalf("clear a lock that is gone: %d %s", st, b)
	}
	if st, _, _ := e.call("watcher", "POST", "/admin/users/"+u.ID+"/unlock", ""); st != http.StatusForbidden {
		t.Fatalf("an auditor clears locks: %d", st)
	}
	if st, b, _ := e.call("root", "POST", "/admin/users/"+u.ID+"/unlock", ""); st != http.StatusNoContent {
		t.Fatalf("unlock: %d %s", st, b)
	}
	e.decode("root", "GET", "/admin/users/"+u.ID, "", &got)
	if len(got.Locks) != 0 {
		t.Fatalf("after unlock: %+v", got.Locks)
	}
	if a := e.apiLogin("alice@example.com", multiPW, "2001:db8:1:2::8"); a.Status != http.StatusOK {
		t.Fatalf("after unlock: %+v", a)
	}
	var actions []string
	for _, ev := range e.audit.since(0) {
		if ev.EventType == audit.AdminAction {
			actions = append(actions, fmt.Sprint(ev.Metadata["action"]))
		}
	}
	if !slices.Contains(actions, "user.clear_lock") || !slices.Contains(actions, "user.unlock") {
		t.Fatalf("admin actions %q", actions)
	}
}

// The dashboard's user page lists the locks and clears one, asking first
// and only with the page's CSRF token.
func TestDashboardShowsAndClearsLock(t *testing.T) {
	e, _ := lockoutEnv(t, nil)
	u := e.mustUser("alice", user.RoleUser)
	for range 5 {
		e.apiLogin("alice", "wrong-password-1", "192.0.2.7")
	}
	root := e.browser("root")
	page := root.get("/admin/users/" + u.ID)
	wantPage(t, "user page", page, http.StatusOK, `id="locks-table"`, `data-client="192.0.2.7"`,
		`action="/admin/users/`+u.ID+`/clear-lock"`, `name="client" value="192.0.2.7"`, `id="action-unlock"`)
	path := "/admin/users/" + u.ID + "/clear-lock"
	mark := e.audit.mark()
	for _, forged := range []struct {
		form url.Values
		hdr  []string
	}{
		{url.Values{"client": {"192.0.2.7"}, "confirmed": {"yes"}, "csrf": {strings.Repeat("x", 43)}}, nil},
		{url.Values{"client": {"192.0.2.7"}, "confirmed": {"yes"}}, []string{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"}},
	} {
		if r := root.post(path, forged.form, forged.hdr...); r.status != http.StatusForbidden {
			t.Fatalf("forged clear: %d", r.status)
		}
	}
	for _, ev := range e.audit.since(mark) {
		if ev.EventType == audit.AdminAction || ev.EventType == audit.AccountUnlocked {
			t.Fatalf("a forged form changed something: %+v", ev)
		}
	}
	if a := e.apiLogin("alice", multiPW, "192.0.2.7"); a.Status != http.StatusLocked {
		t.Fatalf("after forged clears: %+v; want still locked", a)
	}
	r := root.post(path, url.Values{"client": {"192.0.2.7"}, "back": {"/admin/users/" + u.ID}})
	wantPage(t, "confirmation", r, http.StatusOK, `name="confirmed" value="yes"`, `name="client"`)
	r = root.confirm(path, url.Values{"client": {"192.0.2.7"}, "back": {"/admin/users/" + u.ID}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("confirmed clear: %d %.300s", r.status, r.body)
	}
	page = root.get(r.location)
	wantPage(t, "after clearing", page, http.StatusOK, "The lock of alice from 192.0.2.7 is cleared.", "No failed sign-in lately.")
	var types []string
	for _, ev := range e.audit.since(mark) {
		types = append(types, ev.EventType)
		if ev.EventType == audit.AccountUnlocked && (ev.Metadata["client"] != "192.0.2.7" || ev.UserID != u.ID) {
			t.Errorf("user.unlocked = %+v", ev)
		}
	}
	if !slices.Contains(types, audit.AdminAction) || !slices.Contains(types, audit.AccountUnlocked) {
		t.Fatalf("events %v", types)
	}
	if a := e.apiLogin("alice", multiPW, "192.0.2.7"); a.Status != http.StatusOK {
		t.Fatalf("after clearing: %+v", a)
	}
	// An auditor sees the locks without the action.
	for range 5 {
		e.apiLogin("alice", "wrong-password-1", "192.0.2.8")
	}
	watcher := e.browser("watcher")
	page = watcher.get("/admin/users/" + u.ID)
	wantPage(t, "auditor's user page", page, http.StatusOK, `data-client="192.0.2.8"`)
	if strings.Contains(page.body, "/clear-lock") {
		t.Error("an auditor is offered to clear a lock")
	}
}
