package agent

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/codehub-dev/codehub/internal/proxy"
	"github.com/gorilla/websocket"
)

// Messages as the workbench of code-server 4.139.1 sent them (the first
// bytes, as the relay shows them), and encoders for more.
const (
	capturedKeepAlive = "\t\x00\x00\x00\x00\x00\x00\x03(\x00\x00\x00\x00"
	capturedAck       = "\x03\x00\x00\x00\x00\x00\x00\x03=\x00\x00\x00\x00"
	// The chat agent host polled every 5 s, cut at 64 bytes.
	capturedAgentHostPoll = "\x01\x00\x00\x03\xa4\x00\x00\x03\xb6\x00\x00\x00j\x04\x04\x06d\x06\xa1\a\x01\x0eagentHostProxy\x01\x04send\x01K{\"jsonrpc\":\"2.0\",\"id\""
	capturedTelemetryPing = "\x01\x00\x00\x03\xa3\x00\x00\x03\xb5\x00\x00\x00\x19\x04\x04\x06d\x06\xa0\a\x01\ttelemetry\x01\x04ping\x00"
	// Extension host: acknowledge and reply to a request of the extension
	// host, then $onDidTunnelsChange; cut at 64 bytes, in the method name.
	capturedTunnelsCut = "\x01\x00\x00\x03u\x00\x00\x03W\x00\x00\x00\x05\x05\x00\x00\x011\x01\x00\x00\x03v\x00\x00\x03W\x00\x00\x00\x05\a\x00\x00\x011\x01\x00\x00\x03w\x00\x00\x03W\x00\x00\x00 \x01\x00\x00\x01\x13\x9a\x13$onDidTu"
)

// frameOf is one protocol frame.
func frameOf(typ byte, data string) string {
	h := make([]byte, frameHeaderLen)
	h[0] = typ
	binary.BigEndian.PutUint32(h[1:], 7)
	binary.BigEndian.PutUint32(h[5:], 3)
	binary.BigEndian.PutUint32(h[9:], uint32(len(data)))
	return string(h) + data
}

func vql(n int) string {
	var b []byte
	for {
		c := byte(n & 0x7f)
		n >>= 7
		if n == 0 {
			return string(append(b, c))
		}
		b = append(b, c|0x80)
	}
}

// ipcCall is the data of an IPC call of command on channel with a URI
// argument for path (none if empty).
func ipcCall(channel, command, path string) string {
	s := "\x04\x04" + "\x06" + vql(100) + "\x06" + vql(4242) +
		"\x01" + vql(len(channel)) + channel + "\x01" + vql(len(command)) + command
	if path == "" {
		return s + "\x00"
	}
	uri := `{"$mid":1,"external":"vscode-remote:` + path + `","path":"` + path + `","scheme":"vscode-remote"}`
	return s + "\x04\x01\x05" + vql(len(uri)) + uri
}

// rpcRequest is the data of an extension host request of method.
func rpcRequest(method string) string {
	return "\x01\x00\x00\x01\x13\x9a" + string(rune(len(method))) + method + "\x00\x00\x00\x02[]"
}

const rpcReply = "\x07\x00\x00\x01\x31" // ReplyOKEmpty

func TestIsInput(t *testing.T) {
	c := newClassifier("/home/alice/state", "/home/alice/extensions")
	long := "/home/alice/workspaces/" + strings.Repeat("deep/", 200) + "file.go"
	cases := []struct {
		name string
		mt   int
		msg  string
		want bool
	}{
		{"keep-alive", websocket.BinaryMessage, capturedKeepAlive, false},
		{"ack", websocket.BinaryMessage, capturedAck, false},
		{"keep-alive and ack together", websocket.BinaryMessage, capturedKeepAlive + capturedAck, false},
		{"empty", websocket.BinaryMessage, "", false},
		{"agent host poll", websocket.BinaryMessage, capturedAgentHostPoll, false},
		{"telemetry", websocket.BinaryMessage, capturedTelemetryPing, false},
		{"replies then a cut background method", websocket.BinaryMessage, capturedTunnelsCut, false},
		{"replies then $onDidTunnelsChange", websocket.BinaryMessage,
			frameOf(frameRegular, rpcReply) + frameOf(frameRegular, rpcReply) + frameOf(frameRegular, rpcRequest("$onDidTunnelsChange")), false},
		{"window focus", websocket.BinaryMessage, frameOf(frameRegular, rpcRequest("$onDidChangeWindowActive")), false},
		{"control handshake", websocket.BinaryMessage, frameOf(frameControl, `{"type":"auth","auth":"00000000000"}`), false},
		{"typing in an editor", websocket.BinaryMessage,
			frameOf(frameRegular, rpcRequest("$acceptEditorPropertiesChanged")) + frameOf(frameRegular, rpcRequest("$acceptModelChanged")), true},
		{"typing after a keep-alive and an ack", websocket.BinaryMessage,
			capturedKeepAlive + capturedAck + frameOf(frameRegular, rpcRequest("$acceptModelChanged")), true},
		{"typing in a terminal", websocket.BinaryMessage, frameOf(frameRegular, ipcCall("remoteterminal", "$input", "")), true},
		{"terminal bookkeeping", websocket.BinaryMessage, frameOf(frameRegular, ipcCall("remoteterminal", "$setTerminalLayoutInfo", "")), false},
		{"saving a file", websocket.BinaryMessage, frameOf(frameRegular, ipcCall("remoteFilesystem", "writeFile", "/home/alice/workspaces/p/main.go")), true},
		{"chat persisting its state", websocket.BinaryMessage,
			frameOf(frameRegular, ipcCall("remoteFilesystem", "writeFile", "/home/alice/state/User/workspaceStorage/-7aa3654e/chatEditingSessions/afb3/state.json")), false},
		{"the state directory itself", websocket.BinaryMessage, frameOf(frameRegular, ipcCall("remoteFilesystem", "mkdir", "/home/alice/state")), false},
		{"a sibling of the state directory", websocket.BinaryMessage, frameOf(frameRegular, ipcCall("remoteFilesystem", "mkdir", "/home/alice/state2")), true},
		{"an extension update", websocket.BinaryMessage, frameOf(frameRegular, ipcCall("remoteFilesystem", "writeFile", "/home/alice/extensions/x/package.json")), false},
		{"a watch", websocket.BinaryMessage, frameOf(frameRegular, ipcCall("remoteFilesystem", "watch", "/home/alice/workspaces/p")), false},
		{"saving a file deep down", websocket.BinaryMessage, frameOf(frameRegular, ipcCall("remoteFilesystem", "writeFile", long)), true},
		{"chat discovery", websocket.BinaryMessage,
			frameOf(frameRegular, ipcCall("remoteFilesystem", "stat", "/home/alice/.copilot/installed-plugins")) + frameOf(frameRegular, ipcCall("remoteFilesystem", "readdir", "/home/alice/.claude")), false},
		{"reading settings", websocket.BinaryMessage, frameOf(frameRegular, ipcCall("remoteFilesystem", "readFile", "/home/alice/workspaces/p/.vscode/settings.json")), false},
		{"another channel", websocket.BinaryMessage, frameOf(frameRegular, ipcCall("search", "fileSearch", "")), false},
		{"opening an editor", websocket.BinaryMessage, frameOf(frameRegular, rpcRequest("$acceptDocumentsAndEditorsDelta")), true},
		{"text", websocket.TextMessage, "hello", true},
		{"not VS Code's protocol", websocket.BinaryMessage, "\x00\x01\x02", true},
		{"shorter than a header", websocket.BinaryMessage, "\x01\x02", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			head := []byte(tc.msg)
			if len(head) > proxy.ClientMessageHeadSize {
				head = head[:proxy.ClientMessageHeadSize] // as the relay gives it
			}
			if got := c.isInput(tc.mt, head); got != tc.want {
				t.Errorf("isInput = %v, want %v (%s)", got, tc.want, describe(tc.mt, head))
			}
		})
	}
}

// TestIsInputCutPath checks that a file operation whose path the head
// cuts short is judged on what is left of it.
func TestIsInputCutPath(t *testing.T) {
	state := "/srv/users/" + strings.Repeat("x", 40) + "/state"
	c := newClassifier(state)
	pad := strings.Repeat("p", 600)
	cases := []struct {
		path string
		want bool
	}{
		{state + "/User/" + pad, false},
		{"/srv/users/" + strings.Repeat("x", 40) + "/workspaces/" + pad, true},
		{"/elsewhere/" + pad, true},
	}
	for _, tc := range cases {
		msg := []byte(frameOf(frameRegular, ipcCall("remoteFilesystem", "writeFile", tc.path)))
		head := msg[:proxy.ClientMessageHeadSize]
		if got := c.isInput(websocket.BinaryMessage, head); got != tc.want {
			t.Errorf("%.60s…: isInput = %v, want %v (%s)", tc.path, got, tc.want, describe(websocket.BinaryMessage, head))
		}
	}
	// So short a head that not even the path's start shows: undecidable,
	// so not input.
	msg := []byte(frameOf(frameRegular, ipcCall("remoteFilesystem", "writeFile", "/elsewhere/"+pad)))
	if c.isInput(websocket.BinaryMessage, msg[:60]) {
		t.Error("a file call cut before its path counted as input")
	}
}

func TestDescribe(t *testing.T) {
	got := describe(websocket.BinaryMessage, []byte(capturedKeepAlive+frameOf(frameRegular, rpcRequest("$acceptModelChanged"))+capturedAgentHostPoll))
	want := "keepalive, rpc $acceptModelChanged, ipc agentHostProxy.send"
	if got != want {
		t.Errorf("describe = %q, want %q", got, want)
	}
}

func TestIDEUserDataDir(t *testing.T) {
	cases := []struct {
		dir  string
		env  []string
		want string
	}{
		{"/x/state", nil, "/x/state"},
		{"", []string{"HOME=/home/a"}, "/home/a/.local/share/code-server"},
		{"", []string{"HOME=/home/a", "XDG_DATA_HOME=/data"}, "/data/code-server"},
		{"", nil, ""},
	}
	for _, tc := range cases {
		if got := ideUserDataDir(tc.dir, tc.env); got != tc.want {
			t.Errorf("ideUserDataDir(%q, %q) = %q, want %q", tc.dir, tc.env, got, tc.want)
		}
	}
}

// TestClassifyTerminal: input typed into a terminal is told apart from
// other input, for the terminal access audit.
func TestClassifyTerminal(t *testing.T) {
	c := newClassifier("/home/alice/state", "/home/alice/extensions")
	cases := []struct {
		name            string
		msg             string
		input, terminal bool
	}{
		{"typing in a terminal", frameOf(frameRegular, ipcCall("remoteterminal", "$input", "")), true, true},
		{"a signal to a terminal", frameOf(frameRegular, ipcCall("remoteterminal", "$sendSignal", "")), true, true},
		{"terminal bookkeeping", frameOf(frameRegular, ipcCall("remoteterminal", "$setTerminalLayoutInfo", "")), false, false},
		{"typing in an editor", frameOf(frameRegular, rpcRequest("$acceptModelChanged")), true, false},
		{"editor then terminal", frameOf(frameRegular, rpcRequest("$acceptModelChanged")) +
			frameOf(frameRegular, ipcCall("remoteterminal", "$input", "")), true, true},
		{"keep-alive", capturedKeepAlive, false, false},
	}
	for _, tc := range cases {
		in, term := c.classify(websocket.BinaryMessage, []byte(tc.msg))
		if in != tc.input || term != tc.terminal {
			t.Errorf("%s: classify = %v, %v; want %v, %v", tc.name, in, term, tc.input, tc.terminal)
		}
	}
}
