package browser

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/channel"
)

func chanOf(tenant, resource string) string {
	return channel.MustMake("browser-test", tenant, resource).String()
}

// TestHelperReceives subscribes with sluice.js from another origin, with the
// token in the query and with a ticket, and checks that published events
// arrive in order.
func TestHelperReceives(t *testing.T) {
	needChromium(t)
	a := newApp(t)
	srv := startSluice(t, nil, gatewayEnv(a.srv.URL, "SLUICE_ADDR=127.0.0.1:0")...)
	p := newPage(t)
	p.navigate(a.srv.URL + "/")

	for _, ticket := range []bool{false, true} {
		name := map[bool]string{false: "access_token", true: "ticket"}[ticket]
		t.Run(name, func(t *testing.T) {
			p.t = t
			tenant := uuid.NewString()
			ch := chanOf(tenant, name)
			before := len(p.esURLs())
			i := p.subscribe(subOptions{Sluice: srv.base, Channels: []string{ch}, Tenant: tenant, Ticket: ticket})
			st := p.waitState(i, 10*time.Second, "stream-open", func(s subState) bool { return len(s.Opens) == 1 })
			if !slices.Equal(st.Opens[0].Channels, []string{ch}) || st.Opens[0].Cursor == "" {
				t.Fatalf("stream-open: %+v", st.Opens[0])
			}
			for n := range 3 {
				publish(t, srv.base, publishKey, ch, "test.said", map[string]string{"text": fmt.Sprint("event ", n)})
			}
			st = p.waitState(i, 10*time.Second, "3 events", func(s subState) bool { return len(s.Got) >= 3 })
			if got := st.texts(); !slices.Equal(got, []string{"event 0", "event 1", "event 2"}) {
				t.Fatalf("events %q", got)
			}
			for _, g := range st.Got {
				if g.Type != "test.said" || g.ID == "" {
					t.Fatalf("event %+v", g)
				}
			}
			urls := p.esURLs()[before:]
			if len(urls) != 1 {
				t.Fatalf("EventSource URLs %q", urls)
			}
			if queryHas(urls[0], "ticket") != ticket || queryHas(urls[0], "access_token") == ticket {
				t.Fatalf("EventSource URL %s: want the credential in %s", urls[0], name)
			}
			p.must(fmt.Sprintf("subs[%d].sub.close(), 1", i), nil)
		})
	}
}

// TestRestart stops the gateway under an open page and starts it again on
// the same address. With the memory broker history is gone, so the page is
// told to refetch (stream-reset); with Redis, EventSource's own reconnection
// resumes with Last-Event-ID and nothing published meanwhile is lost.
func TestRestart(t *testing.T) {
	needChromium(t)
	a := newApp(t)

	t.Run("memory", func(t *testing.T) {
		addr := freeAddr(t)
		env := gatewayEnv(a.srv.URL, "SLUICE_ADDR="+addr)
		srv := startSluice(t, nil, env...)
		p := newPage(t)
		p.navigate(a.srv.URL + "/")
		tenant := uuid.NewString()
		ch := chanOf(tenant, "restart")
		i := p.subscribe(subOptions{Sluice: srv.base, Channels: []string{ch}, Tenant: tenant})
		p.waitState(i, 10*time.Second, "stream-open", func(s subState) bool { return len(s.Opens) == 1 })
		publish(t, srv.base, publishKey, ch, "test.said", map[string]string{"text": "before"})
		p.waitState(i, 10*time.Second, "the first event", func(s subState) bool { return len(s.Got) == 1 })

		srv.stop()
		p.waitState(i, 5*time.Second, "shutting-down", func(s subState) bool { return slices.Contains(s.conditions(), "shutting-down") })
		srv = startSluice(t, nil, env...)
		st := p.waitState(i, 20*time.Second, "stream-reset", func(s subState) bool { return len(s.Opens) == 2 && len(s.Resets) == 1 })
		if r := st.Resets[0]; r != "cursor-unreadable" && r != "history-unavailable" {
			t.Fatalf("reset reason %q", r)
		}
		publish(t, srv.base, publishKey, ch, "test.said", map[string]string{"text": "after"})
		st = p.waitState(i, 10*time.Second, "the second event", func(s subState) bool { return len(s.Got) == 2 })
		if got := st.texts(); !slices.Equal(got, []string{"before", "after"}) {
			t.Fatalf("events %q", got)
		}
	})

	t.Run("redis", func(t *testing.T) {
		redisURL := os.Getenv("SLUICE_TEST_REDIS_URL")
		if redisURL == "" {
			t.Skip("set SLUICE_TEST_REDIS_URL to run the Redis restart case")
		}
		var rnd [6]byte
		_, _ = rand.Read(rnd[:])
		redisEnv := []string{"SLUICE_BROKER=redis", "SLUICE_REDIS_URL=" + redisURL,
			"SLUICE_REDIS_PREFIX=sluice-browser-test:" + hex.EncodeToString(rnd[:]) + ":"}
		addr := freeAddr(t)
		env := gatewayEnv(a.srv.URL, append(redisEnv, "SLUICE_ADDR="+addr)...)
		srv := startSluice(t, nil, env...)
		p := newPage(t)
		p.navigate(a.srv.URL + "/")
		tenant := uuid.NewString()
		ch := chanOf(tenant, "restart")
		i := p.subscribe(subOptions{Sluice: srv.base, Channels: []string{ch}, Tenant: tenant})
		p.waitState(i, 10*time.Second, "stream-open", func(s subState) bool { return len(s.Opens) == 1 })
		publish(t, srv.base, publishKey, ch, "test.said", map[string]string{"text": "e1"})
		p.waitState(i, 10*time.Second, "e1", func(s subState) bool { return len(s.Got) == 1 })

		srv.stop()
		// While the page's gateway is down, another instance publishes.
		other := startSluice(t, nil, gatewayEnv(a.srv.URL, append(redisEnv, "SLUICE_ADDR=127.0.0.1:0")...)...)
		publish(t, other.base, publishKey, ch, "test.said", map[string]string{"text": "e2"})
		publish(t, other.base, publishKey, ch, "test.said", map[string]string{"text": "e3"})
		srv = startSluice(t, nil, env...)
		publish(t, srv.base, publishKey, ch, "test.said", map[string]string{"text": "e4"})

		p.waitState(i, 20*time.Second, "e1…e4", func(s subState) bool { return len(s.Got) >= 4 && len(s.Opens) == 2 })
		time.Sleep(300 * time.Millisecond) // let a duplicate show, if any
		st := p.state(i)
		if got := st.texts(); !slices.Equal(got, []string{"e1", "e2", "e3", "e4"}) {
			t.Fatalf("events %q", got)
		}
		if len(st.Resets) != 0 {
			t.Fatalf("stream-reset %q after a restart with shared history", st.Resets)
		}
		if urls := p.esURLs(); len(urls) != 1 {
			t.Fatalf("the helper opened new EventSources %q; EventSource's own reconnection should have resumed", urls)
		}
		srv.stop()
		other.stop()
	})
}

// TestTokenExpired gives the page two-second tokens and publishes across
// several expiries: each time the stream ends with token-expired, sluice.js
// fetches a fresh credential and reopens with ?lastEventId=, and no event is
// lost or repeated.
func TestTokenExpired(t *testing.T) {
	needChromium(t)
	a := newApp(t)
	srv := startSluice(t, nil, gatewayEnv(a.srv.URL, "SLUICE_ADDR=127.0.0.1:0")...)

	for _, ticket := range []bool{false, true} {
		name := map[bool]string{false: "access_token", true: "ticket"}[ticket]
		t.Run(name, func(t *testing.T) {
			p := newPage(t)
			p.navigate(a.srv.URL + "/")
			tenant := uuid.NewString()
			ch := chanOf(tenant, "expiry")
			tokensBefore := a.tokens.Load()
			i := p.subscribe(subOptions{Sluice: srv.base, Channels: []string{ch}, Tenant: tenant, TTL: 2, Ticket: ticket})
			p.waitState(i, 10*time.Second, "stream-open", func(s subState) bool { return len(s.Opens) == 1 })

			var want []string
			for n := 0; n < 30; n++ {
				text := fmt.Sprint("tick ", n)
				want = append(want, text)
				publish(t, srv.base, publishKey, ch, "test.said", map[string]string{"text": text})
				time.Sleep(150 * time.Millisecond)
			}
			p.waitState(i, 15*time.Second, "every event", func(s subState) bool { return len(s.Got) >= len(want) })
			time.Sleep(300 * time.Millisecond) // let a duplicate show, if any
			st := p.state(i)
			if got := st.texts(); !slices.Equal(got, want) {
				t.Fatalf("events (lost or repeated):\n got %q\nwant %q", got, want)
			}
			expired := 0
			for _, c := range st.conditions() {
				if c == "token-expired" {
					expired++
				}
			}
			if expired < 1 || len(st.Opens) < 2 {
				t.Fatalf("%d token-expired, %d opens; want at least 1 and 2 (errors %+v)", expired, len(st.Opens), st.Errors)
			}
			if len(st.Resets) != 0 {
				t.Fatalf("stream-reset %q", st.Resets)
			}
			if minted := a.tokens.Load() - tokensBefore; minted < 2 {
				t.Fatalf("%d tokens fetched; want a fresh one per connection", minted)
			}
			urls := p.esURLs()
			for _, u := range urls[1:] {
				if !queryHas(u, "lastEventId") {
					t.Fatalf("reopened without ?lastEventId=: %s", u)
				}
			}
			p.must(fmt.Sprintf("subs[%d].sub.close(), 1", i), nil)
		})
	}
}

// TestTenantIsolation checks from the browser that a page holding tenant
// A's token gets no stream of tenant B's channels, alone or mixed with its
// own, and never sees B's events.
func TestTenantIsolation(t *testing.T) {
	needChromium(t)
	a := newApp(t)
	srv := startSluice(t, nil, gatewayEnv(a.srv.URL, "SLUICE_ADDR=127.0.0.1:0")...)
	p := newPage(t)
	p.navigate(a.srv.URL + "/")

	tenantA, tenantB := uuid.NewString(), uuid.NewString()
	chA, chB := chanOf(tenantA, "board"), chanOf(tenantB, "board")
	foreign := p.subscribe(subOptions{Sluice: srv.base, Channels: []string{chB}, Tenant: tenantA, User: "alice"})
	mixed := p.subscribe(subOptions{Sluice: srv.base, Channels: []string{chA, chB}, Tenant: tenantA, User: "alice"})
	own := p.subscribe(subOptions{Sluice: srv.base, Channels: []string{chA}, Tenant: tenantA, User: "alice"})
	ownTicket := p.subscribe(subOptions{Sluice: srv.base, Channels: []string{chB}, Tenant: tenantA, User: "alice", Ticket: true})
	other := p.subscribe(subOptions{Sluice: srv.base, Channels: []string{chB}, Tenant: tenantB, User: "bob"})

	for _, i := range []int{foreign, mixed, ownTicket} {
		st := p.waitState(i, 10*time.Second, "a refusal", func(s subState) bool { return len(s.Errors) > 0 })
		if c := st.Errors[0].Condition; c != "foreign_tenant" {
			t.Errorf("subscription %d: condition %q, want foreign_tenant (%+v)", i, c, st.Errors)
		}
	}
	p.waitState(own, 10*time.Second, "A's stream", func(s subState) bool { return len(s.Opens) == 1 })
	p.waitState(other, 10*time.Second, "B's stream", func(s subState) bool { return len(s.Opens) == 1 })

	publish(t, srv.base, publishKey, chB, "test.said", map[string]string{"text": "secret of B"})
	publish(t, srv.base, publishKey, chA, "test.said", map[string]string{"text": "news for A"})
	p.waitState(other, 10*time.Second, "B's event", func(s subState) bool { return len(s.Got) == 1 })
	p.waitState(own, 10*time.Second, "A's event", func(s subState) bool { return len(s.Got) == 1 })
	time.Sleep(300 * time.Millisecond)

	for _, i := range []int{foreign, mixed, own, ownTicket} {
		st := p.state(i)
		if slices.Contains(st.texts(), "secret of B") {
			t.Errorf("subscription %d with A's token saw B's event: %+v", i, st.Got)
		}
		if i != own && (len(st.Opens) != 0 || len(st.Got) != 0) {
			t.Errorf("subscription %d opened a stream of B's channel: %+v", i, st)
		}
	}
	if got := p.state(own).texts(); !slices.Equal(got, []string{"news for A"}) {
		t.Errorf("A's events %q", got)
	}
}
