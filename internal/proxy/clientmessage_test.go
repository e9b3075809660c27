package proxy

import (
	"bytes"
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/gorilla/websocket"
)

// TestOnClientMessage checks that the hook sees the start of every message
// from the browser (and none from the IDE), and that messages of every
// length still arrive whole.
func TestOnClientMessage(t *testing.T) {
	type seen struct {
		owner string
		mt    int
		head  []byte
	}
	var (
		mu   sync.Mutex
		got  []seen
		acts int
	)
	target, _ := tcpTarget(t, echoWS(t, nil, nil))
	f := newFixture(t, target, func(_ *Config, rc *RegistryConfig) {
		rc.OnClientMessage = func(owner string, mt int, head []byte) {
			mu.Lock()
			got = append(got, seen{owner, mt, bytes.Clone(head)})
			mu.Unlock()
		}
		rc.OnActivity = func(string) {
			mu.Lock()
			acts++
			mu.Unlock()
		}
	})
	front, _ := url.Parse(f.front.URL)
	c := dialWS(t, wsURL(f.front.URL, "/ws?owner=alice"), http.Header{"Origin": {"http://" + front.Host}})

	big := bytes.Repeat([]byte("0123456789abcdef"), 64*1024)
	msgs := []struct {
		mt   int
		data []byte
	}{
		{websocket.BinaryMessage, nil},
		{websocket.BinaryMessage, []byte{9, 0, 0, 0, 1}},
		{websocket.TextMessage, []byte("hello")},
		{websocket.BinaryMessage, bytes.Repeat([]byte{1}, ClientMessageHeadSize)},
		{websocket.BinaryMessage, bytes.Repeat([]byte{2}, ClientMessageHeadSize+1)},
		{websocket.BinaryMessage, big},
	}
	for _, m := range msgs {
		if err := c.WriteMessage(m.mt, m.data); err != nil {
			t.Fatal(err)
		}
		mt, echo, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if mt != m.mt || !bytes.Equal(echo, m.data) {
			t.Fatalf("echo mismatch: type %d len %d, sent type %d len %d", mt, len(echo), m.mt, len(m.data))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(msgs) || acts != len(msgs) {
		t.Fatalf("hook called %d times, OnActivity %d times, for %d browser messages", len(got), acts, len(msgs))
	}
	for i, m := range msgs {
		want := m.data[:min(len(m.data), ClientMessageHeadSize)]
		if got[i].owner != "alice" || got[i].mt != m.mt || !bytes.Equal(got[i].head, want) {
			t.Errorf("message %d: hook saw owner %q type %d head %q, want type %d head %q", i, got[i].owner, got[i].mt, got[i].head, m.mt, want)
		}
	}
}
