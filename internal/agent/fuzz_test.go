package agent

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/proxy"
	"github.com/gorilla/websocket"
	"github.com/hashicorp/go-hclog"
)

// FuzzClassify feeds the frame classifier what a browser may send: it
// never panics, its work is linear in the message (frames advance by at
// least a header each, the description is proportional), frames stay
// inside the message, keep-alives and acks alone are never input, and a
// complete keep-alive frame in front of a message changes nothing.
func FuzzClassify(f *testing.F) {
	seeds := []string{
		capturedKeepAlive, capturedAck, capturedKeepAlive + capturedAck, capturedAgentHostPoll, capturedTelemetryPing,
		capturedTunnelsCut, "", "\x00\x01\x02", "\x01\x02",
		frameOf(frameRegular, rpcRequest("$acceptModelChanged")),
		frameOf(frameRegular, ipcCall("remoteterminal", "$input", "")),
		frameOf(frameRegular, ipcCall("remoteFilesystem", "writeFile", "/home/alice/state/User/x.json")),
		frameOf(frameRegular, ipcCall("remoteFilesystem", "writeFile", "/home/alice/workspaces/main.go")),
		frameOf(frameRegular, ipcCall("remoteFilesystem", "rename", `{"external":"vscode-remote://h/home/alice/%E2%82%AC"}`)),
		frameOf(frameControl, `{"type":"auth"}`),
		frameOf(frameRegular, rpcReply) + frameOf(frameRegular, "\x04\x04\x06\xff\xff\xff\xff\xff\xff"),
	}
	for _, s := range seeds {
		f.Add(byte(websocket.BinaryMessage), []byte(s))
	}
	f.Add(byte(websocket.TextMessage), []byte("hello"))
	c := newClassifier("/home/alice/state", "/home/alice/extensions")
	f.Fuzz(func(t *testing.T, mtb byte, head []byte) {
		mt := int(mtb)
		if len(head) > 4*proxy.ClientMessageHeadSize {
			return // the relay passes at most ClientMessageHeadSize
		}
		in, term := c.classify(mt, head)
		if term && !in {
			t.Fatalf("terminal input that is not input: %q", head)
		}
		if mt != websocket.BinaryMessage {
			if in != (mt == websocket.TextMessage) || term {
				t.Fatalf("message type %d: input=%v terminal=%v", mt, in, term)
			}
			return
		}
		fs, ok := frames(head)
		if len(fs) > len(head)/frameHeaderLen+1 {
			t.Fatalf("%d frames in %d bytes", len(fs), len(head))
		}
		for _, fr := range fs {
			if len(fr.data) > 0 && !within(fr.data, head) {
				t.Fatalf("frame data outside the message")
			}
		}
		if d := describe(mt, head); len(d) > 40*len(head)+64 {
			t.Fatalf("description of %d bytes for %d bytes of message", len(d), len(head))
		}
		if ok && len(fs) > 0 {
			quiet := true
			for _, fr := range fs {
				quiet = quiet && (fr.typ == frameKeepAlive || fr.typ == frameAck)
			}
			if quiet && in {
				t.Fatalf("keep-alives and acks counted as input: %q", head)
			}
			withKA := append([]byte(capturedKeepAlive), head...)
			if in2, term2 := c.classify(mt, withKA); in2 != in || term2 != term {
				t.Fatalf("a keep-alive in front changed the verdict from %v/%v to %v/%v: %q", in, term, in2, term2, head)
			}
		}
	})
}

// within reports whether b lies inside whole's memory.
func within(b, whole []byte) bool {
	if len(whole) == 0 {
		return false
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(whole)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return p >= start && p+uintptr(len(b)) <= start+uintptr(len(whole))
}

// FuzzRoutes sends the agent requests of any target, with or without the
// secret and the control header: nothing answers without the secret, the
// control endpoints answer only with the control header too, the IDE never
// receives an agent path, and never the control header.
func FuzzRoutes(f *testing.F) {
	secret := []byte(strings.Repeat("s", 40))
	for _, target := range []string{agentapi.PathHealth, agentapi.PathStop, "/%5Fagent/stop", "/_AGENT/health",
		"/x/../_agent/stop", "/", "/stable/x.js", "/%255fagent/usage", "/_agent/nothing"} {
		for _, hdr := range []byte{0, 1, 3} {
			f.Add("GET", target, hdr)
		}
	}
	f.Add("POST", agentapi.PathStop, byte(3))
	var reachedIDE, controlLeak, stopped bool
	var idePath string
	h := routes(routeDeps{
		secret:   secret,
		log:      hclog.NewNullLogger(),
		health:   func() agentapi.Health { return agentapi.Health{Status: "running"} },
		activity: func() agentapi.Activity { return agentapi.Activity{} },
		usage:    func() agentapi.Usage { return agentapi.Usage{} },
		stop:     func() { stopped = true },
		ide: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			reachedIDE, idePath = true, r.URL.String()
			controlLeak = r.Header.Get(agentapi.ControlHeader) != ""
			w.Write([]byte("IDE"))
		}),
	})
	f.Fuzz(func(t *testing.T, method, target string, hdr byte) {
		req, err := readRequest(method, target)
		if err != nil {
			return
		}
		withSecret, withControl := hdr&1 != 0, hdr&2 != 0
		if withSecret {
			req.Header.Set(agentapi.SecretHeader, string(secret))
		}
		if withControl {
			req.Header.Set(agentapi.ControlHeader, string(secret))
		}
		reachedIDE, controlLeak, stopped, idePath = false, false, false, ""
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch {
		case !withSecret && (rec.Code != http.StatusUnauthorized || reachedIDE || stopped):
			t.Fatalf("%s %q without the secret: %d, IDE reached %v, stopped %v", method, target, rec.Code, reachedIDE, stopped)
		case reachedIDE && agentapi.IsAgentPath(req.URL):
			t.Fatalf("%s %q reached the IDE as %q", method, target, idePath)
		case controlLeak:
			t.Fatalf("%s %q: the control header reached the IDE", method, target)
		case stopped && !(withSecret && withControl):
			t.Fatalf("%s %q stopped the agent without the control header", method, target)
		case !withControl && rec.Code == http.StatusOK && !reachedIDE:
			t.Fatalf("%s %q answered %q without the control header", method, target, rec.Body.String())
		}
	})
}

// readRequest parses a request line as the agent's HTTP server does.
func readRequest(method, target string) (*http.Request, error) {
	if method == "" || strings.ContainsAny(method, " \r\n") || strings.ContainsAny(target, " \r\n") {
		return nil, http.ErrNotSupported
	}
	return http.ReadRequest(bufio.NewReader(strings.NewReader(method + " " + target + " HTTP/1.1\r\nHost: agent\r\n\r\n")))
}

// FuzzParseStat: a workspace's user names their processes as they like,
// parentheses, spaces and digits included; /proc/<pid>/stat of any such
// process reads back the numbers the kernel wrote, so that a name can
// neither fake CPU use (activity) nor hide a process from its tree.
func FuzzParseStat(f *testing.F) {
	f.Add(1234, "bash", 1, uint64(10), uint64(20), uint64(30), uint64(40), uint64(5000), uint64(300))
	f.Add(7, "a) R 1 2 3 4", 6, uint64(1), uint64(2), uint64(3), uint64(4), uint64(5), uint64(6))
	f.Add(9, ") (", 8, uint64(0), uint64(0), uint64(0), uint64(0), uint64(0), uint64(0))
	f.Add(9, "x\n) 1", 1, uint64(1<<63), uint64(1), uint64(0), uint64(0), uint64(0), uint64(0))
	f.Fuzz(func(t *testing.T, pid int, comm string, ppid int, utime, stime, cutime, cstime, start, rss uint64) {
		if pid < 1 || ppid < 0 || len(comm) > 64 || strings.ContainsRune(comm, 0) {
			return // what the kernel writes: a pid, a name of at most 15 bytes
		}
		// Fields 3 to 24 of proc(5), and more after them.
		fields := []string{"S", strconv.Itoa(ppid), "1", "1", "0", "-1", "4194304", "100", "0", "5", "0",
			strconv.FormatUint(utime, 10), strconv.FormatUint(stime, 10), strconv.FormatUint(cutime, 10),
			strconv.FormatUint(cstime, 10), "20", "0", "1", "0", strconv.FormatUint(start, 10), "1000", strconv.FormatUint(rss, 10),
			"18446744073709551615", "0", "0"}
		line := strconv.Itoa(pid) + " (" + comm + ") " + strings.Join(fields, " ") + "\n"
		p, err := parseStat([]byte(line))
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		want := procStat{pid: pid, ppid: ppid, self: utime + stime, children: cutime + cstime, start: start, rssPages: int64(rss)}
		if p != want {
			t.Fatalf("%q read as %+v, want %+v", line, p, want)
		}
	})
}
