package agent

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/testenv"
)

func TestExploreIdle(t *testing.T) {
	r := startAgent(t)
	r.waitRunning(t)
	g := gateway(t, r)
	ctx := testenv.Browser(t)
	start := time.Now()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(g.URL+"/?folder="+r.Folder),
		chromedp.WaitVisible(chromedp.CSS(`.explorer-folders-view .monaco-list-row[aria-label="hello.txt"]`)),
	); err != nil {
		t.Fatal(err)
	}
	t.Logf("EXPLORE loaded after %s", time.Since(start))
	idle, _ := strconv.Atoi(os.Getenv("IDLE"))
	watch := func(n int) {
		var last agentapi.Activity
		for i := 0; i < n; i++ {
			a := get[agentapi.Activity](t, r, agentapi.PathActivity)
			if !a.LastInput.Equal(last.LastInput) || !a.LastCPU.Equal(last.LastCPU) {
				t.Logf("EXPLORE t=%s input=%s cpu=%s conns=%d cpusec=%.2f", time.Since(start).Round(time.Second), a.LastInput.Format("15:04:05.000"), a.LastCPU.Format("15:04:05.000"), a.Connections, a.CPUSeconds)
			}
			last = a
			time.Sleep(time.Second)
		}
	}
	h := get[agentapi.Health](t, r, agentapi.PathHealth)
	perProc := func() map[int]procStat {
		ts := newTreeSampler(os.DirFS("/proc"), os.Getpagesize())
		all, _ := ts.readAll()
		kids := map[int][]int{}
		for pid, p := range all {
			kids[p.ppid] = append(kids[p.ppid], pid)
		}
		out := map[int]procStat{}
		q := []int{h.IDE.PID}
		for len(q) > 0 {
			p := q[0]
			q = q[1:]
			out[p] = all[p]
			q = append(q, kids[p]...)
		}
		return out
	}
	time.Sleep(20 * time.Second)
	before := perProc()
	t0 := time.Now()
	watch(idle)
	after := perProc()
	for pid, a := range after {
		b := before[pid]
		cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if len(cmd) > 140 {
			cmd = cmd[len(cmd)-140:]
		}
		t.Logf("EXPLORE cpu pid %d: %d ticks (+children %d) in %s: %q", pid, a.self-b.self, a.children-b.children, time.Since(t0).Round(time.Second), cmd)
	}
	t.Logf("EXPLORE open file")
	if err := chromedp.Do(ctx,
		chromedp.DoubleClick(chromedp.CSS(`.explorer-folders-view .monaco-list-row[aria-label="hello.txt"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.monaco-editor .view-lines`)),
		chromedp.Sleep(3*time.Second),
	); err != nil {
		t.Fatal(err)
	}
	watch(3)
	t.Logf("EXPLORE type")
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`.monaco-editor .view-lines`)),
		chromedp.KeyEvent("abc"),
	); err != nil {
		t.Fatal(err)
	}
	watch(5)
	t.Logf("EXPLORE terminal")
	if err := chromedp.Do(ctx,
		chromedp.KeyEvent("`", chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		chromedp.WaitVisible(chromedp.CSS(`.terminal-wrapper .xterm`)),
		chromedp.Sleep(3*time.Second),
	); err != nil {
		t.Fatal(err)
	}
	watch(5)
	t.Logf("EXPLORE terminal type")
	if err := chromedp.Do(ctx, chromedp.KeyEvent("echo hi\r")); err != nil {
		t.Fatal(err)
	}
	watch(5)
	testenv.Screenshot(t, ctx, "explore")
	t.Logf("EXPLORE terminal busy")
	if err := chromedp.Do(ctx, chromedp.KeyEvent("timeout 8 sh -c 'while :; do :; done'\r")); err != nil {
		t.Fatal(err)
	}
	watch(15)
	t.Logf("EXPLORE end")
}
