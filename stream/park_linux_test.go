package stream

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/channel"
)

func TestParkedKeepAliveEventsAndDrain(t *testing.T) {
	e := newBenchEnv(t, func(c *Config) { c.KeepAlive = 300 * time.Millisecond })
	ch := channel.MustMake("test", benchTenant, "park")
	ls := openLines(t, e, ch)
	ls.until(t, 5*time.Second, func(l string) bool { return l == "event: stream-open" })
	eventually(t, 5*time.Second, "the stream is parked", func() bool { return e.s.parkedCount() == 1 })

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
		!strings.Contains(got[n-1], CondShuttingDown) {
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
	eventually(t, 5*time.Second, "3 streams parked", func() bool { return e.s.parkedCount() == 3 })
	for _, ls := range streams {
		ls.resp.Body.Close()
	}
	eventually(t, 2*time.Second, "the streams close", func() bool { return e.s.Open() == 0 && e.s.parkedCount() == 0 })
}

func TestParkedBurstOverQueueThenRevokedEnd(t *testing.T) {
	e := newBenchEnv(t, func(c *Config) { c.QueueSize = 4 })
	ch := channel.MustMake("test", benchTenant, "end")
	ls := openLines(t, e, ch)
	ls.until(t, 5*time.Second, func(l string) bool { return l == "event: stream-open" })
	eventually(t, 5*time.Second, "the stream is parked", func() bool { return e.s.parkedCount() == 1 })
	// Within one coalescing window, more events than the queue holds, to a
	// client that reads: they are written at once, not counted against it.
	publishN(t, e, ch, 2)
	publishN(t, e, ch, 10)
	ls.until(t, 5*time.Second, func(l string) bool { return l == "data: 9" })
	if err := e.b.Revoke(context.Background(), broker.Revocation{Tenant: benchTenant}, time.Minute); err != nil {
		t.Fatal(err)
	}
	ls.until(t, 5*time.Second, func(l string) bool { return strings.Contains(l, CondAccessRevoked) })
	if err := ls.end(t); !errors.Is(err, io.EOF) {
		t.Fatalf("body ended with %v", err)
	}
	eventually(t, 2*time.Second, "the stream closes", func() bool { return e.s.Open() == 0 })
}

func TestCloseEndsParkedStreams(t *testing.T) {
	e := newBenchEnv(t)
	ch := channel.MustMake("test", benchTenant, "close")
	ls := openLines(t, e, ch)
	ls.until(t, 5*time.Second, func(l string) bool { return l == "event: stream-open" })
	eventually(t, 5*time.Second, "the stream is parked", func() bool { return e.s.parkedCount() == 1 })
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
