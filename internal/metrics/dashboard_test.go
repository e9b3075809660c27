package metrics_test

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/codehub-dev/codehub/internal/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// dashboardFile is the Grafana dashboard shipped in configs/.
const dashboardFile = "../../configs/grafana-dashboard.json"

// designMetrics are the metrics of the design's §12.2, which the dashboard
// must show.
var designMetrics = []string{
	"code_server_login_attempts_total", "code_server_sessions_created_total", "code_server_active_users",
	"code_server_active_sessions", "code_server_active_containers", "code_server_request_duration_seconds",
	"code_server_container_startup_seconds",
}

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

// registered returns the names of the series the gateway's registry
// exports (histograms as their _bucket, _sum and _count series), from
// every collector of metrics.New: it reads them from the collectors'
// descriptions, so that a metric with no series yet counts too.
func registered(t *testing.T) map[string]bool {
	t.Helper()
	m := metrics.New()
	names := map[string]bool{}
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		if !f.CanInterface() || f.IsNil() {
			continue
		}
		c, ok := f.Interface().(prometheus.Collector)
		if !ok || f.Interface() == any(m.Registry) {
			continue
		}
		_, histogram := f.Interface().(prometheus.ObserverVec)
		if _, ok := f.Interface().(prometheus.Histogram); ok {
			histogram = true
		}
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			sub := fqNameRE.FindStringSubmatch(d.String())
			if sub == nil {
				t.Fatalf("no name in %s", d)
			}
			names[sub[1]] = true
			if histogram {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					names[sub[1]+suffix] = true
				}
			}
		}
	}
	// And the series the registry really has: the names above must be
	// among its families once every collector has one.
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "code_server_") || strings.HasPrefix(f.GetName(), "codehub_") {
			if !names[f.GetName()] {
				t.Errorf("the registry exports %s, which no field of Metrics describes", f.GetName())
			}
		}
	}
	return names
}

// panel is what the test reads of a Grafana panel.
type panel struct {
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []struct {
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboardFile, err)
	}
	return d
}

// allPanels flattens rows.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

var (
	stringRE   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	matcherRE  = regexp.MustCompile(`\{[^}]*\}`)
	rangeRE    = regexp.MustCompile(`\[[^\]]*\]`)
	groupingRE = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	identRE    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	keywords   = []string{"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan"}
)

// metricNames returns the metric names a PromQL expression reads: the
// identifiers that are not functions, keywords, labels, strings or
// durations.
func metricNames(expr string) []string {
	s := stringRE.ReplaceAllString(expr, `""`)
	s = matcherRE.ReplaceAllString(s, " ")
	s = rangeRE.ReplaceAllString(s, " ")
	s = groupingRE.ReplaceAllString(s, " ")
	var out []string
	for _, m := range identRE.FindAllStringSubmatch(s, -1) {
		name := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(m[0]), "("))
		if m[1] != "" || slices.Contains(keywords, strings.ToLower(name)) {
			continue // a function call, or a keyword
		}
		out = append(out, name)
	}
	return out
}

func TestMetricNamesOfExpressions(t *testing.T) {
	cases := map[string][]string{
		`histogram_quantile(0.95, sum by (le, route) (rate(code_server_request_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))`: {"code_server_request_duration_seconds_bucket"},
		`max(code_server_active_users{instance=~"a"}) / on (instance) codehub_websockets_open`:                                                      {"code_server_active_users", "codehub_websockets_open"},
		`topk(20, codehub_user_storage_bytes)`: {"codehub_user_storage_bytes"},
	}
	for expr, want := range cases {
		if got := metricNames(expr); !slices.Equal(got, want) {
			t.Errorf("metricNames(%s) = %v, want %v", expr, got, want)
		}
	}
}

// TestGrafanaDashboard: configs/grafana-dashboard.json is valid JSON with
// a data source variable that every panel uses, shows every metric of the
// design, and its queries read only metrics the gateway registers.
func TestGrafanaDashboard(t *testing.T) {
	d := readDashboard(t)
	names := registered(t)
	if d.Title == "" || d.UID == "" {
		t.Errorf("the dashboard has no title or uid")
	}
	hasDS := false
	for _, v := range d.Templating.List {
		if v.Type == "datasource" && v.Name == "datasource" && v.Query == "prometheus" {
			hasDS = true
		}
	}
	if !hasDS {
		t.Errorf("no Prometheus data source variable named datasource")
	}
	used := map[string]bool{}
	titles := map[string]bool{}
	for _, p := range allPanels(d.Panels) {
		titles[p.Title] = true
		if p.Type == "row" {
			continue
		}
		if !strings.Contains(string(p.Datasource), "${datasource}") {
			t.Errorf("panel %q does not use the data source variable: %s", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if !strings.Contains(string(tg.Datasource), "${datasource}") {
				t.Errorf("a query of panel %q does not use the data source variable", p.Title)
			}
			ms := metricNames(tg.Expr)
			if len(ms) == 0 {
				t.Errorf("panel %q: query %q reads no metric", p.Title, tg.Expr)
			}
			for _, m := range ms {
				if !names[m] {
					t.Errorf("panel %q: query %q reads %s, which the gateway does not register", p.Title, tg.Expr, m)
				}
				used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_count"), "_sum")] = true
			}
		}
	}
	for _, m := range append(designMetrics, "codehub_workspace_start_queue", "codehub_warm_pool_size",
		"codehub_websockets_open", "codehub_user_storage_bytes") {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
	for _, title := range []string{"Login attempts by result", "Active users and sessions", "Workspaces by status",
		"Request latency p50 / p95 / p99", "Workspace startup p50 / p95", "Start queue", "Warm pool", "Open WebSockets",
		"Storage per user"} {
		if !titles[title] {
			t.Errorf("no panel %q", title)
		}
	}
	var all []string
	for n := range used {
		all = append(all, n)
	}
	sort.Strings(all)
	t.Logf("metrics shown: %s", strings.Join(all, ", "))
}
