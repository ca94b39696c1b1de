package server_test

// Security, exhaustion through HTTP: size limits, stream caps, the rate of
// new streams and slow-loris request heads. docs/security.md maps each
// threat to the test that proves its defence.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/server"
)

// TestSecurityLimitsThroughHTTP checks every connection and size limit over
// real HTTP: each refusal is a problem+json body with its code.
func TestSecurityLimitsThroughHTTP(t *testing.T) {
	ch := chanName("doc", tenantA, "l")
	q := url.Values{"channel": {ch}}

	t.Run("streams per user", func(t *testing.T) {
		e := newEnv(t, func(c *server.Config) { c.MaxStreamsPerUser = 2 })
		tok := token(t, "u1", tenantA, time.Hour, nil)
		s1 := open(t, e.eventsURL(q), bearer(tok))
		open(t, e.eventsURL(q), bearer(tok))
		refused(t, e.eventsURL(q), bearer(tok), 429, "too_many_streams")
		// The same user through a query token or ticket counts the same.
		refused(t, e.eventsURL(url.Values{"channel": {ch}, "access_token": {tok}}), nil, 429, "too_many_streams")
		open(t, e.eventsURL(q), bearer(token(t, "u2", tenantA, time.Hour, nil)))
		open(t, e.eventsURL(url.Values{"channel": {chanName("doc", tenantB, "l")}}), bearer(token(t, "u1", tenantB, time.Hour, nil)))
		s1.close()
		testutil.Eventually(t, 2*time.Second, "a closed stream frees its slot", func() bool {
			s, _ := tryOpen(t, e.eventsURL(q), bearer(tok))
			return s != nil
		})
	})
	t.Run("streams per tenant", func(t *testing.T) {
		e := newEnv(t, func(c *server.Config) { c.MaxStreamsPerTenant = 3 })
		for i := range 3 {
			open(t, e.eventsURL(q), bearer(token(t, fmt.Sprint("u", i), tenantA, time.Hour, nil)))
		}
		refused(t, e.eventsURL(q), bearer(token(t, "u9", tenantA, time.Hour, nil)), 429, "too_many_streams")
		open(t, e.eventsURL(url.Values{"channel": {chanName("doc", tenantB, "l")}}), bearer(token(t, "u9", tenantB, time.Hour, nil)))
	})
	t.Run("new streams per address", func(t *testing.T) {
		e := newEnv(t, func(c *server.Config) { c.ConnRate = 0.5; c.ConnBurst = 2 })
		tok := token(t, "u1", tenantA, time.Hour, nil)
		for range 2 {
			open(t, e.eventsURL(q), bearer(tok)).close()
		}
		s, resp := tryOpen(t, e.eventsURL(q), bearer(tok))
		if s != nil || resp.StatusCode != 429 {
			t.Fatalf("third open within the burst: %v", resp.Status)
		}
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			if n, err := strconv.Atoi(ra); err != nil || n < 1 || n > 2 {
				t.Fatalf("Retry-After %q, want 1 or 2 s at 0.5/s", ra)
			}
		}
		p := problemOf(t, resp)
		if p["code"] != "rate_limited" || !strings.Contains(p["detail"].(string), "retry in") {
			t.Fatalf("problem %v", p)
		}
	})
	t.Run("oversized headers", func(t *testing.T) {
		e := newEnv(t, nil) // 16 KiB
		h := bearer(token(t, "u1", tenantA, time.Hour, nil))
		h.Set("X-Pad", strings.Repeat("p", 16<<10))
		refused(t, e.eventsURL(q), h, 431, "headers_too_large")
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/publish", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+testPublishKey)
		req.Header.Set("X-Pad", strings.Repeat("p", 16<<10))
		resp := must(http.DefaultClient.Do(req))
		if resp.StatusCode != 431 || problemOf(t, resp)["code"] != "headers_too_large" {
			t.Fatalf("publish with oversized headers: %d", resp.StatusCode)
		}
	})
	t.Run("long URL", func(t *testing.T) {
		e := newEnv(t, nil) // 8 KiB
		long := url.Values{"channel": {ch}, "pad": {strings.Repeat("u", 8<<10)}}
		refused(t, e.eventsURL(long), bearer(token(t, "u1", tenantA, time.Hour, nil)), 414, "uri_too_long")
	})
	t.Run("oversized publish body", func(t *testing.T) {
		e := newEnv(t, func(c *server.Config) { c.MaxBodyBytes = 4096; c.MaxEventBytes = 1024 })
		st, reply := e.publish(map[string]any{"channel": ch, "event": "doc.updated", "data": strings.Repeat("b", 5000)})
		if st != 413 || reply["code"] != "body_too_large" {
			t.Fatalf("%d %v", st, reply)
		}
		st, reply = e.publish(map[string]any{"channel": ch, "event": "doc.updated", "data": strings.Repeat("b", 1100)})
		if st != 413 || reply["code"] != "event_too_large" {
			t.Fatalf("%d %v", st, reply)
		}
	})
	t.Run("connection flood", func(t *testing.T) {
		e := newEnv(t, nil) // 50/s, burst 100
		tok := token(t, "u1", tenantA, time.Hour, nil)
		held := open(t, e.eventsURL(q), bearer(tok))
		held.expect("stream-open")

		const flood, workers = 500, 25
		// Each flooder is its own user, so only the address limit applies.
		toks := make([]string, flood+workers+1)
		for i := range toks {
			toks[i] = token(t, fmt.Sprint("flood-", i), tenantA, time.Hour, nil)
		}
		var ok200, ok429, other atomic.Int64
		var wg sync.WaitGroup
		next := atomic.Int64{}
		start := time.Now()
		for range workers {
			wg.Go(func() {
				for i := next.Add(1); i <= flood; i = next.Add(1) {
					s, resp := tryOpen(t, e.eventsURL(q), bearer(toks[i]))
					switch {
					case s != nil:
						ok200.Add(1)
						s.close()
					case resp.StatusCode == 429:
						ok429.Add(1)
						resp.Body.Close()
					default:
						other.Add(1)
					}
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		allowed := int64(100 + 50*elapsed.Seconds() + 1)
		t.Logf("flood of %d opens in %v: %d admitted, %d refused", flood, elapsed, ok200.Load(), ok429.Load())
		if other.Load() != 0 || ok200.Load() > allowed || ok429.Load() < flood-allowed {
			t.Fatalf("%d admitted (allowed %d), %d refused, %d other", ok200.Load(), allowed, ok429.Load(), other.Load())
		}
		e.mustPublish(ch, "doc.updated", "after the flood")
		if ev := held.expect("doc.updated"); ev.Data != `"after the flood"` {
			t.Fatalf("held stream got %s", ev.Data)
		}
		testutil.Eventually(t, 5*time.Second, "flood streams closed", func() bool { return e.gw.OpenStreams() == 1 })
	})
}

// TestSecuritySlowLoris trickles request headers one line at a time, slower
// than any real client: the server built by sluice.NewHTTPServer drops the
// connection once its ReadHeaderTimeout (10 s) has passed, however steadily
// the bytes come. It takes those 10 s, so it runs in parallel and not with
// -short.
func TestSecuritySlowLoris(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the 10 s ReadHeaderTimeout")
	}
	t.Parallel()
	cfg := server.DefaultConfig()
	cfg.JWTSecret = testSecret
	cfg.LogLevel = "error"
	gw, err := server.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	srv := sluice.NewHTTPServer(gw.Handler())
	if srv.ReadHeaderTimeout <= 0 || srv.ReadHeaderTimeout > 30*time.Second {
		t.Fatalf("ReadHeaderTimeout %v", srv.ReadHeaderTimeout)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.WriteString(c, "GET /events?channel="+chanName("doc", tenantA, "sl")+" HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			if _, err := fmt.Fprintf(c, "X-Slow-%d: %d\r\n", i, i); err != nil {
				return
			}
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(srv.ReadHeaderTimeout + 5*time.Second))
	b, err := io.ReadAll(c)
	d := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", d)
	}
	if d < srv.ReadHeaderTimeout-time.Second || d > srv.ReadHeaderTimeout+3*time.Second {
		t.Fatalf("dropped after %v, ReadHeaderTimeout %v", d, srv.ReadHeaderTimeout)
	}
	if len(b) > 0 && !strings.HasPrefix(string(b), "HTTP/1.1 4") {
		t.Fatalf("answer to an unfinished request: %q", b)
	}
	t.Logf("dropped after %v (%d bytes answered)", d.Round(time.Millisecond), len(b))
}
