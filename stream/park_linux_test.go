package stream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
	"github.com/sluicehq/sluice/internal/testutil"
)

func TestParkedKeepAliveEventsAndDrain(t *testing.T) {
	e := newBenchEnv(t, func(c *Config) { c.KeepAlive = 300 * time.Millisecond })
	ch := channel.MustMake("test", benchTenant, "park")
	ls := openLines(t, e, ch)
	ls.until(t, 5*time.Second, func(l string) bool { return l == "event: stream-open" })
	testutil.Eventually(t, 5*time.Second, "the stream is parked", func() bool { return e.s.parkedCount() == 1 })

	ls.until(t, 2*time.Second, func(l string) bool { return l == ": keep-alive" })
	publishN(t, e, ch, 300) // faster than the coalescing window: shared writes
	var datas []string
	ls.until(t, 5*time.Second, func(l string) bool {
		if d, ok := strings.CutPrefix(l, "data: "); ok {
			datas = append(datas, d)
		}
		return len(datas) == 300
	})
	for i, d := range datas {
		if d != strconv.Itoa(i) {
			t.Fatalf("event %d carries %s: order or loss", i, d)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.s.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	got := ls.until(t, time.Second, func(l string) bool { return strings.HasPrefix(l, "data: {\"condition\"") })
	// The retry hint, as the goroutine path writes it, then the final event.
	if n := len(got); n < 4 || !strings.HasPrefix(got[n-4], "retry: ") || got[n-2] != "event: stream-error" ||
		!strings.Contains(got[n-1], string(event.EndShuttingDown)) {
		t.Fatalf("drain wrote %q", got)
	}
	if err := ls.end(t); !errors.Is(err, io.EOF) {
		t.Fatalf("body ended with %v, want a clean end of the chunked response", err)
	}
	if e.s.Open() != 0 || e.s.parkedCount() != 0 {
		t.Fatalf("after the drain: %d open, %d parked", e.s.Open(), e.s.parkedCount())
	}
}

func TestParkedClientGone(t *testing.T) {
	e := newBenchEnv(t)
	ch := channel.MustMake("test", benchTenant, "gone")
	var streams []*lineStream
	for range 3 {
		ls := openLines(t, e, ch)
		ls.until(t, 5*time.Second, func(l string) bool { return l == "event: stream-open" })
		streams = append(streams, ls)
	}
	testutil.Eventually(t, 5*time.Second, "3 streams parked", func() bool { return e.s.parkedCount() == 3 })
	for _, ls := range streams {
		ls.resp.Body.Close()
	}
	testutil.Eventually(t, 2*time.Second, "the streams close", func() bool { return e.s.Open() == 0 && e.s.parkedCount() == 0 })
}

func TestParkedBurstOverQueueThenRevokedEnd(t *testing.T) {
	e := newBenchEnv(t, func(c *Config) { c.QueueSize = 4 })
	ch := channel.MustMake("test", benchTenant, "end")
	ls := openLines(t, e, ch)
	ls.until(t, 5*time.Second, func(l string) bool { return l == "event: stream-open" })
	testutil.Eventually(t, 5*time.Second, "the stream is parked", func() bool { return e.s.parkedCount() == 1 })
	// Within one coalescing window, more events than the queue holds, to a
	// client that reads: they are written at once, not counted against it.
	publishN(t, e, ch, 2)
	publishN(t, e, ch, 10)
	ls.until(t, 5*time.Second, func(l string) bool { return l == "data: 9" })
	if err := e.b.Revoke(context.Background(), broker.Revocation{Tenant: benchTenant}, time.Minute); err != nil {
		t.Fatal(err)
	}
	ls.until(t, 5*time.Second, func(l string) bool { return strings.Contains(l, string(event.EndAccessRevoked)) })
	if err := ls.end(t); !errors.Is(err, io.EOF) {
		t.Fatalf("body ended with %v", err)
	}
	testutil.Eventually(t, 2*time.Second, "the stream closes", func() bool { return e.s.Open() == 0 })
}

func TestCloseEndsParkedStreams(t *testing.T) {
	e := newBenchEnv(t)
	ch := channel.MustMake("test", benchTenant, "close")
	ls := openLines(t, e, ch)
	ls.until(t, 5*time.Second, func(l string) bool { return l == "event: stream-open" })
	testutil.Eventually(t, 5*time.Second, "the stream is parked", func() bool { return e.s.parkedCount() == 1 })
	e.s.Close()
	_ = ls.end(t)
	if e.s.Open() != 0 {
		t.Fatalf("%d streams open after Close", e.s.Open())
	}

	// A stream opened after Close keeps its goroutine, and works.
	late := openLines(t, e, ch)
	late.until(t, 5*time.Second, func(l string) bool { return l == "event: stream-open" })
	publishN(t, e, ch, 1)
	late.until(t, 5*time.Second, func(l string) bool { return l == "data: 0" })
	if n := e.s.parkedCount(); n != 0 {
		t.Fatalf("%d streams parked after Close", n)
	}
}

// onlyParked returns the one parked stream of e.
func onlyParked(t *testing.T, e *benchEnv) *parked {
	t.Helper()
	var p *parked
	testutil.Eventually(t, 5*time.Second, "one stream parked", func() bool { return e.s.parkedCount() == 1 })
	pl := e.s.pl.Load()
	for i := range pl.table {
		sh := &pl.table[i]
		sh.mu.Lock()
		for _, q := range sh.m {
			p = q
		}
		sh.mu.Unlock()
	}
	return p
}

func (p *parked) isClosed() bool {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	return p.closed
}

func (p *parked) isBlocked() bool {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	return p.blocked
}

// fillUntilBlocked publishes 32 KiB events to ch until p's socket is full
// (a short write left bytes over) and returns how many it published.
func fillUntilBlocked(t *testing.T, e *benchEnv, ch channel.Name, p *parked) int {
	t.Helper()
	big := []byte(`"` + strings.Repeat("b", 32<<10) + `"`)
	for n := 1; ; n++ {
		if n > 1000 || p.isClosed() {
			t.Fatalf("the socket never filled (%d events)", n)
		}
		burst(t, e, ch, 1, big)
		if n%16 != 0 {
			continue // a few at a time: the kernel takes megabytes
		}
		deadline := time.Now().Add(200 * time.Millisecond)
		for time.Now().Before(deadline) {
			if p.isBlocked() {
				return n
			}
			p.c.mu.Lock()
			idle := len(p.c.q) == 0 && !p.queued
			p.c.mu.Unlock()
			if idle {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// readEvents reads the stream's response on nc and sends each event's
// type (and the condition of a stream-error) on the returned channel,
// closed at the end of the body.
func readEvents(t *testing.T, nc net.Conn) <-chan string {
	t.Helper()
	_ = nc.(*net.TCPConn).SetReadBuffer(4 << 20) // from a small one: read at full speed
	out := make(chan string, 1<<16)
	go func() {
		defer close(out)
		resp, err := http.ReadResponse(bufio.NewReaderSize(nc, 64<<10), nil)
		if err != nil {
			return
		}
		r := bufio.NewReaderSize(resp.Body, 64<<10)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch {
			case strings.HasPrefix(l, "event: "):
				out <- strings.TrimSpace(strings.TrimPrefix(l, "event: "))
			case strings.HasPrefix(l, `data: {"condition"`):
				out <- l
			}
		}
	}()
	return out
}

// TestParkedShortWriteDrains: a client that stops reading fills its
// socket (short write, EPOLLOUT asked for); when it reads again, the
// stream catches up with every event, in order, and goes on.
func TestParkedShortWriteDrains(t *testing.T) {
	e := newBenchEnv(t, func(c *Config) { c.WriteTimeout, c.MaxPendingBytes = 20*time.Second, 1<<30 })
	ch := channel.MustMake("test", benchTenant, "short")
	nc := dialStream(t, e, ch, 0)
	p := onlyParked(t, e)
	n := fillUntilBlocked(t, e, ch, p)
	evs := readEvents(t, nc)
	got := 0
	timeout := time.After(20 * time.Second)
	for got < n {
		select {
		case ev, ok := <-evs:
			if !ok {
				t.Fatalf("stream ended after %d of %d events", got, n)
			}
			if ev == "test.tick" {
				got++
			} else if ev != event.TypeOpen {
				t.Fatalf("got %q", ev)
			}
		case <-timeout:
			t.Fatalf("%d of %d events", got, n)
		}
	}
	testutil.Eventually(t, 5*time.Second, "unblocked", func() bool { return !p.isBlocked() })
	burst(t, e, ch, 1, []byte("1"))
	if ev := <-evs; ev != "test.tick" {
		t.Fatalf("after catching up: %q", ev)
	}
}

// TestParkedClientInput: what a client sends after its request is read and
// dropped; the stream goes on. A client that sends without end is gone.
func TestParkedClientInput(t *testing.T) {
	m := &closeReasons{}
	e := newBenchEnv(t, func(c *Config) { c.Metrics = m })
	ch := channel.MustMake("test", benchTenant, "input")
	nc := dialStream(t, e, ch, 0)
	evs := readEvents(t, nc)
	if ev := <-evs; ev != event.TypeOpen {
		t.Fatalf("got %q", ev)
	}
	onlyParked(t, e)
	if _, err := nc.Write([]byte("hello\r\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let the poller see the input
	burst(t, e, ch, 1, []byte("1"))
	if ev := <-evs; ev != "test.tick" {
		t.Fatalf("after input: %q", ev)
	}
	junk := make([]byte, 256<<10)
	_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = nc.Write(junk)
	testutil.Eventually(t, 5*time.Second, "the flooding client is dropped", func() bool { return e.s.Open() == 0 })
	if m.count("client-gone") != 1 {
		t.Fatalf("closed as %v", m.m)
	}
}

// TestParkedExpiryWhileFull: a credential that expires while the client's
// socket is full ends the stream within a second after the expiry, though
// the final event cannot be written.
func TestParkedExpiryWhileFull(t *testing.T) {
	a := &expiringAuth{}
	m := &closeReasons{}
	e := newBenchEnv(t, func(c *Config) { c.Auth, c.Metrics, c.WriteTimeout, c.MaxPendingBytes = a, m, time.Minute, 1<<30 })
	exp := time.Now().Add(6 * time.Second)
	a.exp.Store(exp.UnixNano())
	ch := channel.MustMake("test", benchTenant, "expfull")
	dialStream(t, e, ch, 0)
	p := onlyParked(t, e)
	fillUntilBlocked(t, e, ch, p)
	if time.Now().After(exp) {
		t.Skip("the socket took too long to fill")
	}
	testutil.Eventually(t, time.Until(exp)+1500*time.Millisecond, "the stream ends", func() bool { return e.s.Open() == 0 })
	if now := time.Now(); now.Before(exp) {
		t.Fatalf("ended at %v, before the expiry %v", now, exp)
	}
	if m.count(event.EndTokenExpired) != 1 {
		t.Fatalf("closed as %v", m.m)
	}
}

// TestParkedStallCatchesUp: a socket full for less than WriteTimeout is
// not cut; once the client reads, the stream goes on.
func TestParkedStallCatchesUp(t *testing.T) {
	m := &closeReasons{}
	e := newBenchEnv(t, func(c *Config) { c.Metrics, c.WriteTimeout, c.MaxPendingBytes = m, 2*time.Second, 1<<30 })
	ch := channel.MustMake("test", benchTenant, "stall")
	nc := dialStream(t, e, ch, 0)
	p := onlyParked(t, e)
	n := fillUntilBlocked(t, e, ch, p)
	time.Sleep(time.Second) // half the write timeout
	evs := readEvents(t, nc)
	for got := 0; got < n; {
		ev, ok := <-evs
		if !ok {
			t.Fatalf("stream ended after %d of %d events: %v", got, n, m.m)
		}
		if ev == "test.tick" {
			got++
		}
	}
	time.Sleep(2 * time.Second) // past the write timeout from the stall
	burst(t, e, ch, 1, []byte("1"))
	if ev := <-evs; ev != "test.tick" {
		t.Fatalf("after catching up: %q", ev)
	}
	if e.s.Open() != 1 {
		t.Fatalf("closed as %v", m.m)
	}
}

// TestParkedClientGoneMidWrite: a client that goes away while its socket
// is full is noticed at once, not after WriteTimeout.
func TestParkedClientGoneMidWrite(t *testing.T) {
	m := &closeReasons{}
	e := newBenchEnv(t, func(c *Config) { c.Metrics, c.WriteTimeout, c.MaxPendingBytes = m, time.Minute, 1<<30 })
	ch := channel.MustMake("test", benchTenant, "gonefull")
	nc := dialStream(t, e, ch, 0)
	p := onlyParked(t, e)
	fillUntilBlocked(t, e, ch, p)
	nc.Close()
	testutil.Eventually(t, 3*time.Second, "the stream closes", func() bool { return e.s.Open() == 0 })
	if m.count("client-gone") != 1 {
		t.Fatalf("closed as %v", m.m)
	}
}

// upperWriter stands for a middleware that re-encodes the body.
type upperWriter struct{ http.ResponseWriter }

func (w upperWriter) Write(b []byte) (int, error) {
	return w.ResponseWriter.Write(bytes.ToUpper(b))
}
func (w upperWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// TestWrappedWriterIsNotParked: a stream whose response writer is a
// wrapper keeps its goroutine, so that what it writes still goes through
// the wrapper.
func TestWrappedWriterIsNotParked(t *testing.T) {
	e := newBenchEnv(t)
	h := e.s.Handler(QueryChannels)
	e.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(upperWriter{w}, r)
	})
	ch := channel.MustMake("test", benchTenant, "wrapped")
	ls := openLines(t, e, ch)
	ls.until(t, 5*time.Second, func(l string) bool { return l == "EVENT: STREAM-OPEN" })
	publishN(t, e, ch, 1)
	ls.until(t, 5*time.Second, func(l string) bool { return l == "EVENT: TEST.TICK" })
	if n := e.s.parkedCount(); n != 0 {
		t.Fatalf("%d streams parked behind a wrapper", n)
	}
}
