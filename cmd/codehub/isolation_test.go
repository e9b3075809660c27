package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/cgroup"
	"github.com/codehub-dev/codehub/internal/quota"
	"github.com/codehub-dev/codehub/internal/resources"
	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/codehub-dev/codehub/internal/token"
	"github.com/codehub-dev/codehub/internal/token/filekeys"
	"github.com/codehub-dev/codehub/internal/workspace"
	"github.com/gorilla/websocket"
)

// These tests try to break the isolation between two users' workspaces
// under the process strategy: each in its own account, cgroup, storage and
// network namespace, behind the gateway.

// twoUsers is an installation with alice and bob signed in and their
// workspaces running.
type twoUsers struct {
	e              *wsEnv
	g              *testGateway
	aliceID, bobID string
	tokA, tokB     string
	wa, wb         *workspace.Workspace
}

const (
	alicePW = "alice-password-1"
	bobPW   = "bob-password-12"
)

// startTwoUsers creates alice and bob, signs both in and starts both
// workspaces.
func startTwoUsers(t *testing.T, o wsOptions) *twoUsers {
	t.Helper()
	e := newWSEnv(t, o)
	tu := &twoUsers{e: e}
	tu.aliceID = e.createUser("alice", alicePW)
	tu.bobID = e.createUser("bob", bobPW)
	tu.g = e.startGateway()
	tu.tokA = mustFormLogin(t, tu.g, "alice", alicePW)
	tu.tokB = mustFormLogin(t, tu.g, "bob", bobPW)
	// Both start at once, as two people signing in would: the first
	// visit starts a workspace, which goes on in the background.
	navigate(t, tu.g.URL+"/", tu.tokB)
	openWorkbench(t, tu.g, tu.tokA)
	openWorkbench(t, tu.g, tu.tokB)
	tu.wa = e.runningWorkspace(tu.aliceID)
	tu.wb = e.runningWorkspace(tu.bobID)
	if tu.wa.Meta["uid"] == tu.wb.Meta["uid"] || tu.wa.Home == tu.wb.Home {
		t.Fatalf("alice and bob share an account or a home: %v %s, %v %s", tu.wa.Meta, tu.wa.Home, tu.wb.Meta, tu.wb.Home)
	}
	return tu
}

// TestIsolationCrossUserAccess: alice's session never reaches bob's
// workspace, whatever she puts in the path, the headers or the
// credentials. Where a request reaches a workspace at all it is alice's
// own: code-server's redirect names alice's folder, and her code-server,
// running as her account, cannot read bob's files, which his reads.
func TestIsolationCrossUserAccess(t *testing.T) {
	t.Parallel()
	tu := startTwoUsers(t, wsOptions{})
	g, wa, wb := tu.g, tu.wa, tu.wb
	aliceMark, bobMark := "ALICE-"+randomHex(t, 8), "BOB-"+randomHex(t, 8)
	aliceFile := writeOwned(t, wa, "workspaces/alice-notes.txt", []byte(aliceMark+"\n"))
	bobFile := writeOwned(t, wb, "workspaces/bob-notes.txt", []byte(bobMark+"\n"))
	bobSettings := writeOwned(t, wb, "state/User/settings.json", []byte(`{"codehub.test": "`+bobMark+`"}`+"\n"))
	aliceFolder, bobFolder := workspace.Layout{Home: wa.Home}.Workspaces(), workspace.Layout{Home: wb.Home}.Workspaces()

	// noBob fails t if r shows anything of bob's: his file's content or
	// his workspace's secret.
	noBob := func(what string, r reply) {
		t.Helper()
		for _, leak := range []string{bobMark, wb.Secret} {
			if bytes.Contains(r.Body, []byte(leak)) || strings.Contains(r.Header.Get("Location"), leak) {
				t.Errorf("%s: alice sees bob's %q: %d %.300q", what, leak, r.Status, r.Body)
			}
		}
	}
	// servedByAlice checks that requests with alice's session and hdr go
	// to alice's workspace, or are refused, never to bob's: only alice's
	// code-server can read her file, only bob's his.
	servedByAlice := func(what string, hdr ...string) {
		t.Helper()
		r := remoteResource(t, g, tu.tokA, aliceFile, hdr...)
		switch {
		case r.Status == http.StatusOK && string(r.Body) == aliceMark+"\n":
		case r.Status == http.StatusUnauthorized || r.Status == http.StatusForbidden || r.Status == http.StatusBadRequest:
		default:
			t.Errorf("%s: alice's own file: %d %.200q, want it from her workspace or a refusal", what, r.Status, r.Body)
		}
		r = remoteResource(t, g, tu.tokA, bobFile, hdr...)
		noBob(what+": bob's file", r)
		if r.Status == http.StatusOK {
			t.Errorf("%s: bob's file: 200", what)
		}
		r = send(t, http.MethodGet, g.URL+"/", nil, append([]string{"Cookie", sessionCookie(tu.tokA), "Accept", "text/html"}, hdr...)...)
		noBob(what+": GET /", r)
	}

	// The route that reads files by path works: each reads their own.
	if r := remoteResource(t, g, tu.tokA, aliceFile); r.Status != http.StatusOK || string(r.Body) != aliceMark+"\n" {
		t.Fatalf("alice reads her own file through her IDE: %d %.200q", r.Status, r.Body)
	}
	if r := remoteResource(t, g, tu.tokB, bobFile); r.Status != http.StatusOK || string(r.Body) != bobMark+"\n" {
		t.Fatalf("bob reads his own file through his IDE: %d %.200q", r.Status, r.Body)
	}
	if r := remoteResource(t, g, tu.tokB, bobSettings); r.Status != http.StatusOK || !bytes.Contains(r.Body, []byte(bobMark)) {
		t.Fatalf("bob reads his own settings through his IDE: %d %.200q", r.Status, r.Body)
	}

	// Alice's code-server runs as her account, which the kernel keeps out
	// of bob's home, his secret, his storage image and his processes.
	t.Run("files", func(t *testing.T) {
		for _, p := range []string{
			bobFile, bobSettings, filepath.Join(wb.Home, "settings.json"),
			filepath.Join(tu.e.Base, tu.bobID, "workspaces", "bob-notes.txt"), // through <base>/<user-id>
			filepath.Join(wb.Home, "logs", "agent.log"),
			filepath.Join("/run/codehub", wb.ID, "secret"),
			wb.Meta["image"],
			fmt.Sprintf("/proc/%d/environ", wb.PID),
			tu.e.DBPath,
			filepath.Join(tu.e.DataDir, "jwt-keys.json"),
			filepath.Join(tu.e.DataDir, "audit-key.json"),
			filepath.Join(tu.e.DataDir, "audit-checkpoints.json"),
		} {
			r := remoteResource(t, g, tu.tokA, p)
			noBob("read "+p, r)
			if r.Status == http.StatusOK {
				t.Errorf("alice's IDE reads %s: %.200q", p, r.Body)
			}
		}
		for _, w := range []*workspace.Workspace{wa, wb} {
			uid, _ := strconv.Atoi(w.Meta["uid"])
			if p, ok := agentOf(w); !ok || p.UID != uid {
				t.Errorf("agent of %s: %+v, want uid %d", w.ID, p, uid)
			}
			h, err := agentHealth(t, w)
			if err != nil {
				t.Fatal(err)
			}
			if p, ok := procOf(hostPID(w, h.IDE.PID)); !ok || p.UID != uid {
				t.Errorf("code-server of %s: %+v, want uid %d", w.ID, p, uid)
			}
		}
	})

	// Headers naming bob's agent or carrying his secret: the gateway
	// routes by the session alone.
	t.Run("headers", func(t *testing.T) {
		for _, h := range [][]string{
			{"Host", wb.Address},
			{"Host", "127.0.0.1"},
			{"X-Forwarded-Host", wb.Address},
			{"X-Forwarded-For", "10.200.0.1"},
			{agentapi.SecretHeader, wb.Secret},
			{agentapi.SecretHeader, wb.Secret, "Host", wb.Address},
			{agentapi.SecretHeader, wb.Secret, agentapi.ControlHeader, wb.Secret},
			{"X-Codehub-Workspace", wb.ID, "X-Codehub-User", tu.bobID},
		} {
			servedByAlice(strings.Join(h, ": "), h...)
			// code-server sends / to the folder of the workspace that
			// answered: alice's.
			r := send(t, http.MethodGet, g.URL+"/", nil, append([]string{"Cookie", sessionCookie(tu.tokA), "Accept", "text/html"}, h...)...)
			if loc := r.Header.Get("Location"); r.Status != http.StatusFound || !strings.Contains(loc, aliceFolder) {
				t.Errorf("GET / with %s: %d to %q, want alice's folder %s", strings.Join(h, ": "), r.Status, loc, aliceFolder)
			}
		}
		// A WebSocket with bob's secret and his agent's name still opens
		// alice's IDE, or nothing.
		gu, _ := url.Parse(g.URL)
		d := websocket.Dialer{HandshakeTimeout: guard}
		ws, resp, err := d.Dial("ws://"+gu.Host+"/?reconnectionToken=7f3c1a2e-0000-4000-8000-0000000000b0&reconnection=false&skipWebSocketFrames=false",
			http.Header{"Origin": {g.URL}, "Cookie": {sessionCookie(tu.tokA)}, agentapi.SecretHeader: {wb.Secret}, "X-Forwarded-Host": {wb.Address}})
		if err == nil {
			ws.Close()
		} else if resp != nil {
			b, _ := io.ReadAll(resp.Body)
			noBob("WebSocket with bob's secret", reply{Status: resp.StatusCode, Header: resp.Header, Body: b})
		}
	})

	// Tokens that are not alice's own: forged, expired, alg:none, a wrong
	// key, bob's spent refresh token. Alone they are refused; next to
	// alice's cookie they get alice's workspace or a refusal.
	t.Run("tokens", func(t *testing.T) {
		pb := apiLogin(t, g, "bob", bobPW)
		_, bobMe := getMe(t, g, bearer(pb.AccessToken)...)
		header, claims := decodeJWT(t, pb.AccessToken)

		// The gateway's own key, to make an expired token that is
		// otherwise perfect (and, to check the crafting, a fresh one).
		keys, err := filekeys.Open(filekeys.Config{Path: filepath.Join(tu.e.DataDir, "jwt-keys.json")})
		if err != nil {
			t.Fatal(err)
		}
		issue := func(now time.Time) string {
			svc, err := token.NewService(token.Config{Issuer: claims["iss"].(string), Audience: claims["aud"].(string), Now: func() time.Time { return now }}, keys)
			if err != nil {
				t.Fatal(err)
			}
			tok, _, err := svc.IssueAccess(context.Background(), tu.bobID, bobMe.Session.ID)
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
		if r, who := getMe(t, g, bearer(issue(time.Now()))...); r.Status != http.StatusOK || who.User.ID != tu.bobID {
			t.Fatalf("a token made with the gateway's key is refused (%d %s): the crafting is wrong", r.Status, r.Body)
		}
		_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
		now := time.Now().Unix()
		fresh := map[string]any{}
		for k, v := range claims {
			fresh[k] = v
		}
		fresh["exp"], fresh["iat"], fresh["nbf"] = now+600, now, now

		bad := map[string]string{
			"expired":             issue(time.Now().Add(-2 * time.Hour)),
			"alg none":            signJWT(map[string]any{"alg": "none", "typ": "JWT", "kid": header["kid"]}, fresh, nil),
			"alg none, no kid":    signJWT(map[string]any{"alg": "none", "typ": "JWT"}, fresh, nil),
			"wrong key, same kid": signJWT(header, fresh, otherKey),
			"wrong key, new kid":  signJWT(map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": "AAAAAAAAAAAAAAAA"}, fresh, otherKey),
			"HS256 with the kid":  signJWT(map[string]any{"alg": "HS256", "typ": "JWT", "kid": header["kid"]}, fresh, []byte(header["kid"].(string))),
			"tampered sub": func() string { // bob's real signature over other claims
				parts := strings.Split(pb.AccessToken, ".")
				c := map[string]any{}
				for k, v := range claims {
					c[k] = v
				}
				c["sub"] = tu.aliceID
				b, _ := json.Marshal(c)
				return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
			}(),
		}
		// bob's refresh token, spent: presenting it again (here with
		// alice's cookie) is refused, and ends bob's API session.
		r := postJSON(t, g.URL+"/api/v1/auth/refresh", map[string]string{"refresh_token": pb.RefreshToken})
		if r.Status != http.StatusOK {
			t.Fatalf("bob's refresh: %d %s", r.Status, r.Body)
		}
		var pb2 tokenPair
		_ = json.Unmarshal(r.Body, &pb2)
		r = postJSON(t, g.URL+"/api/v1/auth/refresh", map[string]string{"refresh_token": pb.RefreshToken}, "Cookie", sessionCookie(tu.tokA))
		if r.Status != http.StatusUnauthorized {
			t.Errorf("bob's spent refresh token replayed with alice's cookie: %d %s, want 401", r.Status, r.Body)
		} else if code := r.errorBody(t).Error.Code; code != "refresh_token_reused" {
			t.Errorf("replayed refresh token: error code %q, want refresh_token_reused", code)
		}
		noBob("refresh replay", r)
		eventually(t, 15*time.Second, "bob's session still valid after his refresh token was replayed", func() bool {
			r, _ := getMe(t, g, bearer(pb2.AccessToken)...)
			return r.Status == http.StatusUnauthorized
		})
		bad["bob's spent refresh token"] = pb.RefreshToken
		bad["bob's ended access token"] = pb2.AccessToken

		for name, tok := range bad {
			if r, _ := getMe(t, g, bearer(tok)...); r.Status != http.StatusUnauthorized {
				t.Errorf("%s as bearer on /api/v1/me: %d %.200q, want 401", name, r.Status, r.Body)
			}
			r := send(t, http.MethodGet, g.URL+"/vscode-remote-resource?path="+url.QueryEscape(bobFile), nil, bearer(tok)...)
			noBob(name+" as bearer", r)
			if r.Status != http.StatusUnauthorized {
				t.Errorf("%s as bearer on the IDE: %d %.200q, want 401", name, r.Status, r.Body)
			}
			servedByAlice(name+" as bearer next to alice's cookie", bearer(tok)...)
		}
		// alice's own session is untouched by all this.
		if r := remoteResource(t, g, tu.tokA, aliceFile); r.Status != http.StatusOK || string(r.Body) != aliceMark+"\n" {
			t.Errorf("alice's own file afterwards: %d %.200q", r.Status, r.Body)
		}
	})
	// Paths naming bob's workspace, user, home or agent reach alice's own
	// IDE, where they name nothing of hers. (Last: opening bob's folder
	// makes alice's code-server redirect / there from then on.)
	t.Run("paths", func(t *testing.T) {
		for _, p := range []string{
			"/" + wb.ID + "/", "/" + tu.bobID + "/", "/" + tu.bobID + "/workspaces/bob-notes.txt",
			wb.Home + "/workspaces/bob-notes.txt", "/" + wb.Address + "/", "/" + wb.Address + agentapi.PathHealth,
			"/proxy/7070" + agentapi.PathHealth, "/absproxy/7070" + agentapi.PathHealth,
			"/..%2f..%2f" + wb.ID + "/workspaces/bob-notes.txt", "/%2e%2e/%2e%2e" + bobFile,
			"/vscode-remote-resource?path=" + url.QueryEscape(bobFile) + "&path=" + url.QueryEscape(aliceFile),
			"/vscode-remote-resource?path=" + url.QueryEscape("/proc/self/root"+bobFile),
			"/vscode-remote-resource?path=" + url.QueryEscape(wa.Home+"/../"+filepath.Base(wb.Home)+"/workspaces/bob-notes.txt"),
			"/static/../../../" + bobFile, "/_static/" + bobFile,
		} {
			r := send(t, http.MethodGet, g.URL+p, nil, "Cookie", sessionCookie(tu.tokA))
			noBob("GET "+p, r)
		}
		// ?folder= naming bob's folder: code-server renders a workbench
		// for it, but alice's code-server cannot read a file of it.
		r := navigate(t, g.URL+"/?folder="+url.QueryEscape(bobFolder), tu.tokA)
		noBob("?folder=bob's folder", r)
		servedByAlice("after opening bob's folder")
	})
}

// decodeJWT returns a token's header and claims, unverified.
func decodeJWT(t *testing.T, tok string) (map[string]any, map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	var h, c map[string]any
	for i, v := range []*map[string]any{&h, &c} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	return h, c
}

// signJWT encodes a token: EdDSA with an ed25519.PrivateKey, HS256 with a
// []byte key, no signature with nil.
func signJWT(header, claims map[string]any, key any) string {
	hb, _ := json.Marshal(header)
	cb, _ := json.Marshal(claims)
	in := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb)
	var sig []byte
	switch k := key.(type) {
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, []byte(in))
	case []byte:
		m := hmac.New(sha256.New, k)
		m.Write([]byte(in))
		sig = m.Sum(nil)
	}
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestIsolationAgentRequiresSecret: a workspace's agent answers only
// requests carrying its secret: from the host, any path, method or
// WebSocket upgrade without it, or with a wrong one, gets 401; and from
// another workspace's network namespace the agent cannot even be reached,
// secret or not.
func TestIsolationAgentRequiresSecret(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		testenv.Need(t, "curl, to connect from inside a workspace's network namespace")
	}
	tu := startTwoUsers(t, wsOptions{})
	wa, wb := tu.wa, tu.wb
	client := &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	call := func(method, addr, path string, hdr ...string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Add(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s http://%s%s: %v", method, addr, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	secret := func(values ...string) []string { // in both headers the gateway may send
		var hdr []string
		for _, v := range values {
			hdr = append(hdr, agentapi.SecretHeader, v, agentapi.ControlHeader, v)
		}
		return hdr
	}

	// With the secret the agent answers, so the refusals below are the
	// secret's doing.
	if code, body := call(http.MethodGet, wa.Address, agentapi.PathHealth, secret(wa.Secret)...); code != http.StatusOK {
		t.Fatalf("agent health with its secret: %d %s", code, body)
	}
	if code, body := call(http.MethodGet, wa.Address, "/", secret(wa.Secret)...); code != http.StatusFound {
		t.Fatalf("the IDE through the agent with its secret: %d %.200s", code, body)
	}

	paths := []string{
		"/", "/?folder=/", agentapi.PathHealth, agentapi.PathActivity, agentapi.PathUsage, agentapi.PathStop,
		"/_agent/", "/_agent/unknown", "/vscode-remote-resource?path=/etc/passwd", "/static/", "/healthz",
		"/login", "//", "/%2e%2e/", "/proxy/7070/", "/" + strings.Repeat("a", 2000),
	}
	wrong := map[string][]string{
		"no secret":           nil,
		"empty":               secret(""),
		"another's secret":    secret(wb.Secret),
		"a prefix":            secret(wa.Secret[:len(wa.Secret)-1]),
		"with a suffix":       secret(wa.Secret + "0"),
		"upper case":          secret(strings.ToUpper(wa.Secret)),
		"inside another":      secret("x" + wa.Secret + "x"),
		"a wrong one first":   secret(wb.Secret, wa.Secret),
		"random, same length": secret(randomHex(t, len(wa.Secret)/2)),
		"control header only": {agentapi.ControlHeader, wa.Secret},
	}
	for name, hdr := range wrong {
		for _, p := range paths {
			for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodHead, http.MethodDelete} {
				if code, body := call(m, wa.Address, p, hdr...); code != http.StatusUnauthorized {
					t.Errorf("%s %.60s with %s: %d %.200s, want 401", m, p, name, code, body)
				}
			}
		}
		// The WebSocket upgrade (VS Code's connection) too.
		d := websocket.Dialer{HandshakeTimeout: 20 * time.Second}
		h := http.Header{}
		for i := 0; i+1 < len(hdr); i += 2 {
			h.Add(hdr[i], hdr[i+1])
		}
		ws, resp, err := d.Dial("ws://"+wa.Address+"/?reconnectionToken=7f3c1a2e-0000-4000-8000-0000000000c0&reconnection=false&skipWebSocketFrames=false", h)
		if err == nil {
			ws.Close()
			t.Errorf("WebSocket to the agent with %s: opened", name)
		} else if resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("WebSocket to the agent with %s: %v (%v), want 401", name, err, resp)
		}
	}
	// The secret alone, as proxied browser traffic carries it, does not
	// open the agent's own endpoints: they want it in the control header
	// too.
	for _, p := range []string{agentapi.PathHealth, agentapi.PathActivity, agentapi.PathUsage, agentapi.PathStop, "/%5Fagent/health", "/_AGENT/stop", "/x/../_agent/stop"} {
		for _, ctl := range [][]string{nil, {agentapi.ControlHeader, wb.Secret}, {agentapi.ControlHeader, ""}} {
			for _, m := range []string{http.MethodGet, http.MethodPost} {
				hdr := append([]string{agentapi.SecretHeader, wa.Secret}, ctl...)
				if code, body := call(m, wa.Address, p, hdr...); code == http.StatusOK || code == http.StatusAccepted {
					t.Errorf("%s %s with the secret and control header %q: %d %.200s", m, p, ctl, code, body)
				}
			}
		}
	}
	// None of that stopped the agent, nor its IDE.
	if h, err := agentHealth(t, wa); err != nil || h.Status != "running" {
		t.Fatalf("agent after the refused requests: %+v %v", h, err)
	}

	// From inside alice's namespace, as alice's account: bob's agent is
	// out of reach even with his secret; her own agent is reachable but
	// refuses her without the secret; the gateway's loopback address is
	// her namespace's own.
	curl := func(w *workspace.Workspace, u string, hdr ...string) (string, int, string) {
		t.Helper()
		args := []string{"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"}
		for _, h := range hdr {
			args = append(args, "-H", h)
		}
		cmd := asWorkspace(w, append(args, u)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := errAs[*exec.ExitError](err); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("curl: %v", err)
		}
		return stdout.String(), code, stderr.String()
	}
	if status, code, msg := curl(wa, "http://"+wa.Address+agentapi.PathHealth); status != "401" {
		t.Errorf("alice's own agent from her namespace without the secret: HTTP %q, curl exit %d %s; want 401", status, code, msg)
	}
	for _, u := range []string{"http://" + wb.Address + agentapi.PathHealth, "http://" + wb.Address + "/"} {
		status, code, msg := curl(wa, u, agentapi.SecretHeader+": "+wb.Secret)
		if status != "000" || (code != 7 && code != 28) {
			t.Errorf("bob's agent %s from alice's namespace, with his secret: HTTP %q, curl exit %d %s; want no connection", u, status, code, msg)
		} else {
			t.Logf("bob's agent from alice's namespace: curl exit %d: %s", code, strings.TrimSpace(msg))
		}
	}
	gu, _ := url.Parse(tu.g.URL)
	if status, code, msg := curl(wa, "http://"+gu.Host+"/healthz"); status != "000" {
		t.Errorf("the gateway's loopback address from alice's namespace: HTTP %q, curl exit %d %s; want no connection", status, code, msg)
	}
	if h, err := agentHealth(t, wb); err != nil || h.Status != "running" {
		t.Fatalf("bob's agent afterwards: %+v %v", h, err)
	}
}

// TestHogKilledByCgroup: a process eating memory in alice's workspace is
// killed by her cgroup's memory limit (SIGKILL, the OOM killer), not her
// IDE; bob's workspace goes on serving, and so does alice's.
func TestHogKilledByCgroup(t *testing.T) {
	t.Parallel()
	// The agent and code-server 4.139.1 use 100-130 MiB until a browser
	// connects (measured; with a workbench open, its extension host and
	// agent host take the peak to about 400 MiB, so this limit suits
	// these HTTP-only workspaces, not people). 384 leaves the hog a few
	// hundred MiB (counting, under -race, the detector's shadow memory),
	// so that it is the biggest process when the limit is hit.
	const limitMB = 384
	tu := startTwoUsers(t, wsOptions{MemoryMB: limitMB, SampleInterval: time.Second})
	wa, wb := tu.wa, tu.wb
	before := map[string]agentapi.Health{}
	for _, w := range []*workspace.Workspace{wa, wb} {
		h, err := agentHealth(t, w)
		if err != nil {
			t.Fatal(err)
		}
		before[w.ID] = h
	}
	cg, err := cgroup.Open(wa.Meta["cgroup"])
	if err != nil {
		t.Fatalf("alice's cgroup: %v", err)
	}
	if st, err := cg.Stats(); err == nil {
		t.Logf("alice's workspace before the hog: %+v", st)
	}

	// The hog is this test binary (the runtime's copy the agent runs
	// from), as alice, in her namespace, put into her cgroup before it
	// allocates anything.
	agent, ok := procOf(wa.PID)
	if !ok {
		t.Fatal("alice's agent is gone")
	}
	hog := inCgroup(asWorkspace(wa, agent.Cmdline[0], hogCommand))
	stdin, err := hog.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	hog.Stdout, hog.Stderr = &out, &errOut
	if err := hog.Start(); err != nil {
		t.Fatal(err)
	}
	if err := cg.Add(hog.Process.Pid); err != nil {
		hog.Process.Kill()
		t.Fatalf("put the hog into alice's cgroup: %v", err)
	}
	io.WriteString(stdin, "go\ngo\n") // one line for inCgroup, one for the hog
	stdin.Close()
	waited := make(chan error, 1)
	go func() { waited <- hog.Wait() }()
	var werr error
	select {
	case werr = <-waited:
	case <-time.After(guard):
		hog.Process.Kill()
		t.Fatalf("the hog still runs after %s:\n%s", guard, tail(out.String(), 3))
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	t.Logf("the hog ended with %v after %q", werr, lines[len(lines)-1])
	ee, ok := errAs[*exec.ExitError](werr)
	if !ok {
		t.Fatalf("the hog ended with %v, want death by SIGKILL; stderr %s", werr, errOut.String())
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the hog ended with %v, want SIGKILL (the OOM killer)", werr)
	}
	var got int
	fmt.Sscanf(lines[len(lines)-1], "allocated %d MiB", &got)
	if got > limitMB {
		t.Errorf("the hog got %d MiB past alice's %d MiB limit", got, limitMB)
	}

	// Bob's workspace goes on serving, and alice's IDE was not the victim.
	openWorkbench(t, tu.g, tu.tokB)
	openWorkbench(t, tu.g, tu.tokA)
	for _, w := range []*workspace.Workspace{wa, wb} {
		h, err := agentHealth(t, w)
		if err != nil || h.Status != "running" {
			t.Fatalf("workspace %s after the hog: %+v %v", w.ID, h, err)
		}
		if h.IDE.PID != before[w.ID].IDE.PID || h.IDE.Restarts != 0 {
			t.Errorf("the code-server of %s was restarted (pid %d -> %d, %d restarts): the OOM killer took the IDE", w.ID, before[w.ID].IDE.PID, h.IDE.PID, h.IDE.Restarts)
		}
	}
	if cur := tu.e.workspaceOf(tu.aliceID); cur.ID != wa.ID || cur.PID != wa.PID || cur.Restarts != 0 {
		t.Errorf("alice's workspace was restarted: %+v", cur)
	}
	st, err := cg.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("alice's workspace after the hog: %+v", st)
	if st.OOMKills < 1 {
		t.Errorf("alice's cgroup counts %d OOM kills, want the hog's", st.OOMKills)
	}

	// The kill is counted where alice and the administrators look, and
	// audited, for alice only.
	eventually(t, guard, "alice's OOM kill in GET /api/v1/me/workspace", func() bool {
		st := myWorkspace(t, tu.g, tu.tokA)
		return st.Usage != nil && st.Usage.Memory.OOMKills >= 1
	})
	eventually(t, guard, "alice's OOM kill audited", func() bool {
		return len(quotaEvents(t, tu.e, tu.aliceID, "memory")) >= 1
	})
	ev := quotaEvents(t, tu.e, tu.aliceID, "memory")[0]
	if ev.Metadata["oomKills"] != float64(st.OOMKills) || ev.Metadata["workspaceId"] != wa.ID {
		t.Errorf("the OOM event: %+v, want %d kills in %s", ev.Metadata, st.OOMKills, wa.ID)
	}
	if m := gatewayMetrics(t, tu.g); m["codehub_workspace_oom_kills_total"] < 1 {
		t.Errorf("codehub_workspace_oom_kills_total = %v", m["codehub_workspace_oom_kills_total"])
	}
	if st := myWorkspace(t, tu.g, tu.tokB); st.Usage == nil || st.Usage.Memory.OOMKills != 0 {
		t.Errorf("bob's workspace reports OOM kills: %+v", st.Usage)
	}
	if ev := quotaEvents(t, tu.e, tu.bobID, ""); len(ev) != 0 {
		t.Errorf("quota events for bob: %+v", ev)
	}
}

// quotaEvents returns the installation's security.quota_exceeded events
// of a user (for one resource, or all), from its audit file.
func quotaEvents(t *testing.T, e *wsEnv, userID, resource string) []audit.Event {
	t.Helper()
	var out []audit.Event
	for _, ev := range readAuditFile(t, filepath.Join(e.DataDir, "audit.log")) {
		if ev.EventType == audit.QuotaExceeded && ev.UserID == userID && (resource == "" || ev.Metadata["resource"] == resource) {
			out = append(out, ev)
		}
	}
	return out
}

// TestQuotaFullDisk: the user can write the storage quota, not more:
// past it, writing fails with "No space left on device" for that user,
// and loses nothing written before, nor after a restart of the
// workspace. The editor is told as the user experiences it: at 90% a
// warning, when writes fail "full" at 100% and exceeded, with one
// security.quota_exceeded event (before, a full home read 93%, not
// exceeded, with no event and no warning).
func TestQuotaFullDisk(t *testing.T) {
	t.Parallel()
	const quotaMB = 64
	e := newWSEnv(t, wsOptions{StorageMB: quotaMB, SampleInterval: time.Second})
	id := e.createUser("alice", alicePW)
	g := e.startGateway()
	tok := mustFormLogin(t, g, "alice", alicePW)
	openWorkbench(t, g, tok)
	w := e.runningWorkspace(id)
	folder := workspace.Layout{Home: w.Home}.Workspaces()
	storage := func() resources.StorageUsage {
		t.Helper()
		st := myWorkspace(t, g, tok)
		if st.Usage == nil {
			t.Fatalf("GET /api/v1/me/workspace has no usage: %+v", st)
		}
		return st.Usage.Storage
	}
	if s := storage(); s.Limit < quotaMB<<20 || s.Limit > quotaMB<<20+2<<20 || s.Warning || s.Full {
		t.Fatalf("a fresh %d MiB home: %+v", quotaMB, s)
	}

	// A file of known content, written by alice.
	precious := filepath.Join(folder, "precious.bin")
	if out, err := asWorkspace(w, "dd", "if=/dev/urandom", "of="+precious, "bs=1M", "count=8", "status=none").CombinedOutput(); err != nil {
		t.Fatalf("write the first file: %v %s", err, out)
	}
	sum := fileSum(t, precious)

	// Up to 91%: the editor warns; nothing is exceeded.
	s := storage()
	mib := (s.Limit*91/100-s.Used)>>20 + 1
	if out, err := asWorkspace(w, "dd", "if=/dev/zero", "of="+filepath.Join(folder, "big.bin"), "bs=1M",
		"count="+strconv.FormatInt(mib, 10), "status=none").CombinedOutput(); err != nil {
		t.Fatalf("write up to 91%%: %v %s", err, out)
	}
	eventually(t, guard, "the editor's warning at 90%", func() bool {
		s := storage()
		return s.Warning && !s.Full && s.Percent >= 90 && s.Percent < 100
	})
	time.Sleep(2 * time.Second) // two samples
	if ev := quotaEvents(t, e, id, ""); len(ev) != 0 {
		t.Fatalf("quota events at 91%%: %+v", ev)
	}

	// Then fill the home.
	fill := asWorkspace(w, "dd", "if=/dev/zero", "of="+filepath.Join(folder, "fill.bin"), "bs=1M")
	out, err := fill.CombinedOutput()
	if err == nil {
		t.Fatalf("writing without end succeeded on a %d MiB quota: %s", quotaMB, out)
	}
	if !strings.Contains(string(out), "No space left on device") {
		t.Fatalf("writing past the quota: %v, %q; want \"No space left on device\"", err, out)
	}
	t.Logf("past the quota: %s", strings.TrimSpace(string(out)))
	fi, err := os.Stat(filepath.Join(folder, "fill.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > quotaMB<<20 {
		t.Errorf("alice wrote %d bytes into a %d MiB quota", fi.Size(), quotaMB)
	}
	if written := 8<<20 + mib<<20 + fi.Size(); written < quotaMB<<20-3<<20 {
		t.Errorf("alice could write %d bytes of a %d MiB quota", written, quotaMB)
	}
	if got := fileSum(t, precious); got != sum {
		t.Fatalf("the first file changed when the disk filled: %s, was %s", got, sum)
	}
	// The host's disk is not what filled: only alice's image is full.
	var st syscall.Statfs_t
	if err := syscall.Statfs(e.Root, &st); err != nil || st.Bavail == 0 {
		t.Fatalf("the host file system is full too: %v", err)
	}
	if r := remoteResource(t, g, tok, precious); r.Status != http.StatusOK || sha(r.Body) != sum {
		t.Errorf("the first file through the IDE on a full disk: %d, %d bytes", r.Status, len(r.Body))
	}

	// Full as the editor sees it, and exceeded, audited once.
	eventually(t, guard, "full at 100% in GET /api/v1/me/workspace", func() bool {
		s := storage()
		return s.Full && s.Percent == 100 && s.Warning && s.Available < quota.FullBelow
	})
	eventually(t, guard, "the full home audited", func() bool { return len(quotaEvents(t, e, id, "storage")) > 0 })
	time.Sleep(3 * time.Second) // three more samples, still full
	if ev := quotaEvents(t, e, id, ""); len(ev) != 1 || ev[0].Status != audit.StatusFailure {
		t.Errorf("quota events after the home filled: %+v, want one", ev)
	} else {
		t.Logf("the event: %+v", ev[0].Metadata)
	}

	// A restart keeps everything: the home is the same image, mounted
	// again.
	p := apiLogin(t, g, "alice", alicePW)
	if r := do(t, http.MethodPost, g.URL+"/api/v1/me/workspace/restart", nil, bearer(p.AccessToken)...); r.Status != http.StatusNoContent {
		t.Fatalf("restart alice's workspace on a full disk: %d %s", r.Status, r.Body)
	}
	openWorkbench(t, g, tok)
	w2 := e.runningWorkspace(id)
	if w2.PID == w.PID {
		t.Fatalf("the workspace did not restart (agent pid %d)", w.PID)
	}
	if got := fileSum(t, precious); got != sum {
		t.Fatalf("the first file after a restart: %s, was %s", got, sum)
	}
	if fi2, err := os.Stat(filepath.Join(folder, "fill.bin")); err != nil || fi2.Size() != fi.Size() {
		t.Errorf("the partly written file after a restart: %v, %v bytes (was %d)", err, fi2, fi.Size())
	}
	if r := remoteResource(t, g, tok, precious); r.Status != http.StatusOK || sha(r.Body) != sum {
		t.Errorf("the first file through the IDE after a restart: %d, %d bytes", r.Status, len(r.Body))
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func fileSum(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha(b)
}

// TestIsolationAgentAPINotProxied: the agent's own endpoints (/_agent/...)
// are the gateway's control channel, trusted because the gateway adds the
// workspace secret. A user's request to such a path must not be relayed
// with that secret: through the gateway, a signed-in user must neither
// read them nor stop the agent.
func TestIsolationAgentAPINotProxied(t *testing.T) {
	t.Parallel()
	e := newWSEnv(t, wsOptions{})
	id := e.createUser("alice", alicePW)
	g := e.startGateway()
	tok := mustFormLogin(t, g, "alice", alicePW)
	openWorkbench(t, g, tok)
	w := e.runningWorkspace(id)
	for _, p := range []string{agentapi.PathHealth, agentapi.PathActivity, agentapi.PathUsage, "/%5Fagent/health", "/_agent/%68ealth"} {
		r := do(t, http.MethodGet, g.URL+p, nil, "Cookie", sessionCookie(tok))
		if r.Status == http.StatusOK {
			t.Errorf("GET %s through the gateway reaches the agent's own endpoint: %.200q", p, r.Body)
		}
	}
	r := do(t, http.MethodPost, g.URL+agentapi.PathStop, nil, "Cookie", sessionCookie(tok))
	if r.Status == http.StatusAccepted {
		t.Errorf("POST %s through the gateway stops the agent: %d %.200q", agentapi.PathStop, r.Status, r.Body)
	}
	time.Sleep(2 * time.Second)
	if _, ok := agentOf(w); !ok {
		t.Errorf("alice's agent (workspace pid %d) is gone after her POST %s", w.PID, agentapi.PathStop)
	}
}
