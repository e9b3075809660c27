package gateway

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// The dashboard's charts are inline SVG computed here and drawn by the
// templates: no chart library, no script, nothing from elsewhere. Each
// has a title and a description in words for those who do not see it.

// Dimensions of a time chart (SVG user units; CSS scales it).
const (
	chartW, chartH           = 960, 220
	chartLeft, chartRight    = 44, 16
	chartTop, chartBottom    = 12, 28
	barChartW, barRowH       = 960, 26
	barLabelW, barValueW     = 130, 190
	barChartTop, barGapRatio = 6, 0.3
)

// timeChart is a series over time: a line (Line, Area) or bars (Bars).
type timeChart struct {
	ID, Title, Desc string
	Width, Height   int
	// Empty says there is nothing to draw yet.
	Empty bool
	// The plot area.
	Left, Top, Right, Bottom float64
	Line, Area               string
	Bars                     []chartBar
	XTicks, YTicks           []chartTick
}

type chartBar struct {
	X, Y, W, H float64
	// Label is the bar's tooltip (<title>).
	Label string
}

type chartTick struct {
	X, Y  float64
	Label string
}

// f formats a coordinate.
func f(v float64) string { return fmt.Sprintf("%.1f", v) }

// niceMax rounds v up to 1, 2 or 5 times a power of ten (at least 1), so
// that the axis reads well.
func niceMax(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// newTimeChart lays out points (oldest first) taken in [from, to); bars
// draws one bar per step of stepSeconds, else a line. unit names what
// is counted, for the description.
func newTimeChart(id, title, unit string, from, to time.Time, stepSeconds int, points []point, bars bool) timeChart {
	c := timeChart{ID: id, Title: title, Width: chartW, Height: chartH,
		Left: chartLeft, Top: chartTop, Right: chartW - chartRight, Bottom: chartH - chartBottom}
	secs := to.Sub(from).Seconds()
	if len(points) == 0 || secs <= 0 {
		c.Empty = true
		c.Desc = "No samples yet in this period."
		return c
	}
	peak, sum, last := 0.0, 0.0, points[len(points)-1].Value
	for _, p := range points {
		peak = math.Max(peak, p.Value)
		sum += p.Value
	}
	top := niceMax(peak)
	x := func(t time.Time) float64 {
		return c.Left + (c.Right-c.Left)*math.Min(1, math.Max(0, t.Sub(from).Seconds()/secs))
	}
	y := func(v float64) float64 { return c.Bottom - (c.Bottom-c.Top)*v/top }
	for _, v := range []float64{0, top / 2, top} {
		c.YTicks = append(c.YTicks, chartTick{X: c.Left - 6, Y: y(v), Label: trimFloat(v)})
	}
	// Time ticks on whole hours, about five of them.
	every := max(time.Hour, (to.Sub(from) / 4).Truncate(time.Hour))
	for t := from.Truncate(every).Add(every); !t.After(to); t = t.Add(every) {
		c.XTicks = append(c.XTicks, chartTick{X: x(t), Y: c.Bottom + 18, Label: t.UTC().Format("15:04")})
	}
	if bars {
		step := time.Duration(max(stepSeconds, 1)) * time.Second
		w := math.Max(1, (c.Right-c.Left)*step.Seconds()/secs*(1-barGapRatio))
		for _, p := range points {
			if p.Value <= 0 {
				continue
			}
			bx := math.Min(x(p.At), c.Right-w)
			c.Bars = append(c.Bars, chartBar{X: bx, Y: y(p.Value), W: w, H: c.Bottom - y(p.Value),
				Label: fmt.Sprintf("%s UTC: %s", p.At.UTC().Format("15:04"), trimFloat(p.Value))})
		}
		c.Desc = fmt.Sprintf("%s %s in all; at most %s in %s (times in UTC).", trimFloat(sum), unit,
			trimFloat(peak), span(step))
		return c
	}
	var line strings.Builder
	for i, p := range points {
		cmd := "L"
		if i == 0 {
			cmd = "M"
		}
		fmt.Fprintf(&line, "%s%s %s ", cmd, f(x(p.At)), f(y(p.Value)))
	}
	c.Line = strings.TrimSpace(line.String())
	c.Area = fmt.Sprintf("%s L%s %s L%s %s Z", c.Line, f(x(points[len(points)-1].At)), f(c.Bottom),
		f(x(points[0].At)), f(c.Bottom))
	c.Desc = fmt.Sprintf("Last measured %s %s; at most %s (times in UTC).", trimFloat(last), unit, trimFloat(peak))
	return c
}

// trimFloat shows v without needless decimals.
func trimFloat(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// barChart is horizontal bars, one row each, against a limit.
type barChart struct {
	ID, Title, Desc string
	Width, Height   int
	// LabelX, BarX and ValueX are where the columns start.
	LabelX, BarX, ValueX float64
	Rows                 []barRow
}

type barRow struct {
	// Y is the row's top, TextY its text's baseline, H the bar's height.
	Y, TextY, H float64
	Label       string
	// W is the bar's width, LimitW the limit's (0: none); Over is set
	// when the use reaches the limit.
	W, LimitW float64
	Value     string
	Over      bool
}

// storageRow is one user's storage for newStorageChart.
type storageRow struct {
	Label        string
	Bytes, Limit int64
}

// newStorageChart draws each user's storage against their limit, on one
// scale.
func newStorageChart(rows []storageRow) barChart {
	c := barChart{ID: "storage-chart", Title: "Storage per user", Width: barChartW,
		LabelX: barLabelW - 8, BarX: barLabelW, ValueX: barChartW - barValueW + 8}
	c.Height = barChartTop*2 + barRowH*len(rows)
	if len(rows) == 0 {
		c.Desc = "No storage has been measured yet."
		return c
	}
	scale := 1.0
	for _, r := range rows {
		scale = math.Max(scale, float64(max(r.Bytes, r.Limit)))
	}
	width := float64(barChartW - barLabelW - barValueW)
	var total int64
	for i, r := range rows {
		y := float64(barChartTop + i*barRowH)
		row := barRow{Y: y + 4, TextY: y + barRowH/2 + 4, H: barRowH - 8, Label: truncateRunes(r.Label, 18),
			W: math.Max(1, width*float64(r.Bytes)/scale)}
		row.Value = byteSize(r.Bytes).String()
		if r.Limit > 0 {
			row.LimitW = width * float64(r.Limit) / scale
			row.Value += " of " + byteSize(r.Limit).String()
			row.Over = r.Bytes >= r.Limit
		}
		c.Rows = append(c.Rows, row)
		total += r.Bytes
	}
	c.Desc = fmt.Sprintf("%d users use %s in all; the most is %s by %s.", len(rows), byteSize(total), byteSize(rows[0].Bytes), rows[0].Label)
	return c
}

// truncateRunes shortens s to n characters, with an ellipsis.
func truncateRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
