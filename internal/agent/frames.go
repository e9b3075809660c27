package agent

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/gorilla/websocket"
)

// VS Code's remote protocol (src/vs/base/parts/ipc/common/ipc.net.ts) sends
// its messages over the WebSocket as binary messages, each made of one or
// more protocol frames: a 13-byte header (type; id, ack and data length
// as big-endian uint32) and the data. Writes made in the same tick are sent
// together, so one WebSocket message often holds several frames.
const (
	frameRegular       = 1 // IPC or extension host traffic
	frameControl       = 2 // connection handshake
	frameAck           = 3 // acknowledges frames received
	frameDisconnect    = 5
	frameReplayRequest = 6 // after a reconnection
	framePause         = 7
	frameResume        = 8
	frameKeepAlive     = 9 // sent every few seconds while idle

	frameHeaderLen = 13
)

// frame is one protocol frame of a browser's message, as far as head has
// it.
type frame struct {
	typ  byte
	data []byte // possibly cut short by the end of head
	cut  bool   // data is incomplete
}

// frames splits head into protocol frames. ok is false when head does not
// look like VS Code's protocol at all.
func frames(head []byte) (fs []frame, ok bool) {
	for off := 0; off < len(head); {
		typ := head[off]
		if typ == 0 || typ == 4 || typ > frameKeepAlive {
			return fs, false
		}
		if len(head)-off < frameHeaderLen {
			return append(fs, frame{typ: typ, cut: true}), true
		}
		n := uint64(binary.BigEndian.Uint32(head[off+9 : off+frameHeaderLen]))
		start := off + frameHeaderLen
		end := uint64(start) + n
		if end > uint64(len(head)) {
			return append(fs, frame{typ: typ, data: head[start:], cut: true}), true
		}
		fs = append(fs, frame{typ: typ, data: head[start:end]})
		off = int(end)
	}
	return fs, true
}

// What a Regular frame carries. The management connection speaks VS
// Code's IPC (src/vs/base/parts/ipc/common/ipc.ts): a serialized header
// array [type, id, channel, command] then the argument. The extension host
// connection speaks its RPC protocol (src/vs/workbench/services/extensions/
// common/rpcProtocol.ts): a type byte, a uint32 request id, a byte naming
// the target, then for requests the method name ("$something") as a
// length-prefixed string.
const (
	ipcArray = 4 // IPC serialization: DataType.Array
	ipcInt   = 6 // DataType.Int
	ipcStr   = 1 // DataType.String

	ipcPromise     = 100 // RequestType.Promise: a call
	ipcCancel      = 101
	ipcEventListen = 102
	ipcEventDrop   = 103

	rpcRequestFirst = 1 // RequestJSONArgs … RequestMixedArgsWithCancellation
	rpcRequestLast  = 4
	rpcReplyFirst   = 5 // Acknowledged, Cancel, ReplyOK…, ReplyErr…
	rpcReplyLast    = 12
)

// call is what a Regular frame says, as far as it can be read.
type call struct {
	kind    string // "ipc", "ipc-other", "rpc", "rpc-reply" or "" (unknown)
	channel string // IPC channel
	name    string // IPC command or RPC method
}

func (c call) String() string {
	switch c.kind {
	case "ipc":
		return "ipc " + c.channel + "." + c.name
	case "rpc":
		return "rpc " + c.name
	case "":
		return "unknown"
	}
	return c.kind
}

// parseCall reads the start of a Regular frame's data.
func parseCall(data []byte) call {
	// RPC request: type, request id (4), rpc id (1), method length (1), "$…".
	if len(data) >= 8 && data[0] >= rpcRequestFirst && data[0] <= rpcRequestLast && data[7] == '$' {
		n := int(data[6])
		return call{kind: "rpc", name: string(data[7:min(len(data), 7+n)])}
	}
	if len(data) >= 3 && data[0] == ipcArray && (data[1] == 2 || data[1] == 4) {
		r := vqlReader{b: data[2:]}
		typ, ok := r.int()
		if !ok {
			return call{}
		}
		if typ != ipcPromise && typ != ipcEventListen {
			return call{kind: "ipc-other"}
		}
		r.int() // the request id
		channel, _ := r.str()
		command, _ := r.str()
		return call{kind: "ipc", channel: channel, name: command}
	}
	if len(data) >= 5 && data[0] >= rpcReplyFirst && data[0] <= rpcReplyLast {
		return call{kind: "rpc-reply"}
	}
	return call{}
}

// vqlReader reads IPC-serialized values: after a DataType byte, integers
// and lengths are variable-length quantities, 7 bits a byte, least
// significant first.
type vqlReader struct{ b []byte }

func (r *vqlReader) vql() (int, bool) {
	v, shift := 0, 0
	for i, c := range r.b {
		v |= int(c&0x7f) << shift
		if c&0x80 == 0 {
			r.b = r.b[i+1:]
			return v, true
		}
		shift += 7
		if shift > 28 {
			break
		}
	}
	r.b = nil
	return 0, false
}

// int reads a DataType.Int value, type byte included.
func (r *vqlReader) int() (int, bool) {
	if len(r.b) == 0 || r.b[0] != ipcInt {
		return 0, false
	}
	r.b = r.b[1:]
	return r.vql()
}

// str reads a DataType.String value, type byte included.
func (r *vqlReader) str() (string, bool) {
	if len(r.b) == 0 || r.b[0] != ipcStr {
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
		switch f.typ {
		case frameRegular:
			parts = append(parts, parseCall(f.data).String())
		case frameKeepAlive:
			parts = append(parts, "keepalive")
		case frameAck:
			parts = append(parts, "ack")
		default:
			parts = append(parts, fmt.Sprintf("frame type %d", f.typ))
		}
		if f.cut {
			parts[len(parts)-1] += "…"
		}
	}
	return strings.Join(parts, ", ")
}

func isInput(mt int, head []byte) bool {
	if mt != websocket.BinaryMessage {
		return true
	}
	fs, ok := frames(head)
	if !ok {
		return true
	}
	for _, f := range fs {
		if f.typ != frameAck && f.typ != frameKeepAlive {
			return true
		}
	}
	return false
}
