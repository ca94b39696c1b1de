package stream

import (
	"net"
	"net/http"
	"time"

	"github.com/sluicehq/sluice/event"
)

// output is where a stream served by a goroutine writes: the response, or a
// hijacked connection that could not be parked.
type output interface {
	Write(b []byte) (int, error)
	Flush() error
	SetWriteDeadline(t time.Time) error
}

type responseOutput struct {
	http.ResponseWriter
	rc *http.ResponseController
}

func (o responseOutput) Flush() error                       { return o.rc.Flush() }
func (o responseOutput) SetWriteDeadline(t time.Time) error { return o.rc.SetWriteDeadline(t) }

// run writes the stream's opening block and then either parks the stream
// (and returns true: the poller owns it from then on, including ending it)
// or serves it until it ends (and returns false).
func (s *Server) run(w http.ResponseWriter, r *http.Request, c *conn, st start) (parked bool) {
	opened := time.Now()
	rc := http.NewResponseController(w)
	wr := &writer{s: s, c: c, out: responseOutput{w, rc}, chans: c.chans, pos: st.pos}
	if len(c.chans) > 1 {
		wr.segs = make([]string, len(c.chans))
		for i, ch := range c.chans {
			wr.segs[i] = s.cfg.Codec.Segment(ch, st.pos[i])
		}
	}

	setStreamHeaders(w.Header())
	if r.ProtoMajor == 1 {
		// The connection ends with the stream (a parked stream's is closed
		// after its last chunk): clients must not pool it for reuse.
		w.Header().Set("Connection", "close")
	}
	w.WriteHeader(http.StatusOK)
	wr.buf = wr.appendOpen(wr.buf[:0], st)
	s.cfg.Metrics.StreamOpened()
	if st.reset != "" {
		s.cfg.Metrics.Reset(st.reset)
	} else if st.replay != nil {
		s.cfg.Metrics.Resumed()
	}
	s.cfg.Logger.Info("stream open", "principal", c.p, "channels", len(c.chans), "resumed", st.replay != nil, "reset", st.reset)

	err := wr.replay(r.Context(), st.replay)
	if err == nil {
		err = wr.flush()
	}
	if err != nil {
		s.closed(c, wr, opened, event.EndWriteError)
		return false
	}
	done := r.Context().Done()
	switch s.park(w, rc, r, c, wr, opened) {
	case parkedOK:
		return true
	case hijackedOnly: // the connection is ours but cannot be parked
		done = nil // the request context no longer follows the client
		defer wr.out.(*chunkOutput).end()
	}
	s.closed(c, wr, opened, s.loop(done, c, wr))
	return false
}

// chunkOutput writes HTTP/1.1 chunked transfer coding on a hijacked
// connection, for the rare stream that was hijacked but cannot be parked
// (a connection that is not a plain socket).
type chunkOutput struct{ nc net.Conn }

func (o *chunkOutput) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	bufs := net.Buffers{appendChunkHeader(nil, len(b)), b, crlf}
	if _, err := bufs.WriteTo(o.nc); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (o *chunkOutput) Flush() error                       { return nil }
func (o *chunkOutput) SetWriteDeadline(t time.Time) error { return o.nc.SetWriteDeadline(t) }

// end writes the last chunk and closes the connection.
func (o *chunkOutput) end() {
	_ = o.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = o.nc.Write(lastChunk)
	_ = o.nc.Close()
}

var (
	crlf      = []byte("\r\n")
	lastChunk = []byte("0\r\n\r\n")
)

// appendChunkHeader appends the header of a chunk of n bytes: its size in
// hexadecimal and CRLF (RFC 9112 §7.1).
func appendChunkHeader(b []byte, n int) []byte {
	const hex = "0123456789abcdef"
	var tmp [16]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = hex[n&15]
		n >>= 4
		if n == 0 {
			break
		}
	}
	b = append(b, tmp[i:]...)
	return append(b, '\r', '\n')
}

// closed records the end of a stream: metrics and the log line.
func (s *Server) closed(c *conn, wr *writer, opened time.Time, reason event.EndReason) {
	d := time.Since(opened)
	s.cfg.Metrics.StreamClosed(reason, d)
	s.cfg.Logger.Info("stream closed", "principal", c.p, "channels", len(c.chans),
		"duration", d.Round(time.Millisecond), "bytes", wr.bytes, "events", wr.evs, "reason", reason)
}

// loop is the goroutine transport: it waits for something to write (events,
// an end, a keep-alive due, the credential's expiry), has the writer
// compose it (next) and writes it, until the stream ends, and returns why
// it ended. done is closed when the client goes away.
func (s *Server) loop(done <-chan struct{}, c *conn, wr *writer) event.EndReason {
	ka := time.NewTimer(s.cfg.KeepAlive)
	defer ka.Stop()
	var expired <-chan time.Time
	if c.p.Expires() {
		t := time.NewTimer(time.Until(c.p.Expiry.Add(s.cfg.Leeway)))
		defer t.Stop()
		expired = t.C
	}
	for {
		kaDue := false
		select {
		case <-done:
			return event.EndClientGone
		case <-c.notify:
		case <-ka.C:
			kaDue = true
		case <-expired:
			c.finish(event.EndTokenExpired, 0)
			continue
		}
		cond := wr.next(kaDue)
		wrote := len(wr.buf) > 0
		err := wr.flush()
		if cond != "" {
			return cond
		}
		if err != nil {
			if cond, _ := c.condition(); cond != "" {
				return cond // e.g. slow-consumer: cut while the write was stuck
			}
			return event.EndWriteError
		}
		if wrote || kaDue {
			ka.Reset(s.cfg.KeepAlive)
		}
	}
}

// flush writes the buffer and pushes it to the client, bounded by the write
// timeout so that a stalled reader cannot hold its goroutine forever.
func (wr *writer) flush() error {
	if len(wr.buf) == 0 {
		return nil
	}
	now := time.Now()
	_ = wr.out.SetWriteDeadline(now.Add(wr.s.cfg.WriteTimeout))
	wr.c.writing.Store(now.UnixNano())
	n, err := wr.out.Write(wr.buf)
	wr.bytes += n
	if err == nil {
		err = wr.out.Flush()
	}
	wr.c.writing.Store(0)
	if cap(wr.buf) > 64<<10 {
		wr.buf = nil // do not keep a burst's buffer on an idle stream
	} else {
		wr.buf = wr.buf[:0]
	}
	wr.s.cfg.Metrics.Delivered(wr.unrep, n)
	wr.unrep = 0
	return err
}
