package web

import (
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// TestDashboardAssets: the dashboard's pages are defined, and its script
// and style sheet are served from here, asking nothing of any other
// origin. (The gateway's tests render the pages with real data.)
func TestDashboardAssets(t *testing.T) {
	ts, err := Parse()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"dash_head", "dash_foot", "dash_message.html", "dash_confirm.html", "admin_overview.html",
		"admin_users.html", "admin_user.html", "admin_sessions.html", "admin_workspaces.html", "admin_audit.html", "account.html"} {
		if ts.t.Lookup(name) == nil {
			t.Errorf("no template %s", name)
		}
	}
	remote := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import|eval\(|new Function|innerHTML`)
	h := Static()
	for file, ctype := range map[string]string{"dashboard.js": "javascript", "dashboard.css": "text/css"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", StaticPrefix+file, nil))
		if rec.Code != 200 || !strings.Contains(rec.Header().Get("Content-Type"), ctype) {
			t.Errorf("%s: %d %q", file, rec.Code, rec.Header().Get("Content-Type"))
		}
		if m := remote.FindString(rec.Body.String()); m != "" {
			t.Errorf("%s uses %q", file, m)
		}
	}
}
