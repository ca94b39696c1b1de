package stream

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/metrics"
)

// closeReasons records why streams closed.
type closeReasons struct {
	metrics.Nop
	mu sync.Mutex
	m  map[event.EndReason]int
}

func (r *closeReasons) StreamClosed(reason event.EndReason, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[event.EndReason]int{}
	}
	r.m[reason]++
}

func (r *closeReasons) count(reason event.EndReason) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[reason]
}

// promptReader reads a stream as fast as it comes and counts its events.
type promptReader struct {
	events atomic.Int64
	cut    atomic.Value // string: the stream-error data, once seen
	done   chan struct{}
}

func readPromptly(t *testing.T, e *benchEnv, ch channel.Name) *promptReader {
	t.Helper()
	ls := openLines(t, e, ch)
	ls.until(t, 5*time.Second, func(l string) bool { return l == "event: stream-open" })
	pr := &promptReader{done: make(chan struct{})}
	go func() {
		defer close(pr.done)
		errNext := false
		for l := range ls.lines {
			switch {
			case l == "event: stream-error":
				errNext = true
			case errNext && strings.HasPrefix(l, "data: "):
				pr.cut.Store(l)
				errNext = false
			case l == "event: test.tick":
				pr.events.Add(1)
			}
		}
	}()
	return pr
}

// neverRead opens a stream on a raw connection that is never read.
func neverRead(t *testing.T, e *benchEnv, ch channel.Name) {
	t.Helper()
	nc, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if _, err := nc.Write([]byte("GET /events?channel=" + ch.String() + " HTTP/1.1\r\nHost: test\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
}

func burst(t *testing.T, e *benchEnv, ch channel.Name, n int, data []byte) {
	t.Helper()
	msgs := make([]event.Message, n)
	for i := range msgs {
		msgs[i] = event.Message{Channel: ch, Type: "test.tick", Data: data}
	}
	if _, err := e.b.Publish(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
}

// TestBurstCutsOnlyTheClientThatDoesNotRead: ten prompt readers and one
// that never reads; two batches of 1,000 events back to back, default
// queue size and coalescing, parked streams. The prompt readers get every
// event; the one that does not read is cut as a slow consumer, although
// the kernel's socket buffers took the whole burst. (A stream on a
// goroutine of its own is cut only once a write to it blocks: see
// TestBehaviour's slow-consumer case.)
func TestBurstCutsOnlyTheClientThatDoesNotRead(t *testing.T) {
	// ~0.5 KB events (the burst: ~1 MB), and ~30-byte ones (~200 KB,
	// less than the kernel's buffers on loopback hold).
	for _, size := range []int{400, 10} {
		t.Run(fmt.Sprintf("data=%dB", size), func(t *testing.T) {
			m := &closeReasons{}
			e := newBenchEnv(t, func(c *Config) { c.QueueSize = 0; c.Metrics = m })
			ch := channel.MustMake("test", benchTenant, "burst")
			var readers []*promptReader
			for range 10 {
				readers = append(readers, readPromptly(t, e, ch))
			}
			neverRead(t, e, ch)
			testutil.Eventually(t, 5*time.Second, "11 streams open", func() bool { return e.s.Open() == 11 })
			data := []byte(`{"text":"` + strings.Repeat("x", size) + `"}`)
			burst(t, e, ch, 1000, data)
			burst(t, e, ch, 1000, data)
			testutil.Eventually(t, 20*time.Second, "every prompt reader got 2,000 events or was cut", func() bool {
				for _, r := range readers {
					if r.events.Load() < 2000 && r.cut.Load() == nil {
						return false
					}
				}
				return true
			})
			for i, r := range readers {
				if c := r.cut.Load(); c != nil {
					t.Errorf("prompt reader %d cut after %d events: %s", i, r.events.Load(), c)
				}
			}
			testutil.Eventually(t, 20*time.Second, "the reader that never reads is cut as a slow consumer", func() bool {
				return m.count(event.EndSlowConsumer) == 1
			})
		})
	}
}

// TestSmallQueuePromptReadersNeverCut: queue size 64, 5,000 ~1 KB events
// published one by one; five prompt readers get them all.
func TestSmallQueuePromptReadersNeverCut(t *testing.T) {
	forEachTransport(t, func(t *testing.T, mutate func(*Config)) {
		e := newBenchEnv(t, mutate, func(c *Config) { c.QueueSize = 64 })
		ch := channel.MustMake("test", benchTenant, "small-queue")
		var readers []*promptReader
		for range 5 {
			readers = append(readers, readPromptly(t, e, ch))
		}
		data := []byte(`{"text":"` + strings.Repeat("y", 1000) + `"}`)
		for range 5000 {
			burst(t, e, ch, 1, data)
		}
		testutil.Eventually(t, 20*time.Second, "every reader got 5,000 events or was cut", func() bool {
			for _, r := range readers {
				if r.events.Load() < 5000 && r.cut.Load() == nil {
					return false
				}
			}
			return true
		})
		for i, r := range readers {
			if c := r.cut.Load(); c != nil {
				t.Errorf("prompt reader %d cut after %d events: %s", i, r.events.Load(), c)
			}
		}
	})
}
