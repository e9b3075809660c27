package gateway

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/resources"
	"github.com/codehub-dev/codehub/internal/user"
	"github.com/codehub-dev/codehub/internal/web"
)

// The admin dashboard (/admin) and the user's own page (/account) are
// server-rendered pages. Every action is an HTML form posted with the
// CSRF token of the page, behind a confirmation: dashboard.js asks in a
// <dialog>; without JavaScript the action answers with a confirmation
// page whose form posts again with confirmed=yes.

// dashCSP is the policy of the dashboard's pages: the page CSP plus the
// gateway's own scripts and their requests to the API.
const dashCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// flashCookie carries the outcome of an action to the page it returns
// to (post, redirect, get).
const flashCookie = "codehub_flash"

// dashHeaders sets the security headers of the dashboard's pages.
func (s *Server) dashHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", dashCSP)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		s.hsts(h)
		next.ServeHTTP(w, r)
	})
}

// signedInPage lets only signed-in people through, with their principal
// in the request context: a browser without a session is sent to the
// login page (and back), anything else is told 401.
func (s *Server) signedInPage(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.principal(r)
		if err != nil {
			s.log.Error("session lookup", "error", err)
			s.fail(w, r, http.StatusServiceUnavailable, "unavailable", "sessions are unavailable right now")
			return
		}
		if p == nil {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				http.Redirect(w, r, "/login?to="+url.QueryEscape(r.URL.RequestURI()), http.StatusFound)
				return
			}
			s.fail(w, r, http.StatusUnauthorized, "unauthorized", "sign in first")
			return
		}
		ctx := context.WithValue(r.Context(), principalKey{}, p)
		actor := audit.ActorFrom(ctx)
		actor.UserID, actor.Username = p.User.ID, p.User.Username
		next.ServeHTTP(w, r.WithContext(audit.WithActor(ctx, actor)))
	})
}

// staffPage is staffOnly for pages: administrators see and do
// everything; auditors see everything and are refused every change
// (403); anyone else is told that the page does not exist (404).
func (s *Server) staffPage(changes bool, next http.Handler) http.Handler {
	return s.signedInPage(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u := principalOf(r).User
		switch {
		case u.IsAdmin():
		case u.HasRole(user.RoleAuditor) && !changes:
		case u.HasRole(user.RoleAuditor):
			s.fail(w, r, http.StatusForbidden, identity.CodeForbidden, "auditors may look at everything but change nothing")
			return
		default:
			s.fail(w, r, http.StatusNotFound, "not_found", "not found")
			return
		}
		next.ServeHTTP(w, r)
	}))
}

// isStaff reports whether u may see the admin dashboard.
func isStaff(u *user.User) bool { return u.IsAdmin() || u.HasRole(user.RoleAuditor) }

// dashData is what every dashboard and account page receives as
// web.Page.Data.
type dashData struct {
	// Section is the navigation entry of the page.
	Section string
	// Viewer is the signed-in person; Staff whether they see /admin,
	// CanChange whether the dashboard's actions are theirs to take.
	Viewer           string
	Staff, CanChange bool
	// HasWorkspaces and HasAudit say which admin sections exist.
	HasWorkspaces, HasAudit bool
	CSRF                    string
	// Flash is the outcome of the last action, shown once.
	Flash string
	// Here is the page's own path and query: where its actions return.
	Here string
	Body any
}

// renderDash renders a dashboard or account page.
func (s *Server) renderDash(w http.ResponseWriter, r *http.Request, status int, name, title, section string, body any) {
	p := principalOf(r)
	d := dashData{
		Section: section, Viewer: p.User.Username, Staff: isStaff(p.User), CanChange: p.User.IsAdmin(),
		HasWorkspaces: s.opts.AdminWorkspaces != nil, HasAudit: s.opts.AuditLog != nil,
		CSRF: s.csrfToken(w, r), Flash: s.takeFlash(w, r), Here: r.URL.RequestURI(), Body: body,
	}
	s.render(w, status, name, web.Page{Title: title, Data: d})
}

// setFlash keeps msg for the next page the browser loads.
func (s *Server) setFlash(w http.ResponseWriter, r *http.Request, msg string) {
	http.SetCookie(w, &http.Cookie{
		Name: flashCookie, Value: base64.RawURLEncoding.EncodeToString([]byte(truncate(msg, 512))), Path: "/",
		MaxAge: 60, HttpOnly: true, Secure: s.secureCookies(r), SameSite: http.SameSiteStrictMode,
	})
}

// takeFlash returns the message setFlash kept, and forgets it.
func (s *Server) takeFlash(w http.ResponseWriter, r *http.Request) string {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return ""
	}
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: s.secureCookies(r), SameSite: http.SameSiteStrictMode})
	b, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || !utf8.Valid(b) {
		return ""
	}
	return string(b)
}

// dashMessage is the data of dash_message.html: what went wrong, and
// the way back.
type dashMessage struct {
	Title, Message string
	Back           string
}

// dashError answers a failed page request or action with a page that
// says what went wrong; technical failures are logged and told without
// detail.
func (s *Server) dashError(w http.ResponseWriter, r *http.Request, section, back string, err error) {
	var ie *identity.Error
	if !errors.As(err, &ie) {
		ie = &identity.Error{Code: identity.CodeUnavailable, Message: "the service is unavailable right now", Err: err}
	}
	if ie.Code == identity.CodeUnavailable {
		s.log.Error("page request failed", "path", r.URL.Path, "error", err)
	}
	if ie.RetryAfter > 0 {
		retryAfter(w, ie.RetryAfter)
	}
	status := statusOf(ie)
	s.renderDash(w, r, status, "dash_message.html", http.StatusText(status), section,
		dashMessage{Title: http.StatusText(status), Message: sentence(ie.Message), Back: back})
}

// sentence capitalizes msg and ends it with a full stop.
func sentence(msg string) string {
	if msg == "" {
		return msg
	}
	msg = capitalize(msg)
	if !strings.HasSuffix(msg, ".") {
		msg += "."
	}
	return msg
}

// capitalize makes the first letter of s upper case.
func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// pendingAction is an action checked and ready to run once confirmed.
type pendingAction struct {
	// Prompt asks for confirmation; Button names the action.
	Prompt, Button string
	// Danger marks an action that cannot be undone or cuts someone off.
	Danger bool
	// Do runs the action and returns what the page then says.
	Do func() (string, error)
	// Then, if set, is where the browser goes afterwards instead of
	// the page the form was on.
	Then string
	// Immediate actions are taken without confirmation: they add
	// something and take nothing away.
	Immediate bool
}

// confirmData is the data of dash_confirm.html, the confirmation page
// for browsers without JavaScript.
type confirmData struct {
	Prompt, Button string
	Danger         bool
	Action         string
	// Fields are the form's values, posted again.
	Fields []formField
	Back   string
}

type formField struct{ Name, Value string }

// dashAction serves one action form: it checks the form's CSRF token,
// prepares the action (an error is the page's answer), asks for
// confirmation unless the form says it was given, runs it, and sends the
// browser back to the page the form was on with the outcome.
func (s *Server) dashAction(section, fallback string, prepare func(r *http.Request) (*pendingAction, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		back, ok := s.readDashForm(w, r, section, fallback)
		if !ok {
			return
		}
		pa, err := prepare(r)
		if err != nil {
			s.dashError(w, r, section, back, err)
			return
		}
		if !pa.Immediate && r.PostFormValue("confirmed") != "yes" {
			var fields []formField
			for name, vs := range r.PostForm {
				if name == csrfField || name == "confirmed" || len(vs) == 0 {
					continue
				}
				fields = append(fields, formField{name, vs[0]})
			}
			slices.SortFunc(fields, func(a, b formField) int { return strings.Compare(a.Name, b.Name) })
			s.renderDash(w, r, http.StatusOK, "dash_confirm.html", "Confirm", section, confirmData{
				Prompt: pa.Prompt, Button: pa.Button, Danger: pa.Danger, Action: r.URL.Path, Fields: fields, Back: back,
			})
			return
		}
		msg, err := pa.Do()
		if err != nil {
			s.dashError(w, r, section, back, err)
			return
		}
		if pa.Then != "" {
			back = pa.Then
		}
		s.setFlash(w, r, msg)
		http.Redirect(w, r, back, http.StatusSeeOther)
	})
}

// readDashForm reads an action's form and checks its CSRF token; it
// answers and reports false when either fails. back is where the action
// returns (dashBack).
func (s *Server) readDashForm(w http.ResponseWriter, r *http.Request, section, fallback string) (back string, ok bool) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.dashError(w, r, section, fallback, badInput("the form could not be read"))
		return "", false
	}
	back = dashBack(r.PostFormValue("back"), fallback)
	if !s.checkCSRF(r) {
		s.log.Warn("dashboard action refused: missing or wrong CSRF token", "path", r.URL.Path, "client", r.RemoteAddr)
		s.dashError(w, r, section, back, &identity.Error{Code: identity.CodeForbidden,
			Message: "the form expired or your browser blocks cookies; reload the page and try again"})
		return "", false
	}
	return back, true
}

// dashBack is where an action returns: the form's "back" when it is a
// page of the dashboard or the account page, else fallback.
func dashBack(back, fallback string) string {
	back = safeRedirect(back)
	for _, p := range []string{"/admin", "/account"} {
		if back == p || strings.HasPrefix(back, p+"/") || strings.HasPrefix(back, p+"?") {
			return back
		}
	}
	return fallback
}

// when is a time as the pages show it.
type when struct {
	// ISO is for <time datetime>; Text for people; Ago is relative to
	// the page's time ("5 min ago").
	ISO, Text, Ago string
}

// IsZero reports whether there is no time to show.
func (w when) IsZero() bool { return w.ISO == "" }

func (s *Server) when(t time.Time) when {
	if t.IsZero() {
		return when{}
	}
	t = t.UTC()
	return when{ISO: t.Format(time.RFC3339), Text: t.Format("2006-01-02 15:04:05 UTC"), Ago: ago(s.now().Sub(t))}
}

// ago says how long ago d was ("in 3 min" for the future).
func ago(d time.Duration) string {
	future := d < 0
	if future {
		d = -d
	}
	var v string
	switch {
	case d < time.Minute:
		v = "less than a minute"
	default:
		v = span(d)
	}
	if future {
		return "in " + v
	}
	return v + " ago"
}

// span is a duration in its two largest units ("2 h 5 min").
func span(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%d h %d min", int(d/time.Hour), int(d%time.Hour/time.Minute))
	default:
		return fmt.Sprintf("%d d %d h", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
	}
}

// byteSize is a number of bytes as people read it.
type byteSize int64

func (b byteSize) String() string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", int64(b))
	}
	v, exp := float64(b), 0
	for v >= unit && exp < 5 {
		v /= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[exp-1])
}

// gauge is one use against a limit, shown as a <meter>.
type gauge struct {
	Label string
	// Value and Max are in the unit of the resource; Max is 0 without a
	// limit. High is where the meter turns to a warning.
	Value, Max, High float64
	// Text says it in words ("300.0 MiB of 1.0 GiB").
	Text     string
	Exceeded bool
	// Warning: nearly at the limit (a home nearly full).
	Warning bool
}

// newGauge builds a gauge; format shows one value in its unit.
func newGauge(label string, value, limit float64, format func(float64) string) gauge {
	g := gauge{Label: label, Value: math.Max(0, value), Max: math.Max(0, limit)}
	if g.Max > 0 {
		g.High = 0.8 * g.Max
		g.Text = fmt.Sprintf("%s of %s (%.0f%%)", format(g.Value), format(g.Max), 100*g.Value/g.Max)
		g.Exceeded = g.Value >= g.Max
	} else {
		g.Text = format(g.Value) + ", no limit"
	}
	return g
}

// storageText says a user's storage as they experience it: the capacity
// of their home, a percent that reads 100 only when writes fail.
func storageText(s resources.StorageUsage) string {
	if s.Limit <= 0 {
		return formatBytes(float64(s.Used)) + ", no limit"
	}
	t := fmt.Sprintf("%s of %s (%.0f%%)", formatBytes(float64(s.Used)), formatBytes(float64(s.Limit)), s.Percent)
	switch {
	case s.Full:
		t += ", full: writes fail"
	case s.Warning:
		t += ", nearly full"
	}
	return t
}

// oomText says how many processes were killed for lack of memory.
func oomText(n int64) string {
	if n == 1 {
		return "1 process killed for lack of memory since the workspace started"
	}
	return fmt.Sprintf("%d processes killed for lack of memory since the workspace started", n)
}

func formatBytes(v float64) string   { return byteSize(int64(v)).String() }
func formatMB(v float64) string      { return byteSize(int64(v * (1 << 20))).String() }
func formatPercent(v float64) string { return fmt.Sprintf("%.0f%% CPU", v) }
func formatCount(v float64) string   { return fmt.Sprintf("%.0f", v) }

// pager is the paging of a listing.
type pager struct {
	// From and To number the rows shown (1-based), of Total.
	From, To, Total int
	// Prev and Next are the links to the neighbouring pages ("" when
	// there is none).
	Prev, Next string
}

// newPager pages r's listing: rows [offset, offset+shown) of total.
func newPager(r *http.Request, offset, limit, shown, total int) pager {
	p := pager{Total: total}
	if shown > 0 {
		p.From, p.To = offset+1, offset+shown
	}
	link := func(off int) string {
		q := r.URL.Query()
		q.Set("offset", fmt.Sprint(off))
		return r.URL.Path + "?" + q.Encode()
	}
	if offset > 0 {
		p.Prev = link(max(0, offset-limit))
	}
	if offset+shown < total {
		p.Next = link(offset + limit)
	}
	return p
}
