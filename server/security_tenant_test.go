package server_test

// Security, cross-tenant access: tenant isolation under random load with
// every kind of credential, and cursors forged to reach history or
// channels a client was not given. docs/security.md maps each threat to the
// test that proves its defence.

import (
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/channel"
)

const tenantC = "c0ffee00-1234-4abc-8def-0123456789ab"

// TestSecurityTenantIsolationRandomized opens dozens of streams for users of
// three tenants on random channels of their own tenant, with every kind of
// stream credential, publishes thousands of events to random channels of all
// tenants, and checks that no frame reaches a principal of another tenant and
// that every stream got exactly its channels' events, in order.
func TestSecurityTenantIsolationRandomized(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := mrand.New(mrand.NewPCG(seed, 0x5eed))
	e := newEnv(t, nil)

	tenants := []string{tenantA, tenantB, tenantC}
	const users, streamsPerUser, chansPerTenant, events = 4, 3, 5, 3000
	pool := map[string][]string{}
	var all []string
	for _, tn := range tenants {
		for i := range chansPerTenant {
			ch := chanName("doc", tn, fmt.Sprint("r", i))
			pool[tn] = append(pool[tn], ch)
			all = append(all, ch)
		}
	}
	tenantOf := func(ch string) string { return must(channel.Parse(ch)).Tenant() }

	type sub struct {
		tenant, user string
		chans        []string
		s            *stream
	}
	var subs []*sub
	for _, tn := range tenants {
		for u := range users {
			user := fmt.Sprint("user-", u)
			tok := token(t, user, tn, time.Hour, nil)
			for range streamsPerUser {
				n := 1 + rnd.IntN(3)
				chans := slices.Clone(pool[tn])
				rnd.Shuffle(len(chans), func(i, j int) { chans[i], chans[j] = chans[j], chans[i] })
				chans = chans[:n]
				q := url.Values{"channel": chans}
				var h http.Header
				switch rnd.IntN(3) {
				case 0:
					h = bearer(tok)
				case 1:
					q.Set("access_token", tok)
				case 2:
					q.Set("ticket", issueTicket(t, e, tok))
				}
				s := open(t, e.eventsURL(q), h)
				s.expect("stream-open")
				subs = append(subs, &sub{tenant: tn, user: user, chans: chans, s: s})
			}
		}
	}

	// Publish in batches from one publisher, so that each channel's order is
	// the order of seq.
	seq := map[string]int{}
	for sent := 0; sent < events; {
		var batch []map[string]any
		for range min(100, events-sent) {
			ch := all[rnd.IntN(len(all))]
			seq[ch]++
			batch = append(batch, map[string]any{"channel": ch, "event": "doc.updated",
				"data": map[string]any{"tenant": tenantOf(ch), "ch": ch, "seq": seq[ch]}})
			sent++
		}
		if st, reply := e.publish(map[string]any{"events": batch}); st != http.StatusOK {
			t.Fatalf("publish: %d %v", st, reply)
		}
	}
	// A last event on every channel marks its end.
	var ends []map[string]any
	for _, ch := range all {
		ends = append(ends, map[string]any{"channel": ch, "event": "doc.end",
			"data": map[string]any{"tenant": tenantOf(ch), "ch": ch}})
	}
	if st, reply := e.publish(map[string]any{"events": ends}); st != http.StatusOK {
		t.Fatalf("publish: %d %v", st, reply)
	}

	frames := 0
	for i, sb := range subs {
		got := map[string]int{}
		open := map[string]bool{}
		for _, ch := range sb.chans {
			open[ch] = true
		}
		for len(open) > 0 {
			ev := sb.s.next(10 * time.Second)
			frames++
			var d struct {
				Tenant, Ch string
				Seq        int
			}
			if err := json.Unmarshal([]byte(ev.Data), &d); err != nil {
				t.Fatalf("stream %d: %s %q", i, ev.Type, ev.Data)
			}
			if d.Tenant != sb.tenant || tenantOf(d.Ch) != sb.tenant {
				t.Fatalf("CROSS-TENANT: stream %d of %s@%s got an event of channel %s", i, sb.user, sb.tenant, d.Ch)
			}
			if !slices.Contains(sb.chans, d.Ch) {
				t.Fatalf("stream %d on %v got an event of channel %s", i, sb.chans, d.Ch)
			}
			switch ev.Type {
			case "doc.end":
				if !open[d.Ch] {
					t.Fatalf("stream %d: second end of %s", i, d.Ch)
				}
				if got[d.Ch] != seq[d.Ch] {
					t.Fatalf("stream %d: %d events of %s before its end, want %d", i, got[d.Ch], d.Ch, seq[d.Ch])
				}
				delete(open, d.Ch)
			case "doc.updated":
				if !open[d.Ch] {
					t.Fatalf("stream %d: event of %s after its end", i, d.Ch)
				}
				if d.Seq != got[d.Ch]+1 {
					t.Fatalf("stream %d: %s seq %d after %d (lost, repeated or reordered)", i, d.Ch, d.Seq, got[d.Ch])
				}
				got[d.Ch] = d.Seq
			default:
				t.Fatalf("stream %d: unexpected %s %s", i, ev.Type, ev.Data)
			}
		}
	}
	// Nothing more is pending on any stream.
	time.Sleep(50 * time.Millisecond)
	for i, sb := range subs {
		select {
		case ev := <-sb.s.events:
			t.Fatalf("stream %d: extra frame %s %s", i, ev.Type, ev.Data)
		default:
		}
	}
	t.Logf("%d streams, %d events published, %d frames checked", len(subs), events, frames)
}

// TestSecurityCursorForgery resumes with cursors a client was not given: an
// altered one, one of another deployment, and one naming another tenant's
// channel. None is a position: the stream resets or starts at the head, and
// nothing of the history is replayed.
func TestSecurityCursorForgery(t *testing.T) {
	e := newEnv(t, nil)
	chA := chanName("doc", tenantA, "cur")
	chB := chanName("doc", tenantB, "cur")
	tokA := token(t, "u1", tenantA, time.Hour, nil)
	tokB := token(t, "u1", tenantB, time.Hour, nil)
	s := open(t, e.eventsURL(url.Values{"channel": {chA}}), bearer(tokA))
	first := s.expect("stream-open").LastEventID
	e.mustPublish(chA, "doc.updated", "secret of A")
	s.expect("doc.updated")

	resume := func(ch, tok, cursor string) *stream {
		h := bearer(tok)
		h.Set("Last-Event-ID", cursor)
		s := open(t, e.eventsURL(url.Values{"channel": {ch}}), h)
		s.expect("stream-open")
		return s
	}
	flip := []byte(first)
	if i := len(flip) / 2; flip[i] != 'A' {
		flip[i] = 'A'
	} else {
		flip[i] = 'B'
	}
	other := newEnv(t, nil)
	foreign := open(t, other.eventsURL(url.Values{"channel": {chA}}), bearer(tokA)).expect("stream-open").LastEventID
	for name, cur := range map[string]string{"altered": string(flip), "another deployment": foreign} {
		t.Run(name, func(t *testing.T) {
			r := resume(chA, tokA, cur)
			if ev := r.next(5 * time.Second); ev.Type != "stream-reset" {
				t.Fatalf("got %s %s, want stream-reset", ev.Type, ev.Data)
			}
			e.mustPublish(chA, "doc.updated", "live")
			if ev := r.expect("doc.updated"); ev.Data != `"live"` {
				t.Fatalf("replayed %s from a forged cursor", ev.Data)
			}
		})
	}
	t.Run("cursor of another tenant's channel", func(t *testing.T) {
		// Tenant B's user presents tenant A's cursor on its own channel:
		// the cursor names no channel of the request, so the stream starts
		// at the head, and A's channel is never read.
		r := resume(chB, tokB, first)
		e.mustPublish(chA, "doc.updated", "A again")
		e.mustPublish(chB, "doc.updated", "B live")
		if ev := r.next(5 * time.Second); ev.Type != "doc.updated" || ev.Data != `"B live"` {
			t.Fatalf("got %s %s", ev.Type, ev.Data)
		}
	})
}
