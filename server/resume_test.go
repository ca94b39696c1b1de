package server_test

// Resuming a stream from a cursor (Last-Event-ID, ?lastEventId=): every
// event exactly once across reconnections, and stream-reset when a position
// cannot be kept.

import (
	"encoding/json"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/server"
)

// TestResumeExactlyOnce reconnects a client again and again at random points
// while events are being published on two channels, and checks that every
// event arrives exactly once, in order per channel.
func TestResumeExactlyOnce(t *testing.T) {
	e := newEnv(t, nil)
	tok := token(t, "u1", tenantA, time.Hour, nil)
	chs := []string{chanName("doc", tenantA, "a"), chanName("doc", tenantA, "b")}
	const perChannel = 400

	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, ch := range chs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 1; i <= perChannel; i++ {
				e.mustPublish(ch, "doc.updated", map[string]any{"ch": ch, "seq": i})
				if i%50 == 0 {
					time.Sleep(2 * time.Millisecond)
				}
			}
		}()
	}

	got := map[string][]int{}
	last := ""
	q := url.Values{"channel": chs}
	total := 0
	reconnects := 0
	for total < 2*perChannel {
		h := bearer(tok)
		if last != "" {
			h.Set("Last-Event-ID", last)
		}
		s := open(t, e.eventsURL(q), h)
		op := s.expect("stream-open")
		if last != "" && op.LastEventID != last {
			t.Fatalf("resumed stream-open id %q, want the resume point %q", op.LastEventID, last)
		}
		last = op.LastEventID
		if reconnects == 0 {
			close(start)
		}
		// Read a random-ish number of events, then drop the connection.
		n := 37 + reconnects*13%91
		for i := 0; i < n && total < 2*perChannel; i++ {
			ev := s.next(10 * time.Second)
			if ev.Type != "doc.updated" {
				t.Fatalf("unexpected %s %s", ev.Type, ev.Data)
			}
			var d struct {
				Ch  string
				Seq int
			}
			_ = json.Unmarshal([]byte(ev.Data), &d)
			got[d.Ch] = append(got[d.Ch], d.Seq)
			last = ev.LastEventID
			total++
		}
		s.close()
		reconnects++
	}
	wg.Wait()
	for _, ch := range chs {
		seq := got[ch]
		if len(seq) != perChannel {
			t.Fatalf("%s: %d events, want %d", ch, len(seq), perChannel)
		}
		for i, v := range seq {
			if v != i+1 {
				t.Fatalf("%s: event %d is seq %d (lost or repeated)", ch, i, v)
			}
		}
	}
	t.Logf("%d reconnects", reconnects)
}

func TestResumeByQueryAndHeaderPrecedence(t *testing.T) {
	e := newEnv(t, nil)
	tok := token(t, "u1", tenantA, time.Hour, nil)
	ch := chanName("doc", tenantA, "q")
	q := url.Values{"channel": {ch}}
	s := open(t, e.eventsURL(q), bearer(tok))
	first := s.expect("stream-open").LastEventID
	e.mustPublish(ch, "doc.updated", 1)
	mid := s.expect("doc.updated").LastEventID
	e.mustPublish(ch, "doc.updated", 2)
	s.expect("doc.updated")

	q2 := url.Values{"channel": {ch}, "lastEventId": {first}}
	s2 := open(t, e.eventsURL(q2), bearer(tok))
	s2.expect("stream-open")
	if ev := s2.expect("doc.updated"); ev.Data != "1" {
		t.Fatalf("?lastEventId replay starts at %s", ev.Data)
	}
	h := bearer(tok)
	h.Set("Last-Event-ID", mid)
	s3 := open(t, e.eventsURL(q2), h)
	s3.expect("stream-open")
	if ev := s3.expect("doc.updated"); ev.Data != "2" {
		t.Fatalf("header did not win over the query: replay starts at %s", ev.Data)
	}
}

func TestReset(t *testing.T) {
	tok := token(t, "u1", tenantA, time.Hour, nil)
	ch := chanName("doc", tenantA, "r")
	q := url.Values{"channel": {ch}}

	t.Run("trimmed history", func(t *testing.T) {
		e := newEnv(t, func(c *server.Config) { c.HistorySize = 3 })
		s := open(t, e.eventsURL(q), bearer(tok))
		first := s.expect("stream-open").LastEventID
		for i := range 5 {
			e.mustPublish(ch, "doc.updated", i)
		}
		h := bearer(tok)
		h.Set("Last-Event-ID", first)
		s2 := open(t, e.eventsURL(q), h)
		op := s2.expect("stream-open")
		rs := s2.expect("stream-reset")
		if rs.Data != `{"reason":"history-unavailable"}` {
			t.Fatalf("reset data %s", rs.Data)
		}
		if op.LastEventID == first {
			t.Fatal("after a reset, stream-open must name the head")
		}
		e.mustPublish(ch, "doc.updated", "live")
		if ev := s2.expect("doc.updated"); ev.Data != `"live"` {
			t.Fatalf("after reset got %s, want only live events", ev.Data)
		}
	})
	t.Run("restart", func(t *testing.T) {
		e1 := newEnv(t, nil)
		s := open(t, e1.eventsURL(q), bearer(tok))
		s.expect("stream-open")
		e1.mustPublish(ch, "doc.updated", 1)
		last := s.expect("doc.updated").LastEventID
		e2 := newEnv(t, nil) // a new process: new history, new epoch
		h := bearer(tok)
		h.Set("Last-Event-ID", last)
		s2 := open(t, e2.eventsURL(q), h)
		s2.expect("stream-open")
		s2.expect("stream-reset")
	})
	t.Run("garbage cursor", func(t *testing.T) {
		e := newEnv(t, nil)
		for _, c := range []string{"x", strings.Repeat("A", 2000), "a.b.c", "%%%"} {
			h := bearer(tok)
			h.Set("Last-Event-ID", c)
			s := open(t, e.eventsURL(q), h)
			s.expect("stream-open")
			if rs := s.expect("stream-reset"); rs.Data != `{"reason":"cursor-unreadable"}` {
				t.Fatalf("%q: %s", c, rs.Data)
			}
		}
	})
	t.Run("channel not named by the cursor starts at the head", func(t *testing.T) {
		e := newEnv(t, nil)
		other := chanName("doc", tenantA, "other")
		s := open(t, e.eventsURL(q), bearer(tok))
		cur := s.expect("stream-open").LastEventID
		e.mustPublish(other, "doc.updated", "old")
		e.mustPublish(ch, "doc.updated", "missed")
		h := bearer(tok)
		h.Set("Last-Event-ID", cur)
		s2 := open(t, e.eventsURL(url.Values{"channel": {ch, other}}), h)
		s2.expect("stream-open")
		if ev := s2.next(5 * time.Second); ev.Type != "doc.updated" || ev.Data != `"missed"` {
			t.Fatalf("got %s %s", ev.Type, ev.Data)
		}
		e.mustPublish(other, "doc.updated", "new")
		if ev := s2.expect("doc.updated"); ev.Data != `"new"` {
			t.Fatalf("got %s, want only new events of the unnamed channel", ev.Data)
		}
	})
}
