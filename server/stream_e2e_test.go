package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/server"
)

var cursorRE = regexp.MustCompile(`^[A-Za-z0-9._~-]+$`)

func TestStreamFraming(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.KeepAlive = 150 * time.Millisecond })
	ch := chanName("scan-progress", tenantA, "42")
	q := url.Values{"channel": {ch}}
	tok := token(t, "u1", tenantA, time.Hour, nil)

	resp, raw := rawPrefix(t, e.eventsURL(q), bearer(tok), "\n\n")
	for k, want := range map[string]string{
		"Content-Type":      "text/event-stream; charset=utf-8",
		"Cache-Control":     "no-cache",
		"X-Accel-Buffering": "no",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	lines := strings.Split(raw, "\n")
	if len(lines) != 6 || lines[0] != "retry: 2000" || !strings.HasPrefix(lines[1], "id: ") ||
		lines[2] != "event: stream-open" || lines[3] != `data: {"channels":["`+ch+`"]}` || lines[4] != "" {
		t.Fatalf("first block:\n%s", raw)
	}
	if id := strings.TrimPrefix(lines[1], "id: "); !cursorRE.MatchString(id) {
		t.Fatalf("cursor %q has characters outside [A-Za-z0-9._~-]", id)
	}

	s := open(t, e.eventsURL(q), bearer(tok))
	open := s.expect("stream-open")
	e.mustPublish(ch, "scan.progress", json.RawMessage(`{"pct":10,"msg":"line one\nline two"}`))
	ev := s.expect("scan.progress")
	if ev.Data != `{"pct":10,"msg":"line one\nline two"}` {
		t.Fatalf("data %q", ev.Data)
	}
	if ev.LastEventID == open.LastEventID || !cursorRE.MatchString(ev.LastEventID) {
		t.Fatalf("event id %q (open id %q)", ev.LastEventID, open.LastEventID)
	}
	// Whitespace is removed, escapes are kept as sent.
	st, _ := e.publish(json.RawMessage(`{"channel":"` + ch + `","event":"scan.progress","data": { "a" : "\u00e9\n" , "b":[1, 2] } }`))
	if st != 200 {
		t.Fatal(st)
	}
	if ev := s.expect("scan.progress"); ev.Data != `{"a":"\u00e9\n","b":[1,2]}` {
		t.Fatalf("compact data %q", ev.Data)
	}
	// An idle stream carries keep-alive comments; the raw bytes show them.
	_, raw = rawPrefix(t, e.eventsURL(q), bearer(tok), ": keep-alive\n\n")
	if !strings.HasSuffix(raw, "\n: keep-alive\n\n") {
		t.Fatalf("no keep-alive comment: %q", raw)
	}
}

// problemOf checks a problem+json reply.
func problemOf(t *testing.T, resp *http.Response) map[string]any {
	t.Helper()
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var p map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	if p["code"] == "" || p["title"] == "" || p["detail"] == nil || int(p["status"].(float64)) != resp.StatusCode {
		t.Fatalf("incomplete problem %v", p)
	}
	return p
}

func TestStreamErrors(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.MaxChannels = 3 })
	good := token(t, "u1", tenantA, time.Hour, nil)
	chA := chanName("scan-progress", tenantA, "1")
	chB := chanName("scan-progress", tenantB, "1")
	many := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, chanName("p", tenantA, fmt.Sprint(i)))
		}
		return out
	}
	cases := []struct {
		name    string
		query   url.Values
		header  http.Header
		status  int
		code    string
		invalid bool // WWW-Authenticate carries error="invalid_token"
	}{
		{"no credentials", url.Values{"channel": {chA}}, nil, 401, "missing_credentials", false},
		{"bad token", url.Values{"channel": {chA}}, bearer("nope"), 401, "invalid_token", true},
		{"expired token", url.Values{"channel": {chA}}, bearer(token(t, "u1", tenantA, -time.Minute, nil)), 401, "token_expired", true},
		{"auth before syntax", url.Values{"channel": {"bad"}}, nil, 401, "missing_credentials", false},
		{"bad header beats good query", url.Values{"channel": {chA}, "access_token": {good}}, bearer("nope"), 401, "invalid_token", true},
		{"bad query token", url.Values{"channel": {chA}, "access_token": {"nope"}}, nil, 401, "invalid_token", true},
		{"two query credentials", url.Values{"channel": {chA}, "access_token": {good}, "ticket": {"x"}}, nil, 401, "ambiguous_credentials", true},
		{"no channel", url.Values{}, bearer(good), 400, "no_channel", false},
		{"malformed channel", url.Values{"channel": {"scan:NOT-A-UUID:1"}}, bearer(good), 400, "malformed_channel", false},
		{"syntax before authorization", url.Values{"channel": {chB, "x"}}, bearer(good), 400, "malformed_channel", false},
		{"too many channels", url.Values{"channel": many(4)}, bearer(good), 400, "too_many_channels", false},
		{"foreign tenant", url.Values{"channel": {chB}}, bearer(good), 403, "foreign_tenant", false},
		{"one foreign channel refuses all", url.Values{"channel": {chA, chB}}, bearer(good), 403, "foreign_tenant", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, resp := tryOpen(t, e.eventsURL(tc.query), tc.header)
			if s != nil {
				t.Fatalf("stream opened, want %d", tc.status)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			p := problemOf(t, resp)
			if p["code"] != tc.code {
				t.Fatalf("code %v, want %s", p["code"], tc.code)
			}
			wa := resp.Header.Get("WWW-Authenticate")
			switch {
			case tc.status != 401 && wa != "":
				t.Fatalf("WWW-Authenticate on %d", tc.status)
			case tc.status == 401 && !tc.invalid && wa != `Bearer realm="sluice"`:
				t.Fatalf("WWW-Authenticate %q", wa)
			case tc.status == 401 && tc.invalid && wa != `Bearer realm="sluice", error="invalid_token"`:
				t.Fatalf("WWW-Authenticate %q", wa)
			}
		})
	}
	t.Run("duplicates collapse before counting", func(t *testing.T) {
		q := url.Values{"channel": append(many(3), many(3)...)}
		s := open(t, e.eventsURL(q), bearer(good))
		var d struct{ Channels []string }
		_ = json.Unmarshal([]byte(s.expect("stream-open").Data), &d)
		if len(d.Channels) != 3 {
			t.Fatalf("channels %v", d.Channels)
		}
	})
	t.Run("query token opens a stream", func(t *testing.T) {
		s := open(t, e.eventsURL(url.Values{"channel": {chA}, "access_token": {good}}), nil)
		s.expect("stream-open")
	})
}

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

func TestTokenExpiresOnOpenStream(t *testing.T) {
	e := newEnv(t, nil)
	ch := chanName("llm", tenantA, "t")
	exp := time.Now().Add(1500 * time.Millisecond).Truncate(time.Second).Add(time.Second)
	tok := token(t, "u1", tenantA, 0, map[string]any{"exp": exp.Unix()})
	s := open(t, e.eventsURL(url.Values{"channel": {ch}, "access_token": {tok}}), nil)
	s.expect("stream-open")
	ev := s.next(5 * time.Second)
	at := time.Now()
	if ev.Type != "stream-error" || ev.Data != `{"condition":"token-expired","text":"the credential expired; reconnect with a fresh one"}` {
		t.Fatalf("got %s %s", ev.Type, ev.Data)
	}
	if at.Before(exp) || at.After(exp.Add(time.Second)) {
		t.Fatalf("token-expired at %v, expiry %v", at, exp)
	}
	s.ended(2 * time.Second)
}

func TestSlowConsumerDoesNotDelayOthers(t *testing.T) {
	e := newEnv(t, func(c *server.Config) {
		c.QueueSize = 32
		c.WriteTimeout = 5 * time.Second
	})
	ch := chanName("llm", tenantA, "fanout")
	q := url.Values{"channel": {ch}}
	tok := token(t, "u1", tenantA, time.Hour, nil)

	// The stalled reader sends its request over a small receive buffer and
	// never reads a byte.
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(conn, "GET /events?%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", q.Encode(), tok)
	eventually(t, 5*time.Second, "the stalled stream opens", func() bool { return e.gw.OpenStreams() == 1 })

	fast := open(t, e.eventsURL(q), bearer(tok))
	fast.expect("stream-open")

	big := strings.Repeat("x", 16<<10)
	var worst time.Duration
	for i := range 600 {
		sent := time.Now()
		e.mustPublish(ch, "llm.token", map[string]any{"i": i, "pad": big})
		ev := fast.expect("llm.token")
		_ = ev
		if d := time.Since(sent); d > worst {
			worst = d
		}
	}
	// Were fan-out synchronous, the fast reader would wait for the stalled
	// one's write timeout (5 s). It must not.
	if worst > time.Second {
		t.Fatalf("fast reader delayed %v by a stalled one", worst)
	}
	t.Logf("worst publish→receive for the fast reader: %v", worst)
	// The stalled stream was cut as a slow consumer; the fast one is open.
	eventually(t, 10*time.Second, "the stalled stream is cut", func() bool { return e.gw.OpenStreams() == 1 })
	// (Reading all it was sent through a 4 KiB window would take minutes:
	// the start is enough.)
	raw := make([]byte, 512)
	_, _ = io.ReadFull(conn, raw)
	if !strings.Contains(string(raw), "event: stream-open") {
		t.Fatalf("stalled connection got no stream")
	}
}
