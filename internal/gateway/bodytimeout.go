package gateway

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"time"

	"github.com/gorilla/websocket"
)

// errBodyTooSlow is the error of a request body read that was cut because
// the body arrived too slowly (request-body.idle-timeout, min-rate).
var errBodyTooSlow = errors.New("the request body arrived too slowly")

// bodyDeadlines bounds how slowly request bodies may arrive, for every
// request the gateway serves: its own forms and JSON, and what it proxies
// to the IDE. Each read of the body gets a deadline on the connection
// (http.ResponseController.SetReadDeadline), set afresh before the read:
// it must bring bytes within idle-timeout, and the body must average
// min-rate bytes a second after a first idle-timeout of grace. Only the
// time spent waiting for the client counts, not the time a handler (or
// the IDE, through the proxy) takes between reads. So a body is never cut
// for its size or for a slow reader, as a total time limit would cut a
// large upload; a client that sends nothing, or a byte now and then, is
// cut within seconds, and its connection closed.
//
// The deadline is cleared once the body is read to its end (the server
// then watches the idle connection itself); when a handler returns
// without reading it all, the server's discarding of the rest before it
// reuses the connection gets one idle-timeout, and none after a cut. WebSocket
// upgrades carry no body and are left alone: the relay keeps its own
// deadlines on the connection it takes over.
func (s *Server) bodyDeadlines(next http.Handler) http.Handler {
	idle := s.cfg.RequestBody.IdleTimeout.D()
	if idle <= 0 {
		return next
	}
	minRate := s.cfg.RequestBody.MinRate
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || websocket.IsWebSocketUpgrade(r) {
			next.ServeHTTP(w, r)
			return
		}
		br := &deadlineBody{rc: r.Body, ctl: http.NewResponseController(w), idle: idle, minRate: minRate, now: time.Now}
		r.Body = br
		next.ServeHTTP(w, r)
		switch {
		case br.eof || br.unsupported:
		case br.err != nil:
			// Cut: nothing more is read, the connection closes now.
			_ = br.ctl.SetReadDeadline(time.Now())
		default:
			_ = br.ctl.SetReadDeadline(time.Now().Add(idle))
		}
	})
}

// deadlineBody is a request body whose every read has a deadline.
type deadlineBody struct {
	rc      io.ReadCloser
	ctl     *http.ResponseController
	idle    time.Duration
	minRate int
	now     func() time.Time

	read   int64         // bytes read so far
	waited time.Duration // time spent in reads so far
	eof    bool
	err    error // sticky: a body cut once stays cut
	// unsupported: the connection takes no deadlines (a test recorder).
	unsupported bool
}

// budget is how long the next read may wait: idle, less whatever the
// body is behind its minimum rate.
func (b *deadlineBody) budget() time.Duration {
	d := b.idle
	if b.minRate > 0 {
		earned := float64(b.read) / float64(b.minRate) * float64(time.Second)
		if left := float64(b.idle) + earned - float64(b.waited); left < float64(d) {
			d = time.Duration(math.Max(left, 0))
		}
	}
	return d
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.unsupported {
		return b.rc.Read(p)
	}
	d := b.budget()
	if d <= 0 {
		b.err = fmt.Errorf("%w: below %d bytes a second", errBodyTooSlow, b.minRate)
		return 0, b.err
	}
	start := b.now()
	if err := b.ctl.SetReadDeadline(start.Add(d)); err != nil {
		b.unsupported = true
		return b.rc.Read(p)
	}
	n, err := b.rc.Read(p)
	b.waited += b.now().Sub(start)
	b.read += int64(n)
	switch {
	case err == io.EOF:
		b.eof = true
		_ = b.ctl.SetReadDeadline(time.Time{})
	case errors.Is(err, os.ErrDeadlineExceeded):
		b.err = fmt.Errorf("%w: nothing for %s (%d bytes in %s)", errBodyTooSlow, d.Round(time.Millisecond), b.read,
			b.waited.Round(time.Millisecond))
		err = b.err
	}
	return n, err
}

func (b *deadlineBody) Close() error { return b.rc.Close() }
