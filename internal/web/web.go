// Package web holds the gateway's own pages: server-rendered templates and
// the few static files they use, all embedded, so that the pages work with a
// strict Content-Security-Policy and without any external asset.
package web

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// StaticPrefix is the URL path the static files are served under; it is
// chosen not to collide with any path of code-server.
const StaticPrefix = "/_codehub/static/"

// Templates are the parsed pages.
type Templates struct{ t *template.Template }

// Parse parses the embedded templates.
func Parse() (*Templates, error) {
	t, err := template.New("").Funcs(template.FuncMap{
		"static": func(name string) string { return StaticPrefix + name },
	}).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	return &Templates{t: t}, nil
}

// Page is what every page template receives.
type Page struct {
	Title string
	// AppName is shown in the header.
	AppName string
	// Data is the page's own data.
	Data any
	// RefreshSeconds, when positive, reloads the page after that long.
	RefreshSeconds int
}

// Render writes the named page with the given status. Rendering happens into
// a buffer first, so that a template error becomes a clean 500 rather than a
// half-written page.
func (ts *Templates) Render(w http.ResponseWriter, status int, name string, p Page) error {
	var buf bytes.Buffer
	if p.AppName == "" {
		p.AppName = "codehub"
	}
	if err := ts.t.ExecuteTemplate(&buf, name, p); err != nil {
		http.Error(w, "internal error rendering page", http.StatusInternalServerError)
		return err
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

// Static serves the embedded static files under StaticPrefix.
func Static() http.Handler {
	sub, _ := fs.Sub(staticFS, "static")
	fsrv := http.StripPrefix(StaticPrefix, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		fsrv.ServeHTTP(w, r)
	})
}
