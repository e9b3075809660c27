package web

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// TestPagesRender renders every page with representative data, so that a
// template mistake fails here rather than as a 500 in front of a user.
func TestPagesRender(t *testing.T) {
	ts, err := Parse()
	if err != nil {
		t.Fatal(err)
	}
	type loginData struct {
		CSRF, To, Error, Username, Hint string
		AskUsername, CanSignUp          bool
	}
	type message struct {
		Message, Detail string
		Alert, Progress bool
		Link, LinkText  string
	}
	pages := []struct {
		name string
		page Page
		want []string
	}{
		{"login.html", Page{Title: "Sign in", Data: loginData{CSRF: "tok", To: "/x", Error: "Wrong <password>", AskUsername: true, Username: "ann"}},
			[]string{`name="csrf" value="tok"`, `id="username"`, `value="ann"`, "Wrong &lt;password&gt;", `role="alert"`}},
		{"login.html", Page{Title: "Sign in", Data: loginData{CSRF: "tok", Hint: "generated"}},
			[]string{`autocomplete="current-password"`, "generated"}},
		{"logout.html", Page{Title: "Sign out", Data: struct{ CSRF string }{"tok"}}, []string{`action="/logout"`}},
		{"message.html", Page{Title: "Starting", RefreshSeconds: 2, Data: message{Message: "wait", Progress: true}},
			[]string{`http-equiv="refresh" content="2"`, `role="progressbar"`}},
		{"message.html", Page{Title: "Bad Gateway", Data: message{Message: "down", Alert: true, Link: "/", LinkText: "Back"}},
			[]string{`role="alert"`, `href="/"`}},
	}
	for _, p := range pages {
		rec := httptest.NewRecorder()
		if err := ts.Render(rec, 200, p.name, p.page); err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		body := rec.Body.String()
		for _, w := range p.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s lacks %q", p.name, w)
			}
		}
		if strings.Contains(body, "<script") || strings.Contains(body, "style=") {
			t.Errorf("%s has inline script or style, which the page CSP forbids", p.name)
		}
	}
}

func TestStaticFiles(t *testing.T) {
	h := Static()
	for _, f := range []string{"codehub.css", "logo.svg"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", StaticPrefix+f, nil))
		if rec.Code != 200 || rec.Body.Len() == 0 {
			t.Errorf("%s: %d", f, rec.Code)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", StaticPrefix+"../web.go", nil))
	if rec.Code == 200 {
		t.Error("static handler served a file outside its directory")
	}
}
