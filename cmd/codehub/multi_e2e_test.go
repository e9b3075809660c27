package main

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/codehub-dev/codehub/internal/testenv"
)

// TestBrowserSignUpSignOutSignIn drives headless Chromium through
// multi-user mode with open registration: create an account from the
// login page, land in the IDE, sign out, sign in again with the form.
func TestBrowserSignUpSignOutSignIn(t *testing.T) {
	t.Parallel()
	cfg := multiConfig{Upstream: startStandInIDE(t), Registration: "open"}.write(t)
	g := startMultiGateway(t, cfg)
	bctx := testenv.Browser(t)
	ctx, cancel := context.WithTimeout(bctx, guard)
	defer cancel()

	// Collect console errors and uncaught exceptions of every page.
	cctx, stopConsole := context.WithCancel(ctx)
	messages := chromedp.Console(cctx)
	var (
		mu       sync.Mutex
		problems []string
	)
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				mu.Lock()
				problems = append(problems, m.String()+" ("+m.URL+")")
				mu.Unlock()
			}
		}
	}()

	const username, email, pw = "erin", "erin@example.com", "erin-password-1"
	ideSel := chromedp.CSS("#" + ideMarker)

	// The gateway sends a newcomer to the login page, which links to the
	// sign-up page.
	err := chromedp.Do(ctx,
		chromedp.Navigate(g.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#username`)),
		chromedp.Click(chromedp.CSS(`a[href="/signup"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#email`)),
		chromedp.SendKeys(chromedp.CSS(`#username`), username),
		chromedp.SendKeys(chromedp.CSS(`#email`), email),
		chromedp.SendKeys(chromedp.CSS(`#password`), pw),
	)
	testenv.Screenshot(t, ctx, "signup")
	if err != nil {
		t.Fatalf("sign-up page: %v", err)
	}
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); loc != g.URL+"/signup" {
		t.Errorf("sign-up page at %q", loc)
	}

	// Creating the account signs in and opens the IDE.
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`form[action="/signup"] button[type="submit"]`)),
		chromedp.WaitVisible(ideSel),
	)
	testenv.Screenshot(t, ctx, "ide")
	if err != nil {
		t.Fatalf("IDE after sign-up: %v", err)
	}
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); loc != g.URL+"/" {
		t.Errorf("IDE after sign-up at %q", loc)
	}
	if u, ok := listUsers(t, cfg)[username]; !ok || u.Email != email || strings.Join(u.Roles, ",") != "user" {
		t.Errorf("the new account: %+v", u)
	}

	// Sign out with the sign-out page's button; the browser lands on the
	// login page.
	err = chromedp.Do(ctx,
		chromedp.Navigate(g.URL+"/logout"),
		chromedp.Click(chromedp.CSS(`form[action="/logout"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/login"] #password`)),
	)
	testenv.Screenshot(t, ctx, "login")
	if err != nil {
		t.Fatalf("sign out: %v", err)
	}
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); !strings.HasPrefix(loc, g.URL+"/login") {
		t.Errorf("after signing out the browser is at %q, want the login page", loc)
	}

	// Sign in again with the new account.
	err = chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`#username`), username),
		chromedp.SendKeys(chromedp.CSS(`#password`), pw),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button[type="submit"]`)),
		chromedp.WaitVisible(ideSel),
	)
	testenv.Screenshot(t, ctx, "ide-again")
	if err != nil {
		t.Fatalf("IDE after signing in again: %v", err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(ideSel))
	if err != nil || text != "IDE:/" {
		t.Errorf("IDE page text %q, %v", text, err)
	}

	stopConsole()
	<-consoleDone
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Errorf("browser console: %s", p)
	}
}
