package agent

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/testenv"
)

// TestActivityInBrowser drives VS Code in headless Chromium through a
// stand-in gateway and checks that activity means work: an open, idle
// workbench leaves LastInput alone, typing in a terminal or an editor
// moves it, and a busy terminal command moves LastCPU.
func TestActivityInBrowser(t *testing.T) {
	t.Parallel()
	// Workspace trust is not what this test is about: a folder VS Code
	// does not trust asks, in a dialog, before a terminal may start.
	r := startAgent(t, func(c *Config) {
		user := filepath.Join(c.UserDataDir, "User")
		if err := os.MkdirAll(user, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(user, "settings.json"), []byte(`{"security.workspace.trust.enabled": false}`), 0o600); err != nil {
			t.Fatal(err)
		}
	})
	ide := r.waitRunning(t).IDE.PID
	g := gateway(t, r)
	ctx := testenv.Browser(t)
	activity := func() agentapi.Activity { return get[agentapi.Activity](t, r, agentapi.PathActivity) }
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			testenv.Screenshot(t, ctx, "failed")
			t.Fatalf("%s: %v", what, err)
		}
	}
	// rest waits until LastInput has not moved for quiet, and returns it.
	rest := func(what string, quiet time.Duration) time.Time {
		t.Helper()
		last, since := activity().LastInput, time.Now()
		waitFor(t, what, func() bool {
			if in := activity().LastInput; !in.Equal(last) {
				last, since = in, time.Now()
			}
			return time.Since(since) >= quiet
		})
		return last
	}

	explorerFile := chromedp.CSS(`.explorer-folders-view .monaco-list-row[aria-label="hello.txt"]`)
	do("load the workbench", chromedp.Navigate(g.URL+"/?folder="+r.Folder), chromedp.WaitVisible(explorerFile))
	// Loaded means both of VS Code's connections are up: the management
	// one, and the extension host's, which may come long after the explorer
	// shows on a loaded machine.
	waitFor(t, "the workbench's two WebSockets", func() bool { return activity().Connections == 2 })

	// Idle: the workbench keeps busy for a while after it shows
	// (extensions start, the Welcome page opens): wait until the IDE's
	// processes calm down and LastInput rests. Then nobody touches the tab,
	// and LastInput must not move.
	cpu := activity().CPUSeconds
	waitFor(t, "the IDE to calm down after loading", func() bool {
		time.Sleep(5 * time.Second)
		now := activity().CPUSeconds
		rate := (now - cpu) / 5
		cpu = now
		return rate < 0.5 // of one CPU; VS Code's port finder alone takes a few percent
	})
	const idle = 20 * time.Second
	last := rest("LastInput to rest after the workbench loaded", 10*time.Second)
	for end := time.Now().Add(idle); time.Now().Before(end); time.Sleep(time.Second) {
		if in := activity().LastInput; !in.Equal(last) {
			t.Fatalf("LastInput moved from %s to %s with nobody at the keyboard (CODEHUB_AGENT_TRACE=1 logs what the browser sent)",
				last.Format(time.StampMilli), in.Format(time.StampMilli))
		}
	}
	t.Logf("idle workbench: LastInput stayed at %s for %s; LastCPU %s",
		last.Format(time.StampMilli), idle, activity().LastCPU.Format(time.StampMilli))

	// Typing in a terminal.
	do("open a terminal",
		chromedp.KeyEvent("`", chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		chromedp.WaitVisible(chromedp.CSS(`.terminal-wrapper .xterm`)))
	// The terminal takes the keyboard when it has rendered, which on a
	// loaded machine may be well after it shows: until then, what is
	// typed goes to the editor area. Give it the focus, as a click would,
	// until it has it.
	active := ""
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the focused element was %s", active)
			testenv.Screenshot(t, ctx, "terminal-focus")
		}
	})
	waitFor(t, "the terminal to take the keyboard", func() bool {
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => {
			const a = document.activeElement;
			if (a && a.classList.contains("xterm-helper-textarea")) return "the terminal";
			const ta = document.querySelector(".terminal-wrapper .xterm-helper-textarea");
			if (ta) ta.focus();
			return a ? a.tagName + " " + a.className : "nothing";
		})()`))
		active = got
		return err == nil && got == "the terminal"
	})
	// Headless, VS Code starts the terminal's shell on the first input,
	// and may send that input in one message with the process's creation
	// (its whole environment), past the part of a message the agent reads:
	// a known limit, the first keys of a new terminal may not count. So
	// the shell is started first, then the typing is measured.
	do("start the terminal's shell", chromedp.KeyEvent("\r"))
	var shell int
	waitFor(t, "the terminal's shell", func() bool { shell = shellUnder(ide); return shell != 0 })
	before := rest("LastInput to rest once the terminal is open", 2*time.Second)
	termBefore := activity().TerminalInputs
	do("type in the terminal", typeInTerminal("echo hi"))
	waitFor(t, "typing in a terminal to move LastInput", func() bool { return activity().LastInput.After(before) })
	waitFor(t, "typing in a terminal to count as terminal input", func() bool {
		a := activity()
		return a.TerminalInputs > termBefore && a.LastTerminalInput.After(before)
	})

	// A busy command: its CPU time is the IDE's, through the terminal's
	// shell, a descendant of code-server. It burns 6 s of CPU however busy
	// the machine (ulimit -t ends it); once the shell has reaped it, the
	// agent must have counted at least that.
	start := time.Now()
	reaped := childTicks(t, shell)
	cpu = activity().CPUSeconds
	do("run a busy command", typeInTerminal("(ulimit -t 6; while :; do :; done)"))
	var used float64
	waitFor(t, "the busy command to end", func() bool {
		used = float64(childTicks(t, shell)-reaped) / ticksPerSecond
		return used >= 5
	})
	var a agentapi.Activity
	waitFor(t, "the agent to count the busy command", func() bool {
		a = activity()
		return a.CPUSeconds-cpu >= used-0.1 && a.LastCPU.After(start)
	})
	t.Logf("busy command: used %.1f s of CPU; the agent counted %.1f s for the IDE meanwhile", used, a.CPUSeconds-cpu)

	// Typing in an editor.
	do("open a file", chromedp.DoubleClick(explorerFile), chromedp.WaitVisible(chromedp.CSS(`.monaco-editor .view-lines`)))
	before = rest("LastInput to rest once the file is open", 2*time.Second)
	termBefore = activity().TerminalInputs
	do("type in the editor", chromedp.Click(chromedp.CSS(`.monaco-editor .view-lines`)), chromedp.KeyEvent("typed by the agent test "))
	waitFor(t, "typing in the editor to move LastInput", func() bool { return activity().LastInput.After(before) })
	if n := activity().TerminalInputs; n != termBefore {
		t.Errorf("typing in the editor counted as terminal input (%d, was %d)", n, termBefore)
	}
	testenv.Screenshot(t, ctx, "typed")

	a = activity()
	if !a.LastActive.Equal(a.LastInput) && !a.LastActive.Equal(a.LastCPU) || a.LastActive.Before(a.LastInput) || a.LastActive.Before(a.LastCPU) {
		t.Errorf("LastActive %v is not the latest of %v and %v", a.LastActive, a.LastInput, a.LastCPU)
	}
}

// typeInTerminal types line and Enter into the focused terminal. The line
// is inserted rather than typed key by key: xterm.js takes both the key
// and the character event of each synthetic key press, doubling it.
func typeInTerminal(line string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := cdp.Call(ctx, t, input.InsertText, input.InsertTextParams{Text: line}); err != nil {
			return err
		}
		// Enter may come twice: an empty command line, harmless.
		_, err := chromedp.KeyEvent("\r")(ctx, t)
		return err
	})
}

// shellUnder returns the pid of a terminal's shell among the descendants
// of pid (a shell started by VS Code's pty host; VS Code runs other,
// short-lived shells to read the environment), or 0.
func shellUnder(pid int) int {
	all, err := newTreeSampler(os.DirFS("/proc"), os.Getpagesize()).readAll()
	if err != nil {
		return 0
	}
	kids := map[int][]int{}
	for p, st := range all {
		kids[st.ppid] = append(kids[st.ppid], p)
	}
	for queue := kids[pid]; len(queue) > 0; queue = queue[1:] {
		p := queue[0]
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(p) + "/comm")
		parent, _ := os.ReadFile("/proc/" + strconv.Itoa(all[p].ppid) + "/cmdline")
		switch string(comm) {
		case "bash\n", "sh\n", "dash\n", "zsh\n", "fish\n":
			if strings.Contains(string(parent), "--type=ptyHost") {
				return p
			}
		}
		queue = append(queue, kids[p]...)
	}
	return 0
}

// childTicks is the CPU time of the children pid has reaped.
func childTicks(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseStat(b)
	if err != nil {
		t.Fatal(err)
	}
	return st.children
}
