package server_test

// The bytes of a stream: response headers, the opening block, the framing
// of events, compact data and keep-alive comments.

import (
	"encoding/json"
	"net/url"
	"regexp"
	"strings"
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
