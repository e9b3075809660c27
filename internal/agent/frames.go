package agent

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gorilla/websocket"
)

// How VS Code talks to code-server, as far as telling input from idle
// traffic needs it.
//
// Every WebSocket message from the workbench is binary and holds one or
// more frames of VS Code's persistent protocol (src/vs/base/parts/ipc/
// common/ipc.net.ts): a 13-byte header (type; id, ack and data length as
// big-endian uint32) and the data. Writes made in the same tick travel
// together, so one message often holds several frames.
//
// The frame types alone are not enough: an open, idle workbench sends
// Regular frames by itself (see below), so Regular frames are read
// further. The management connection carries VS Code's IPC
// (src/vs/base/parts/ipc/common/ipc.ts): a serialized header [type, id,
// channel, command] and the argument. The extension host connection
// carries its RPC protocol (src/vs/workbench/services/extensions/common/
// rpcProtocol.ts): a type byte, a uint32 request id, a byte naming the
// target object and, for requests, the method ("$name") as a
// length-prefixed string.
const (
	frameRegular   = 1 // IPC or extension host RPC
	frameControl   = 2 // connection handshake
	frameAck       = 3 // acknowledges frames received
	frameKeepAlive = 9 // sent every few seconds
	frameMaxType   = 9 // 5 Disconnect, 6 ReplayRequest, 7 Pause, 8 Resume

	frameHeaderLen = 13

	ipcString      = 1 // serialization DataType.String
	ipcArray       = 4 // DataType.Array
	ipcInt         = 6 // DataType.Int
	ipcPromise     = 100
	ipcEventListen = 102

	rpcRequestFirst = 1 // RequestJSONArgs … RequestMixedArgsWithCancellation
	rpcRequestLast  = 4
	rpcReplyFirst   = 5 // Acknowledged, Cancel, ReplyOK…, ReplyErr…
	rpcReplyLast    = 12
)

// What an open workbench sends by itself, observed through the agent with
// code-server 4.139.1 and headless Chromium (trace-level "browser message"
// logs name every frame; see describe), besides a KeepAlive and Acks every
// few seconds on each connection:
//
//   - every 5 s an IPC call agentHostProxy.send (the chat agent host being
//     polled), and telemetry calls now and then;
//   - once an editor was open, every 5 s remoteFilesystem stat, readdir and
//     writeFile of workspaceStorage/…/chatEditingSessions/…/state.json in
//     the user data directory (chat saving its editing session);
//   - extension host RPC: replies to the extension host's own requests,
//     $onDidTunnelsChange every ~10 s while the port finder sees ports come
//     and go on the machine, $onDidChangeWindowActive when the tab loses
//     focus, $onFileEvent when files change on disk;
//   - for a minute or more after the workbench shows on a loaded machine,
//     stat, readdir and readFile of ~/.copilot, ~/.claude, .github/agents,
//     .vscode/*.json and more (chat and MCP discovery), with quiet spells of
//     10 s and more between them, and again when a terminal opens.
//
// Ignoring these by name was tried, and each run of the browser test found
// new ones. So the rule is the other way round: a message of VS Code's is
// input when it carries a call that only a person at the keyboard or mouse
// causes, as listed below: typing or moving the cursor in an editor
// ($acceptModelChanged, $acceptEditorPropertiesChanged), opening,
// switching or saving editors, typing in a terminal (remoteterminal.$input,
// $acceptTerminalInteraction), running an extension's command, changing
// the user's files. Browsing the explorer or the settings alone does not
// count; a person at work does one of the above within minutes. Tab
// operations do not count either: the workbench opens its Welcome page by
// itself once it has started.
var (
	// inputMethods are extension host RPC calls made on the user's action.
	inputMethods = map[string]bool{
		"$acceptModelChanged":             true, // typing
		"$acceptEditorPropertiesChanged":  true, // cursor, selection, visible ranges
		"$acceptDocumentsAndEditorsDelta": true, // opening, closing, switching editors
		"$acceptDirtyStateChanged":        true,
		"$acceptModelSaved":               true,
		"$participateInSave":              true,
		"$acceptTerminalInteraction":      true, // typing in a terminal
		"$executeContributedCommand":      true, // an extension's command
		"$provideCompletionItems":         true, // while typing
		"$provideHover":                   true, // the mouse over code
	}
	// terminalInput are the remoteterminal IPC commands that carry what
	// the user typed or sent to a terminal.
	terminalInput = map[string]bool{"$input": true, "$processBinary": true, "$sendSignal": true}
	// fileChanges are the remoteFilesystem IPC commands that change files;
	// they count outside the IDE's own directories.
	fileChanges = map[string]bool{
		"writeFile": true, "delete": true, "rename": true, "copy": true, "mkdir": true, "cloneFile": true,
	}
)

// classifier tells the user's input from the traffic an open workbench
// sends by itself.
type classifier struct {
	// ideDirs are the IDE's own directories (user data, extensions), with
	// a trailing slash: file operations there are its own bookkeeping.
	ideDirs []string
}

func newClassifier(dirs ...string) *classifier {
	c := &classifier{}
	for _, d := range dirs {
		if d != "" {
			c.ideDirs = append(c.ideDirs, strings.TrimSuffix(filepath.Clean(d), "/")+"/")
		}
	}
	return c
}

// isInput reports whether a WebSocket message from the browser, of type
// mt and starting with head, is the user's doing. Text messages, and
// binary ones that are not VS Code's protocol, count: they come from
// something else behind the IDE (an application reached through its port
// forwarding, say). A message of VS Code's counts when one of its frames
// carries an input call (see inputMethods).
func (c *classifier) isInput(mt int, head []byte) bool {
	in, _ := c.classify(mt, head)
	return in
}

// classify is isInput, and whether the input was typed into a terminal.
func (c *classifier) classify(mt int, head []byte) (input, terminal bool) {
	if mt != websocket.BinaryMessage {
		return mt == websocket.TextMessage, false
	}
	fs, ok := frames(head)
	if !ok {
		return len(head) > 0, false
	}
	for _, f := range fs {
		if f.typ != frameRegular {
			continue
		}
		if in, term := c.regularIsInput(f); in {
			input = true
			terminal = terminal || term
		}
	}
	return input, terminal
}

func (c *classifier) regularIsInput(f frame) (input, terminal bool) {
	cl := parseCall(f.data)
	if !cl.complete {
		return false, false
	}
	switch {
	case cl.kind == kindRPC:
		return inputMethods[cl.name], false
	case cl.kind == kindIPC && cl.channel == "remoteterminal":
		return terminalInput[cl.name], terminalInput[cl.name]
	case cl.kind == kindIPC && cl.channel == "remoteFilesystem" && fileChanges[cl.name]:
		path, complete := uriPath(cl.rest, f.cut)
		return !c.inIDEDirs(path, complete), false
	}
	return false, false
}

// inIDEDirs reports whether path is within the IDE's own directories. A
// path cut short counts as inside when what is left could still be.
func (c *classifier) inIDEDirs(path string, complete bool) bool {
	if path == "" && complete {
		return false // no path: not a file of the IDE's
	}
	for _, d := range c.ideDirs {
		if strings.HasPrefix(path+"/", d) || (!complete && strings.HasPrefix(d, path)) {
			return true
		}
	}
	return false
}

// frame is one protocol frame of a browser's message, as far as head has
// it.
type frame struct {
	typ  byte
	data []byte // possibly cut short by the end of head
	cut  bool   // data (or the header) is incomplete
}

// frames splits head into protocol frames. ok is false when head does not
// look like VS Code's protocol.
func frames(head []byte) (fs []frame, ok bool) {
	for off := 0; off < len(head); {
		typ := head[off]
		if typ == 0 || typ == 4 || typ > frameMaxType {
			return fs, false
		}
		if len(head)-off < frameHeaderLen {
			if off == 0 {
				return nil, false // shorter than one header
			}
			return append(fs, frame{typ: typ, cut: true}), true
		}
		n := uint64(binary.BigEndian.Uint32(head[off+9 : off+frameHeaderLen]))
		start := off + frameHeaderLen
		if end := uint64(start) + n; end <= uint64(len(head)) {
			fs = append(fs, frame{typ: typ, data: head[start:end]})
			off = int(end)
			continue
		}
		return append(fs, frame{typ: typ, data: head[start:], cut: true}), true
	}
	return fs, true
}

// Kinds of calls in Regular frames.
const (
	kindUnknown  = ""
	kindIPC      = "ipc"       // an IPC call or event subscription
	kindIPCOther = "ipc-other" // an IPC cancel, unsubscription or reply
	kindRPC      = "rpc"       // an extension host RPC request
	kindRPCReply = "rpc-reply" // an extension host RPC acknowledgement or reply
)

// call is what a Regular frame says, as far as it can be read.
type call struct {
	kind     string
	channel  string // IPC channel
	name     string // IPC command or RPC method
	complete bool   // channel and name are whole
	rest     []byte // what follows the name: the argument
}

func (c call) String() string {
	s := c.kind
	switch c.kind {
	case kindIPC:
		s = "ipc " + c.channel + "." + c.name
	case kindRPC:
		s = "rpc " + c.name
	case kindUnknown:
		s = "unknown"
	}
	if (c.kind == kindIPC || c.kind == kindRPC) && !c.complete {
		s += "…"
	}
	return s
}

// parseCall reads the start of a Regular frame's data.
func parseCall(data []byte) call {
	// RPC request: type, request id (4), rpc id (1), method length (1), "$…".
	if len(data) >= 8 && data[0] >= rpcRequestFirst && data[0] <= rpcRequestLast && data[7] == '$' {
		n := int(data[6])
		end := min(len(data), 7+n)
		return call{kind: kindRPC, name: string(data[7:end]), complete: end == 7+n, rest: data[end:]}
	}
	// IPC: an array of 2 or 4 values: type, id[, channel, command].
	if len(data) >= 3 && data[0] == ipcArray && (data[1] == 2 || data[1] == 4) {
		r := ipcReader{b: data[2:]}
		typ, ok := r.int()
		if !ok {
			return call{}
		}
		if typ != ipcPromise && typ != ipcEventListen {
			return call{kind: kindIPCOther}
		}
		_, ok1 := r.int() // the request id
		channel, ok2 := r.str()
		name, ok3 := r.str()
		return call{kind: kindIPC, channel: channel, name: name, complete: ok1 && ok2 && ok3, rest: r.b}
	}
	if len(data) >= 5 && data[0] >= rpcReplyFirst && data[0] <= rpcReplyLast {
		return call{kind: kindRPCReply}
	}
	return call{}
}

// ipcReader reads IPC-serialized values: a DataType byte, then integers
// and lengths as variable-length quantities, 7 bits a byte, least
// significant first.
type ipcReader struct{ b []byte }

func (r *ipcReader) vql() (int, bool) {
	v := 0
	for i, c := range r.b {
		if i > 4 {
			break
		}
		v |= int(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			r.b = r.b[i+1:]
			return v, true
		}
	}
	r.b = nil
	return 0, false
}

// int reads a DataType.Int value.
func (r *ipcReader) int() (int, bool) {
	if len(r.b) == 0 || r.b[0] != ipcInt {
		return 0, false
	}
	r.b = r.b[1:]
	return r.vql()
}

// str reads a DataType.String value; ok is false when it is cut short.
func (r *ipcReader) str() (string, bool) {
	if len(r.b) == 0 || r.b[0] != ipcString {
		return "", false
	}
	r.b = r.b[1:]
	n, ok := r.vql()
	if !ok {
		return "", false
	}
	s := r.b[:min(n, len(r.b))]
	r.b = r.b[len(s):]
	return string(s), len(s) == n
}

// uriPath finds the file path in the argument of a remoteFilesystem call:
// its first URI, serialized as JSON ({"$mid":1,"external":"vscode-remote:
// /…","path":"/…",…}). complete is false when the path is cut short (arg
// itself is cut when cut is set).
func uriPath(arg []byte, cut bool) (path string, complete bool) {
	if p, ok, found := jsonString(arg, `"path":"`); found {
		return p, ok
	}
	ext, ok, found := jsonString(arg, `"external":"`)
	if !found {
		return "", !cut
	}
	// scheme:[//authority]/path, percent-encoded.
	if i := strings.IndexByte(ext, ':'); i >= 0 {
		ext = ext[i+1:]
	}
	if rest, has := strings.CutPrefix(ext, "//"); has {
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			ext = rest[i:]
		} else {
			ext = ""
		}
	}
	if p, err := url.PathUnescape(ext); err == nil {
		ext = p
	} else if ok {
		return ext, true
	}
	return ext, ok
}

// jsonString returns the JSON string value that follows key in b. ok is
// false when the value is cut off by the end of b.
func jsonString(b []byte, key string) (s string, ok, found bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return "", false, false
	}
	b = b[i+len(key):]
	for j := 0; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			v, err := strconv.Unquote(`"` + string(b[:j]) + `"`)
			if err != nil {
				return string(b[:j]), true, true
			}
			return v, true, true
		}
	}
	// Cut: keep what is certain, up to any escape.
	if k := bytes.IndexByte(b, '\\'); k >= 0 {
		b = b[:k]
	}
	return string(b), false, true
}

// describe summarizes a browser message for the trace log.
func describe(mt int, head []byte) string {
	if mt != websocket.BinaryMessage {
		return "text"
	}
	fs, ok := frames(head)
	if !ok {
		return "not VS Code's protocol"
	}
	parts := make([]string, 0, len(fs))
	for _, f := range fs {
		var s string
		switch f.typ {
		case frameRegular:
			cl := parseCall(f.data)
			s = cl.String()
			if cl.kind == kindIPC && cl.channel == "remoteFilesystem" {
				if p, complete := uriPath(cl.rest, f.cut); p != "" {
					if !complete {
						p += "…"
					}
					s += " " + p
				}
			}
		case frameKeepAlive:
			s = "keepalive"
		case frameAck:
			s = "ack"
		case frameControl:
			s = "control"
		default:
			s = fmt.Sprintf("frame type %d", f.typ)
		}
		if f.cut && f.typ != frameRegular {
			s += "…"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}
