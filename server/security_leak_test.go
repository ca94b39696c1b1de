package server_test

// Security, resource leaks: every way a stream ends leaves no goroutine
// behind. docs/security.md maps each threat to the test that proves its
// defence.

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/server"
)

// TestSecurityNoGoroutineLeak opens and ends many streams in every way a
// stream ends — client close, client cancel mid-stream, token expiry, a slow
// consumer cut off, a revocation, refusals — and checks that the number of
// goroutines returns to its baseline.
func TestSecurityNoGoroutineLeak(t *testing.T) {
	e := newEnv(t, func(c *server.Config) {
		c.QueueSize = 16
		c.WriteTimeout = 300 * time.Millisecond
		c.KeepAlive = 100 * time.Millisecond
	})
	ch := chanName("doc", tenantA, "leak")
	q := url.Values{"channel": {ch}}
	tok := token(t, "u1", tenantA, time.Hour, nil)

	settle := func() int {
		http.DefaultClient.CloseIdleConnections()
		n, stable := runtime.NumGoroutine(), 0
		for stable < 10 {
			time.Sleep(10 * time.Millisecond)
			m := runtime.NumGoroutine()
			if m == n {
				stable++
			} else {
				n, stable = m, 0
			}
		}
		return n
	}
	// Warm up: whatever starts lazily (broker janitor, transport) starts now.
	w := open(t, e.eventsURL(q), bearer(tok))
	w.expect("stream-open")
	e.mustPublish(ch, "doc.updated", 0)
	w.expect("doc.updated")
	w.close()
	testutil.Eventually(t, 2*time.Second, "warm-up stream closed", func() bool { return e.gw.OpenStreams() == 0 })
	base := settle()

	var streams []*stream
	// Client closes after reading; client cancels while events flow.
	for i := range 40 {
		s := open(t, e.eventsURL(q), bearer(tok))
		s.expect("stream-open")
		streams = append(streams, s)
		if i%2 == 0 {
			s.close()
		}
	}
	for i := range 20 {
		e.mustPublish(ch, "doc.updated", i)
	}
	for _, s := range streams {
		s.cancel()
	}
	// Token expiry, and a revocation, on a quiet channel.
	quiet := chanName("doc", tenantA, "quiet")
	exp := time.Now().Add(1500 * time.Millisecond).Truncate(time.Second).Add(time.Second)
	var expiring []*stream
	for range 5 {
		s := open(t, e.eventsURL(url.Values{"channel": {quiet}, "access_token": {token(t, "u1", tenantA, 0, map[string]any{"exp": exp.Unix()})}}), nil)
		s.expect("stream-open")
		expiring = append(expiring, s)
	}
	revTok := token(t, "u2", tenantA, time.Hour, nil)
	rev := open(t, e.eventsURL(url.Values{"channel": {quiet}}), bearer(revTok))
	rev.expect("stream-open")
	// Refusals.
	for range 10 {
		refused(t, e.eventsURL(q), bearer("nope"), 401, "invalid_token")
		refused(t, e.eventsURL(url.Values{"channel": {chanName("doc", tenantB, "x")}}), bearer(tok), 403, "foreign_tenant")
	}
	// Slow consumers: raw connections that never read.
	var raws []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", e.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).SetReadBuffer(4096)
		_, _ = io.WriteString(c, rawStreamRequest(q, tok))
		raws = append(raws, c)
	}
	testutil.Eventually(t, 5*time.Second, "slow consumers open", func() bool { return e.gw.OpenStreams() >= 3+5+1 })
	// Batches of 100 overflow a queue of 16 at once, and 12 MiB is more
	// than the kernel's send buffer holds for a reader that never reads.
	big := strings.Repeat("x", 16<<10)
	for b := range 8 {
		var batch []map[string]any
		for i := range 100 {
			batch = append(batch, map[string]any{"channel": ch, "event": "doc.updated", "data": map[string]any{"i": b*100 + i, "pad": big}})
		}
		if st, reply := e.publish(map[string]any{"events": batch}); st != http.StatusOK {
			t.Fatalf("publish: %d %v", st, reply)
		}
	}
	if st, _ := postRevoke(t, e, testPublishKey, map[string]string{"tenant": tenantA, "user": "u2"}); st != 200 {
		t.Fatal("revoke")
	}
	if c := rev.streamError(2 * time.Second); c != "access-revoked" {
		t.Fatalf("revoked stream: %q", c)
	}
	for _, s := range expiring {
		if c := s.streamError(5 * time.Second); c != "token-expired" {
			t.Fatalf("expiring stream: %q", c)
		}
	}
	testutil.Eventually(t, 10*time.Second, "every stream ended", func() bool { return e.gw.OpenStreams() == 0 })
	for _, c := range raws {
		c.Close()
	}
	for _, s := range append(append(streams, expiring...), rev) {
		s.close()
		<-s.done
	}

	deadline := time.Now().Add(10 * time.Second)
	n := settle()
	for n > base && time.Now().Before(deadline) {
		n = settle()
	}
	if n > base {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("%d goroutines, baseline %d:\n%s", n, base, buf)
	}
	t.Logf("goroutines back to %d (baseline %d)", n, base)
}
