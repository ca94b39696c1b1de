package stream

import (
	"encoding/json"
	"net"
	"net/http"
	"time"

	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
)

// writer is the state of one stream's writing side: where it is in every
// channel, the cursor segments naming that, and a reused output buffer.
// A parked stream keeps its writer without out and buf: the poller's writer
// goroutine servicing it lends buf for the time of one write.
type writer struct {
	s     *Server
	c     *conn
	out   output
	chans []channel.Name
	pos   []event.Position
	segs  []string // current cursor segment per channel (multi-channel streams)
	buf   []byte
	bytes int // written in all
	evs   int // events written in all
	unrep int // events appended since the last flush reported them
}

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
	for i, evs := range st.replay {
		for _, ev := range evs {
			wr.buf = wr.appendEvent(wr.buf, i, ev)
		}
	}
	s.cfg.Metrics.StreamOpened()
	if st.reset != "" {
		s.cfg.Metrics.Reset(st.reset)
	} else if st.replay != nil {
		s.cfg.Metrics.Resumed()
	}
	s.cfg.Logger.Info("stream open", "principal", c.p, "channels", len(c.chans), "resumed", st.replay != nil, "reset", st.reset)

	if err := wr.flush(); err != nil {
		s.closed(c, wr, opened, "write-error")
		return false
	}
	done := r.Context().Done()
	switch s.park(rc, r, c, wr, opened) {
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
func (s *Server) closed(c *conn, wr *writer, opened time.Time, reason string) {
	d := time.Since(opened)
	s.cfg.Metrics.StreamClosed(reason, d)
	s.cfg.Logger.Info("stream closed", "principal", c.p, "channels", len(c.chans),
		"duration", d.Round(time.Millisecond), "bytes", wr.bytes, "events", wr.evs, "reason", reason)
}

// loop writes until the stream ends and returns why it ended. done is
// closed when the client goes away.
func (s *Server) loop(done <-chan struct{}, c *conn, wr *writer) string {
	ka := time.NewTimer(s.cfg.KeepAlive)
	defer ka.Stop()
	var expired <-chan time.Time
	if c.p.Expires() {
		t := time.NewTimer(time.Until(c.p.Expiry.Add(s.cfg.Leeway)))
		defer t.Stop()
		expired = t.C
	}
	for {
		select {
		case <-done:
			return "client-gone"
		case <-c.notify:
			if !c.ended.Load() {
				wr.appendQueued(c)
				break
			}
			cond, retry := c.condition()
			if cond == CondShuttingDown {
				wr.appendQueued(c) // drain: deliver what is queued first
				wr.buf = event.AppendRetry(wr.buf, retry)
				wr.buf = append(wr.buf, '\n')
			}
			wr.buf = appendStreamError(wr.buf, cond)
			_ = wr.flush()
			return cond
		case <-ka.C:
			wr.buf = append(wr.buf, event.KeepAlive...)
		case <-expired:
			c.finish(CondTokenExpired, 0)
			continue
		}
		if err := wr.flush(); err != nil {
			if cond, _ := c.condition(); cond != "" {
				return cond // e.g. slow-consumer: cut while the write was stuck
			}
			return "write-error"
		}
		ka.Reset(s.cfg.KeepAlive)
	}
}

// appendQueued appends every queued event, dropping any already delivered
// by the replay.
func (wr *writer) appendQueued(c *conn) {
	q := c.take()
	now := time.Now().UnixNano()
	for _, ev := range q {
		i := wr.index(ev.Channel)
		if i < 0 {
			continue
		}
		before := len(wr.buf)
		wr.buf = wr.appendEvent(wr.buf, i, ev)
		if len(wr.buf) != before && !ev.Lost {
			wr.s.cfg.Metrics.Latency(time.Duration(now - ev.Published))
		}
	}
	c.give(q)
}

func (wr *writer) index(ch channel.Name) int {
	if len(wr.chans) == 1 {
		return 0 // the broker delivers only the channels subscribed
	}
	for i, c := range wr.chans {
		if c == ch {
			return i
		}
	}
	return -1
}

// appendEvent appends what ev means for channel i at the stream's position
// there (the gap and epoch rule, SPEC §5):
//
//   - a Lost notice moves the stream to ev.Pos with a stream-reset, unless
//     the stream is there already;
//   - in the same epoch, an event at or before the position was delivered
//     (by the replay) and is skipped, the next one is written, and one
//     further on means events were missed: a stream-reset at the event
//     before it, then the event;
//   - in another epoch, the first event of a channel that had no history
//     when the stream started ({0, 0}) is written; any other means the
//     history the stream was in is gone: a stream-reset, then the event.
//
// No event is ever skipped silently: a client always learns of a loss.
func (wr *writer) appendEvent(b []byte, i int, ev *event.Event) []byte {
	p := wr.pos[i]
	if ev.Lost {
		if ev.Pos != p {
			b = wr.appendReset(b, i, ev.Pos)
		}
		return b
	}
	switch {
	case ev.Pos.Epoch == p.Epoch:
		if ev.Pos.Offset <= p.Offset {
			return b
		}
		if ev.Pos.Offset != p.Offset+1 {
			b = wr.appendReset(b, i, before(ev.Pos))
		}
	case p == event.Position{} && ev.Pos.Offset == 1:
	default:
		b = wr.appendReset(b, i, before(ev.Pos))
	}
	wr.pos[i] = ev.Pos
	wr.evs++
	wr.unrep++
	frame, seg, body := ev.Frame(wr.s.cfg.Codec)
	if wr.segs == nil {
		return append(b, frame...)
	}
	wr.segs[i] = seg
	b = wr.appendID(b)
	return append(b, body...)
}

// before returns the position just before p: where a stream stands once
// it has delivered everything up to p's event but not that event.
func before(p event.Position) event.Position {
	if p.Offset > 0 {
		p.Offset--
	}
	return p
}

// resetData is the data of a mid-stream stream-reset.
var resetData = []byte(`{"reason":"` + ResetHistoryUnavailable + `"}`)

// appendReset moves channel i to at and appends the mid-stream stream-reset
// that tells the client so. Unlike the reset after stream-open it carries an
// id, the stream's cursor with channel i at at, so that a client that
// reconnects right after it resumes from there, not from before the loss.
func (wr *writer) appendReset(b []byte, i int, at event.Position) []byte {
	wr.pos[i] = at
	seg := wr.s.cfg.Codec.Segment(wr.chans[i], at)
	if wr.segs == nil {
		b = append(append(append(b, "id: "...), seg...), '\n')
	} else {
		wr.segs[i] = seg
		b = wr.appendID(b)
	}
	wr.s.cfg.Metrics.Reset(ResetHistoryUnavailable)
	return event.AppendBlock(b, "", event.TypeReset, resetData)
}

// appendID appends the id line of a multi-channel stream: its cursor.
func (wr *writer) appendID(b []byte) []byte {
	b = append(b, "id: "...)
	for j, sg := range wr.segs {
		if j > 0 {
			b = append(b, '.')
		}
		b = append(b, sg...)
	}
	return append(b, '\n')
}

func (wr *writer) appendOpen(b []byte, st start) []byte {
	names := make([]string, len(wr.chans))
	for i, ch := range wr.chans {
		names[i] = ch.String()
	}
	data, _ := json.Marshal(struct {
		Channels []string `json:"channels"`
	}{names})
	b = event.AppendRetry(b, wr.s.cfg.Retry.Milliseconds())
	b = event.AppendBlock(b, wr.s.cfg.Codec.Encode(wr.chans, wr.pos), event.TypeOpen, data)
	if st.reset != "" {
		data, _ = json.Marshal(struct {
			Reason string `json:"reason"`
		}{st.reset})
		b = event.AppendBlock(b, "", event.TypeReset, data)
	}
	return b
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
