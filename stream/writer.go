package stream

// One output path. What a stream writes, and in what order, is decided here
// and nowhere else: the opening block (appendOpen), the replay (replay, in
// chunks as the client takes them), live events with the gap and epoch rule
// (appendQueued, appendEvent), keep-alives and the final stream-error
// (next). The two transports only move these bytes: the stream's own
// goroutine (loop in run.go: HTTP/2, TLS, other platforms, wrapped writers,
// or DisablePark) and the poller (park_linux.go: parked HTTP/1.1 streams).
// They differ in when they ask for the next bytes, never in what they are.

import (
	"context"
	"encoding/json"
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

// next appends to wr.buf what the stream writes next: when it must end
// (c's condition is set), the queued events on shutting-down only, so that
// a drain delivers them, then the final blocks; otherwise the queued events,
// or a keep-alive when ka and there are none. It returns the condition the
// stream ends with, "" when it goes on.
func (wr *writer) next(ka bool) (cond event.EndReason) {
	c := wr.c
	cond, retry := c.condition()
	start := len(wr.buf)
	if cond == "" || cond == event.EndShuttingDown {
		wr.appendQueued(c)
	}
	switch {
	case cond != "":
		if cond == event.EndShuttingDown {
			wr.buf = event.AppendRetry(wr.buf, retry)
			wr.buf = append(wr.buf, '\n')
		}
		wr.buf = appendStreamError(wr.buf, cond)
	case ka && len(wr.buf) == start:
		wr.buf = append(wr.buf, event.KeepAlive...)
	}
	return cond
}

// Replay is fetched and written in chunks, so that a resume from an old
// cursor costs memory for a chunk, not for the history it replays.
const (
	replayBatch = 128      // events fetched per Since, shared by the channels
	replayFlush = 32 << 10 // bytes appended before a write during the replay
)

// replayChunk is how many events of one channel a Since of the replay
// fetches, for a stream on n channels.
func (s *Server) replayChunk(n int) int {
	return min(max(replayBatch/n, 8), s.cfg.ReplayLimit)
}

// replay writes, after the opening block in wr.buf, what the stream
// replays: per channel, first[i] (the first chunk, fetched by resume),
// then further chunks from the broker, each from the last position written,
// until one comes back short (caught up with the head) or ReplayLimit
// events were replayed. It writes whenever replayFlush bytes are appended,
// so the buffer stays small whatever the history; the writes wait for the
// client (WriteTimeout). A channel whose history cannot be fetched any more
// is left where it is: its next live event shows the gap (a stream-reset).
// Replayed events are encoded here, not through the event's shared frame,
// which would keep a second copy of every replayed history event.
func (wr *writer) replay(ctx context.Context, first [][]*event.Event) error {
	s := wr.s
	limit := s.replayChunk(len(wr.chans))
	for i, evs := range first {
		if evs == nil {
			continue
		}
		first[i] = nil
		done := 0
		for {
			for _, ev := range evs {
				wr.buf = wr.appendReplayed(wr.buf, i, ev)
				if len(wr.buf) >= replayFlush {
					if err := wr.flush(); err != nil {
						return err
					}
				}
			}
			done += len(evs)
			if len(evs) < limit || done >= s.cfg.ReplayLimit {
				break
			}
			if wr.c.ended.Load() {
				return nil // the stream ends (e.g. cut while replaying): no more to fetch
			}
			var ok bool
			var err error
			evs, ok, err = s.cfg.Broker.Since(ctx, wr.chans[i], wr.pos[i], min(limit, s.cfg.ReplayLimit-done))
			if err != nil || !ok {
				if err != nil && ctx.Err() == nil {
					s.cfg.Logger.Warn("replay cut short", "principal", wr.c.p, "err", err)
				}
				break
			}
		}
	}
	return nil
}

// appendReplayed is appendEvent for a replayed event, encoded into b
// directly rather than through the event's cached frame.
func (wr *writer) appendReplayed(b []byte, i int, ev *event.Event) []byte {
	b, write := wr.advance(b, i, ev)
	if !write {
		return b
	}
	seg := wr.s.cfg.Codec.Segment(wr.chans[i], ev.Pos)
	if wr.segs == nil {
		return event.AppendBlock(b, seg, ev.Type, ev.Data)
	}
	wr.segs[i] = seg
	b = wr.appendID(b)
	return event.AppendBlock(b, "", ev.Type, ev.Data)
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

// advance applies the gap and epoch rule (protocol.md §5) to ev, the next event
// or notice of channel i, at the stream's position there: it appends the
// stream-reset the rule calls for, if any, moves the position, and reports
// whether ev itself is to be written:
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
func (wr *writer) advance(b []byte, i int, ev *event.Event) (_ []byte, write bool) {
	p := wr.pos[i]
	if ev.Lost {
		if ev.Pos != p {
			b = wr.appendReset(b, i, ev.Pos)
		}
		return b, false
	}
	switch {
	case ev.Pos.Epoch == p.Epoch:
		if ev.Pos.Offset <= p.Offset {
			return b, false
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
	return b, true
}

// appendEvent appends what ev, a live event or notice of channel i, means
// for the stream (advance), the event through its shared frame.
func (wr *writer) appendEvent(b []byte, i int, ev *event.Event) []byte {
	b, write := wr.advance(b, i, ev)
	if !write {
		return b
	}
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

// appendReset moves channel i to at and appends the mid-stream stream-reset
// that tells the client so. Unlike the reset after stream-open it carries an
// id, the stream's cursor with channel i at at, so that a client that
// reconnects right after it resumes from there, not from before the loss,
// and its data names the channel (channel names hold no character JSON
// escapes), so that a client of several channels refetches only that one's
// state: {"reason":"history-unavailable","channel":"<name>"}.
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
	data := make([]byte, 0, 64+len(wr.chans[i].String()))
	data = append(data, `{"reason":"`+ResetHistoryUnavailable+`","channel":"`...)
	data = append(append(data, wr.chans[i].String()...), `"}`...)
	return event.AppendBlock(b, "", event.TypeReset, data)
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
