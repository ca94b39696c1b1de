package server_test

// How an open stream ends: shutting-down when the server drains,
// token-expired at its credential's expiry, slow-consumer for a reader that
// stalls (without delaying the others).

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/server"
)

func TestDrain(t *testing.T) {
	e := newEnv(t, func(c *server.Config) {
		c.Retry = time.Second
		c.DrainSpread = 3 * time.Second
	})
	ch := chanName("doc", tenantA, "drain")
	q := url.Values{"channel": {ch}}
	tok := token(t, "u1", tenantA, time.Hour, nil)
	s := open(t, e.eventsURL(q), bearer(tok))
	s.expect("stream-open")
	e.mustPublish(ch, "doc.updated", "before")

	done := make(chan error, 1)
	go func() { done <- e.gw.Shutdown(context.Background()) }()
	s.expect("doc.updated")
	ev := s.expect("stream-error")
	if ev.Data != `{"condition":"shutting-down","text":"the server is shutting down; reconnect"}` {
		t.Fatalf("data %s", ev.Data)
	}
	s.ended(2 * time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	resp, _ := http.Get(e.srv.URL + "/readyz")
	if resp.StatusCode != 503 || problemOf(t, resp)["code"] != "draining" {
		t.Fatalf("readyz during the drain: %d", resp.StatusCode)
	}
	// A new stream during the drain: 200, a spread retry, shutting-down.
	resp2, raw := rawPrefix(t, e.eventsURL(q), bearer(tok), "shutting-down")
	if resp2.StatusCode != 200 || !strings.HasPrefix(raw, "retry: ") {
		t.Fatalf("%d %q", resp2.StatusCode, raw)
	}
	ms, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(strings.SplitN(raw, "\n", 2)[0], "retry: ")))
	if ms < 1000 || ms > 3000 {
		t.Fatalf("retry %d ms outside [SLUICE_RETRY, SLUICE_DRAIN_SPREAD]", ms)
	}
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
	_, _ = io.WriteString(conn, rawStreamRequest(q, tok))
	testutil.Eventually(t, 5*time.Second, "the stalled stream opens", func() bool { return e.gw.OpenStreams() == 1 })

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
	testutil.Eventually(t, 10*time.Second, "the stalled stream is cut", func() bool { return e.gw.OpenStreams() == 1 })
	// (Reading all it was sent through a 4 KiB window would take minutes:
	// the start is enough.)
	readOpening(t, conn, 10*time.Second)
}
