package stream

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
)

// writer is the state of one stream's writing side: where it is in every
// channel, the cursor segments naming that, and a reused output buffer.
type writer struct {
	s     *Server
	w     http.ResponseWriter
	rc    *http.ResponseController
	chans []channel.Name
	pos   []event.Position
	segs  []string // current cursor segment per channel (multi-channel streams)
	buf   []byte
	bytes int // written in all
	evs   int // events written in all
	unrep int // events appended since the last flush reported them
}

func (s *Server) run(w http.ResponseWriter, r *http.Request, c *conn, st start) {
	opened := time.Now()
	wr := &writer{s: s, w: w, rc: http.NewResponseController(w), chans: c.chans, pos: st.pos}
	if len(c.chans) > 1 {
		wr.segs = make([]string, len(c.chans))
		for i, ch := range c.chans {
			wr.segs[i] = s.cfg.Codec.Segment(ch, st.pos[i])
		}
	}

	setStreamHeaders(w.Header())
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

	reason := s.loop(r, c, wr)
	d := time.Since(opened)
	s.cfg.Metrics.StreamClosed(reason, d)
	s.cfg.Logger.Info("stream closed", "principal", c.p, "channels", len(c.chans),
		"duration", d.Round(time.Millisecond), "bytes", wr.bytes, "events", wr.evs, "reason", reason)
}

// loop writes until the stream ends and returns why it ended.
func (s *Server) loop(r *http.Request, c *conn, wr *writer) string {
	if err := wr.flush(); err != nil {
		return "write-error"
	}
	ka := time.NewTimer(s.cfg.KeepAlive)
	defer ka.Stop()
	var expired <-chan time.Time
	if c.p.Expires() {
		t := time.NewTimer(time.Until(c.p.Expiry.Add(s.cfg.Leeway)))
		defer t.Stop()
		expired = t.C
	}
	done := r.Context().Done()
	for {
		select {
		case <-done:
			return "client-gone"
		case <-c.notify:
			if c.ended.Load() {
				continue // the end case decides what is still written
			}
			wr.appendQueued(c)
		case <-ka.C:
			wr.buf = append(wr.buf, event.KeepAlive...)
		case <-expired:
			c.finish(CondTokenExpired, 0)
			continue
		case <-c.end:
			cond, retry := c.condition()
			if cond == CondShuttingDown {
				wr.appendQueued(c) // drain: deliver what is queued first
				wr.buf = event.AppendRetry(wr.buf, retry)
				wr.buf = append(wr.buf, '\n')
			}
			wr.buf = appendStreamError(wr.buf, cond)
			_ = wr.flush()
			return cond
		}
		if err := wr.flush(); err != nil {
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
		if len(wr.buf) != before {
			wr.s.cfg.Metrics.Latency(time.Duration(now - ev.Published))
		}
	}
	c.give(q)
}

func (wr *writer) index(ch channel.Name) int {
	for i, c := range wr.chans {
		if c == ch {
			return i
		}
	}
	return -1
}

// appendEvent appends ev, the next event of channel i, unless the stream
// is already past it (the replay delivered it).
func (wr *writer) appendEvent(b []byte, i int, ev *event.Event) []byte {
	p := wr.pos[i]
	if ev.Pos.Epoch == p.Epoch && ev.Pos.Offset <= p.Offset {
		return b
	}
	wr.pos[i] = ev.Pos
	wr.evs++
	wr.unrep++
	frame, seg, body := ev.Frame(wr.s.cfg.Codec)
	if wr.segs == nil {
		return append(b, frame...)
	}
	wr.segs[i] = seg
	b = append(b, "id: "...)
	for j, sg := range wr.segs {
		if j > 0 {
			b = append(b, '.')
		}
		b = append(b, sg...)
	}
	b = append(b, '\n')
	return append(b, body...)
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
	_ = wr.rc.SetWriteDeadline(time.Now().Add(wr.s.cfg.WriteTimeout))
	n, err := wr.w.Write(wr.buf)
	wr.bytes += n
	if err == nil {
		err = wr.rc.Flush()
	}
	if cap(wr.buf) > 64<<10 {
		wr.buf = nil // do not keep a burst's buffer on an idle stream
	} else {
		wr.buf = wr.buf[:0]
	}
	wr.s.cfg.Metrics.Delivered(wr.unrep, n)
	wr.unrep = 0
	return err
}
