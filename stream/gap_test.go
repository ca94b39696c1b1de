package stream

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/broker/memory"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/metrics"
)

// countingMetrics counts stream-resets.
type countingMetrics struct {
	metrics.Nop
	resets atomic.Int64
}

func (m *countingMetrics) Reset(string) { m.resets.Add(1) }

// block is one SSE block as a test reads it.
type block struct{ id, typ, data string }

func parseBlocks(t *testing.T, b []byte) []block {
	t.Helper()
	var out []block
	r := testutil.NewBlockReader(bytes.NewReader(b))
	for {
		bl, err := r.Next()
		if err != nil {
			return out
		}
		out = append(out, block{id: bl.ID, typ: bl.Event, data: bl.Data})
	}
}

func pos(e, o uint64) event.Position { return event.Position{Epoch: e, Offset: o} }

// TestGapAndEpochRule runs the writer's rule for an incoming event against
// the stream's position in its channel, for a stream on one channel and for
// the same channel as the second of a stream on two.
func TestGapAndEpochRule(t *testing.T) {
	type out struct {
		typ string         // "" for the event itself
		at  event.Position // the position the block's id names for the channel
	}
	cases := []struct {
		name string
		p    event.Position
		ev   *event.Event // Channel set by the test
		want []out
		end  event.Position
	}{
		{"next", pos(7, 4), &event.Event{Pos: pos(7, 5)}, []out{{"", pos(7, 5)}}, pos(7, 5)},
		{"duplicate", pos(7, 4), &event.Event{Pos: pos(7, 4)}, nil, pos(7, 4)},
		{"older", pos(7, 4), &event.Event{Pos: pos(7, 2)}, nil, pos(7, 4)},
		{"gap", pos(7, 4), &event.Event{Pos: pos(7, 9)},
			[]out{{event.TypeReset, pos(7, 8)}, {"", pos(7, 9)}}, pos(7, 9)},
		{"first event of a channel without history", pos(0, 0), &event.Event{Pos: pos(9, 1)},
			[]out{{"", pos(9, 1)}}, pos(9, 1)},
		{"no history, then a later event", pos(0, 0), &event.Event{Pos: pos(9, 3)},
			[]out{{event.TypeReset, pos(9, 2)}, {"", pos(9, 3)}}, pos(9, 3)},
		{"new epoch from its start", pos(7, 4), &event.Event{Pos: pos(8, 1)},
			[]out{{event.TypeReset, pos(8, 0)}, {"", pos(8, 1)}}, pos(8, 1)},
		{"new epoch, later event", pos(7, 4), &event.Event{Pos: pos(8, 6)},
			[]out{{event.TypeReset, pos(8, 5)}, {"", pos(8, 6)}}, pos(8, 6)},
		{"new epoch, same offset", pos(7, 4), &event.Event{Pos: pos(8, 4)},
			[]out{{event.TypeReset, pos(8, 3)}, {"", pos(8, 4)}}, pos(8, 4)},
		{"lost elsewhere", pos(7, 4), event.NewLost(channel.Name{}, pos(8, 0)),
			[]out{{event.TypeReset, pos(8, 0)}}, pos(8, 0)},
		{"lost, no history left", pos(7, 4), event.NewLost(channel.Name{}, pos(0, 0)),
			[]out{{event.TypeReset, pos(0, 0)}}, pos(0, 0)},
		{"lost where the stream is", pos(8, 0), event.NewLost(channel.Name{}, pos(8, 0)), nil, pos(8, 0)},
		{"lost ahead in the same epoch", pos(7, 4), event.NewLost(channel.Name{}, pos(7, 10)),
			[]out{{event.TypeReset, pos(7, 10)}}, pos(7, 10)},
	}
	codec := event.NewCodec([]byte("gap-key"))
	other := channel.MustMake("test", benchTenant, "other")
	ch := channel.MustMake("test", benchTenant, "gap")
	for _, nch := range []int{1, 2} {
		for _, tc := range cases {
			t.Run(tc.name+"/channels="+string(rune('0'+nch)), func(t *testing.T) {
				m := &countingMetrics{}
				s := &Server{cfg: Config{Codec: codec, Metrics: m}}
				s.cfg.defaults()
				chans := []channel.Name{ch}
				if nch == 2 {
					chans = []channel.Name{other, ch}
				}
				i := nch - 1
				wr := &writer{s: s, chans: chans, pos: make([]event.Position, nch)}
				wr.pos[i] = tc.p
				if nch == 2 {
					wr.pos[0] = pos(3, 3)
					wr.segs = []string{codec.Segment(other, wr.pos[0]), codec.Segment(ch, tc.p)}
				}
				ev := &event.Event{Channel: ch, Type: "test.tick", Data: []byte("{}"), Pos: tc.ev.Pos}
				if tc.ev.Lost {
					ev = event.NewLost(ch, tc.ev.Pos)
				}
				b := wr.appendEvent(nil, i, ev)
				got := parseBlocks(t, b)
				if len(got) != len(tc.want) {
					t.Fatalf("wrote %q, want %d blocks", b, len(tc.want))
				}
				resets := 0
				for k, w := range tc.want {
					g := got[k]
					if w.typ == "" {
						if g.typ != "test.tick" {
							t.Fatalf("block %d is %q, want the event", k, g.typ)
						}
					} else {
						resets++
						if g.typ != w.typ || g.data != `{"reason":"history-unavailable","channel":"`+chans[i].String()+`"}` {
							t.Fatalf("block %d is %q %q, want %s history-unavailable", k, g.typ, g.data, w.typ)
						}
					}
					ps, named, err := codec.Decode(g.id, chans)
					if err != nil || !named[i] {
						t.Fatalf("block %d id %q: %v", k, g.id, err)
					}
					if ps[i] != w.at {
						t.Fatalf("block %d names %v, want %v", k, ps[i], w.at)
					}
					if nch == 2 && ps[0] != pos(3, 3) {
						t.Fatalf("block %d moved the other channel to %v", k, ps[0])
					}
				}
				if wr.pos[i] != tc.end {
					t.Fatalf("position %v, want %v", wr.pos[i], tc.end)
				}
				if n := m.resets.Load(); n != int64(resets) {
					t.Fatalf("%d resets counted, want %d", n, resets)
				}
			})
		}
	}
}

// TestReplayLimitBelowHistoryResets resumes from a cursor 100 events back
// with ReplayLimit 5: the stream replays five events and, at the next live
// event, says with stream-reset that it skipped the rest, with an id from
// which a reconnect resumes.
func TestReplayLimitBelowHistoryResets(t *testing.T) {
	e := newBenchEnv(t, func(c *Config) { c.ReplayLimit = 5 })
	ch := channel.MustMake("test", benchTenant, "limit")
	first := openLines(t, e, ch)
	got := first.until(t, 5*time.Second, func(l string) bool { return l == "event: stream-open" })
	cursor := strings.TrimPrefix(got[len(got)-2], "id: ")
	first.resp.Body.Close()
	publishN(t, e, ch, 100)

	ls := openLinesFrom(t, e, cursor, ch)
	var datas []string
	ls.until(t, 5*time.Second, func(l string) bool {
		if d, ok := strings.CutPrefix(l, "data: "); ok && !strings.HasPrefix(d, "{") {
			datas = append(datas, d)
		}
		return len(datas) == 5
	})
	for i, d := range datas {
		if d != strconv.Itoa(i) {
			t.Fatalf("replayed event %d carries %s", i, d)
		}
	}
	msg := []event.Message{{Channel: ch, Type: "test.tick", Data: []byte("live")}}
	if _, err := e.b.Publish(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	got = ls.until(t, 5*time.Second, func(l string) bool { return l == "data: live" })
	var resetID string
	for k, l := range got {
		if strings.HasPrefix(l, "data: ") && !strings.HasPrefix(l, "data: {") {
			t.Fatalf("event %q after the replay limit, before the reset: %q", l, got)
		}
		if l == "event: stream-reset" {
			resetID = strings.TrimPrefix(got[k-1], "id: ")
			if !strings.HasPrefix(got[k+1], `data: {"reason":"history-unavailable","channel":"test:`) {
				t.Fatalf("reset data %q", got[k+1])
			}
			break
		}
	}
	if resetID == "" {
		t.Fatalf("no stream-reset before the live event: %q", got)
	}

	// Resuming from the reset's id delivers the live event and nothing else.
	again := openLinesFrom(t, e, resetID, ch)
	got = again.until(t, 5*time.Second, func(l string) bool {
		return strings.HasPrefix(l, "data: ") && l != "data: {\"channels\":[\""+ch.String()+"\"]}"
	})
	if l := got[len(got)-1]; l != "data: live" {
		t.Fatalf("resume from the reset's id: %q", got)
	}
}

// emptyHeads is a memory broker that answers {0, 0} for a channel without
// events, as brokers that keep no state for empty channels do, and reads
// {0, 0} as "before the channel's first event".
type emptyHeads struct{ *memory.Broker }

func (b emptyHeads) Heads(ctx context.Context, chans []channel.Name) ([]event.Position, error) {
	hs, err := b.Broker.Heads(ctx, chans)
	for i := range hs {
		if hs[i].Offset == 0 {
			hs[i] = event.Position{}
		}
	}
	return hs, err
}

func (b emptyHeads) Since(ctx context.Context, ch channel.Name, after event.Position, limit int) ([]*event.Event, bool, error) {
	if after == (event.Position{}) {
		hs, err := b.Broker.Heads(ctx, []channel.Name{ch})
		if err != nil {
			return nil, false, err
		}
		after.Epoch = hs[0].Epoch
	}
	return b.Broker.Since(ctx, ch, after, limit)
}

// TestChannelWithoutHistory: a stream opened on a channel with no history
// starts at {0, 0}; the channel's first events reach it without a reset,
// and a cursor naming {0, 0} resumes from the first event.
func TestChannelWithoutHistory(t *testing.T) {
	mb := memory.New(broker.Options{})
	e := newBenchEnv(t, func(c *Config) { c.Broker = emptyHeads{mb} })
	e.b = mb
	ch := channel.MustMake("test", benchTenant, "empty")
	ls := openLines(t, e, ch)
	got := ls.until(t, 5*time.Second, func(l string) bool { return l == "event: stream-open" })
	cursor := strings.TrimPrefix(got[len(got)-2], "id: ")
	if ps, _, err := e.s.cfg.Codec.Decode(cursor, []channel.Name{ch}); err != nil || ps[0] != (event.Position{}) {
		t.Fatalf("stream-open names %v (%v), want {0 0}", ps, err)
	}
	publishN(t, e, ch, 3)
	got = ls.until(t, 5*time.Second, func(l string) bool { return l == "data: 2" })
	for _, l := range got {
		if l == "event: stream-reset" {
			t.Fatalf("reset on a channel's first events: %q", got)
		}
	}
	again := openLinesFrom(t, e, cursor, ch)
	got = again.until(t, 5*time.Second, func(l string) bool { return l == "data: 2" })
	var datas []string
	for _, l := range got {
		if l == "event: stream-reset" {
			t.Fatalf("resume from {0, 0}: %q", got)
		}
		if d, ok := strings.CutPrefix(l, "data: "); ok && !strings.HasPrefix(d, "{") {
			datas = append(datas, d)
		}
	}
	if strings.Join(datas, ",") != "0,1,2" {
		t.Fatalf("resume from {0, 0} replayed %q", datas)
	}
}
