package gateway

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestNiceMax(t *testing.T) {
	for _, tc := range []struct{ in, want float64 }{
		{0, 1}, {0.4, 1}, {1, 1}, {1.5, 2}, {3, 5}, {7, 10}, {10, 10}, {12, 20}, {150, 200}, {1000, 1000}, {4001, 5000},
	} {
		if got := niceMax(tc.in); got != tc.want {
			t.Errorf("niceMax(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

var numberRE = regexp.MustCompile(`-?[0-9]+(?:\.[0-9]+)?`)

// inPlot checks that every coordinate of an SVG path lies in c's plot.
func inPlot(t *testing.T, c timeChart, path string) {
	t.Helper()
	nums := numberRE.FindAllString(path, -1)
	if len(nums)%2 != 0 {
		t.Fatalf("odd number of coordinates in %q", path)
	}
	for i := 0; i < len(nums); i += 2 {
		x, _ := strconv.ParseFloat(nums[i], 64)
		y, _ := strconv.ParseFloat(nums[i+1], 64)
		if x < c.Left-0.1 || x > c.Right+0.1 || y < c.Top-0.1 || y > c.Bottom+0.1 {
			t.Errorf("point (%v, %v) outside the plot [%v..%v]×[%v..%v]", x, y, c.Left, c.Right, c.Top, c.Bottom)
		}
	}
}

func TestTimeChart(t *testing.T) {
	from := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	to := from.Add(24 * time.Hour)
	pts := []point{{from.Add(time.Hour), 3}, {from.Add(2 * time.Hour), 5}, {from.Add(23 * time.Hour), 1}, {to, 2}}

	c := newTimeChart("s", "Sessions", "sessions", from, to, 900, pts, false)
	if c.Empty || !strings.HasPrefix(c.Line, "M") || strings.Count(c.Line, "L") != 3 || !strings.HasSuffix(c.Area, "Z") {
		t.Fatalf("line chart: %+v", c)
	}
	inPlot(t, c, c.Line)
	inPlot(t, c, c.Area)
	if got := c.YTicks[len(c.YTicks)-1].Label; got != "5" {
		t.Errorf("top of the axis %q, want 5", got)
	}
	if len(c.XTicks) < 3 || len(c.XTicks) > 6 {
		t.Errorf("%d time ticks", len(c.XTicks))
	}
	for _, tk := range c.XTicks {
		if !strings.HasSuffix(tk.Label, ":00") || tk.X < c.Left || tk.X > c.Right {
			t.Errorf("time tick %+v", tk)
		}
	}
	if !strings.Contains(c.Desc, "Last measured 2 sessions; at most 5") {
		t.Errorf("description %q", c.Desc)
	}

	b := newTimeChart("b", "Starts", "starts", from, to, 900, append(pts, point{from.Add(3 * time.Hour), 0}), true)
	if len(b.Bars) != 4 {
		t.Fatalf("%d bars, want one per non-zero point", len(b.Bars))
	}
	for _, bar := range b.Bars {
		if bar.X < b.Left || bar.X+bar.W > b.Right+0.01 || bar.H <= 0 || bar.Y < b.Top || bar.Y+bar.H > b.Bottom+0.01 || bar.Label == "" {
			t.Errorf("bar %+v outside the plot", bar)
		}
	}
	if !strings.Contains(b.Desc, "11 starts in all; at most 5 in 15 min") {
		t.Errorf("bars description %q", b.Desc)
	}

	e := newTimeChart("e", "Nothing", "x", from, to, 900, nil, false)
	if !e.Empty || e.Desc == "" || e.Line != "" {
		t.Errorf("empty chart: %+v", e)
	}
}

func TestStorageChart(t *testing.T) {
	c := newStorageChart([]storageRow{
		{"ann", 2 << 30, 1 << 30},
		{"a-very-long-username-indeed", 512 << 20, 1 << 30},
		{"cy", 0, 0},
	})
	if len(c.Rows) != 3 || c.Height <= 0 {
		t.Fatalf("rows: %+v", c)
	}
	ann, long, cy := c.Rows[0], c.Rows[1], c.Rows[2]
	if !ann.Over || long.Over || cy.Over {
		t.Errorf("over the limit: %v %v %v", ann.Over, long.Over, cy.Over)
	}
	if ann.W != 2*ann.LimitW || long.W*4 != ann.W || cy.LimitW != 0 || cy.W != 1 {
		t.Errorf("widths: ann %v/%v, long %v, cy %v/%v", ann.W, ann.LimitW, long.W, cy.W, cy.LimitW)
	}
	if ann.W > float64(barChartW-barLabelW-barValueW)+0.01 {
		t.Errorf("the longest bar %v overflows", ann.W)
	}
	if ann.Value != "2.0 GiB of 1.0 GiB" || cy.Value != "0 B" || !strings.HasSuffix(long.Label, "…") || len([]rune(long.Label)) != 18 {
		t.Errorf("texts: %q %q %q", ann.Value, cy.Value, long.Label)
	}
	if e := newStorageChart(nil); len(e.Rows) != 0 || e.Desc == "" {
		t.Errorf("empty: %+v", e)
	}
}

func TestFormats(t *testing.T) {
	for b, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 300 << 20: "300.0 MiB", 3 << 40: "3.0 TiB"} {
		if got := byteSize(b).String(); got != want {
			t.Errorf("byteSize(%d) = %q, want %q", b, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		10 * time.Second: "less than a minute ago", -5 * time.Minute: "in 5 min", 90 * time.Minute: "1 h 30 min ago",
		50 * time.Hour: "2 d 2 h ago",
	} {
		if got := ago(d); got != want {
			t.Errorf("ago(%s) = %q, want %q", d, got, want)
		}
	}
	g := newGauge("Storage", 300<<20, 1<<30, formatBytes)
	if g.Text != "300.0 MiB of 1.0 GiB (29%)" || g.Exceeded || g.High != 0.8*(1<<30) {
		t.Errorf("gauge %+v", g)
	}
	if g := newGauge("CPU", 250, 200, formatPercent); !g.Exceeded {
		t.Errorf("gauge over its limit %+v", g)
	}
	if g := newGauge("Sessions", 3, 0, formatCount); g.Max != 0 || g.Text != "3, no limit" {
		t.Errorf("gauge without a limit %+v", g)
	}
	for _, tc := range []struct{ back, want string }{
		{"/admin/users?search=x", "/admin/users?search=x"}, {"/account", "/account"}, {"/admin", "/admin"},
		{"//evil.example/admin", "/fallback"}, {"https://evil.example/admin", "/fallback"}, {"/", "/fallback"},
		{"/administrator", "/fallback"}, {"/admin\\evil", "/fallback"}, {"", "/fallback"},
	} {
		if got := dashBack(tc.back, "/fallback"); got != tc.want {
			t.Errorf("dashBack(%q) = %q, want %q", tc.back, got, tc.want)
		}
	}
}
