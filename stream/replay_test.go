package stream

import (
	"context"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/broker/memory"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
	"github.com/sluicehq/sluice/internal/testutil"
)

// TestResumesFromOldCursorHoldLittleMemory: 20 clients that never read
// resume from the start of a 10,000-event history of ~6 KB events (60 MB).
// The replay is written as their sockets take it, a chunk at a time, so
// the server's heap grows by far less than one replay.
func TestResumesFromOldCursorHoldLittleMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes 60 MB")
	}
	b := memory.New(broker.Options{HistorySize: 10000})
	e := newBenchEnv(t, func(c *Config) { c.Broker, c.WriteTimeout = b, time.Minute })
	e.b = b
	ch := channel.MustMake("test", benchTenant, "history")
	first := openLines(t, e, ch)
	got := first.until(t, 5*time.Second, func(l string) bool { return l == "event: stream-open" })
	cursor := strings.TrimPrefix(got[len(got)-2], "id: ")
	first.resp.Body.Close()
	testutil.Eventually(t, 5*time.Second, "the first stream closes", func() bool { return e.s.Open() == 0 })

	data := []byte(`"` + strings.Repeat("h", 6000) + `"`)
	for range 100 {
		burst(t, e, ch, 100, data)
	}
	before := heapInUse()

	for range 20 {
		nc, err := net.Dial("tcp", e.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		_, err = nc.Write([]byte("GET /events?channel=" + ch.String() + " HTTP/1.1\r\nHost: test\r\nLast-Event-ID: " + cursor + "\r\n\r\n"))
		if err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 10*time.Second, "20 streams open", func() bool { return e.s.Open() == 20 })
	var peak uint64
	for range 10 { // while the replays wait on the sockets
		time.Sleep(100 * time.Millisecond)
		peak = max(peak, heapInUse())
	}
	growth := int64(peak) - int64(before)
	t.Logf("heap growth with 20 replays waiting: %.1f MiB", float64(growth)/(1<<20))
	if growth > 40<<20 {
		t.Fatalf("heap grew by %.1f MiB", float64(growth)/(1<<20))
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestReplayInChunksIsComplete: a resume across several chunks, on two
// channels, replays every event exactly once, in order, then goes live.
func TestReplayInChunksIsComplete(t *testing.T) {
	forEachTransport(t, func(t *testing.T, mutate func(*Config)) {
		e := newBenchEnv(t, mutate)
		a := channel.MustMake("test", benchTenant, "chunks-a")
		bch := channel.MustMake("test", benchTenant, "chunks-b")
		first := openLinesFrom(t, e, "", a, bch)
		got := first.until(t, 5*time.Second, func(l string) bool { return l == "event: stream-open" })
		cursor := strings.TrimPrefix(got[len(got)-2], "id: ")
		first.resp.Body.Close()
		publishN(t, e, a, 700)
		publishN(t, e, bch, 300)
		ls := openLinesFrom(t, e, cursor, a, bch)
		var datas []string
		ls.until(t, 10*time.Second, func(l string) bool {
			if d, ok := strings.CutPrefix(l, "data: "); ok && !strings.HasPrefix(d, "{") {
				datas = append(datas, d)
			}
			return len(datas) == 1000
		})
		for k, d := range datas { // channel by channel, each in order
			want := strconv.Itoa(k)
			if k >= 700 {
				want = strconv.Itoa(k - 700)
			}
			if d != want {
				t.Fatalf("replayed event %d carries %s, want %s", k, d, want)
			}
		}
		msg := []event.Message{{Channel: bch, Type: "test.tick", Data: []byte("live")}}
		if _, err := e.b.Publish(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
		got = ls.until(t, 5*time.Second, func(l string) bool { return strings.HasPrefix(l, "data: ") })
		if l := got[len(got)-1]; l != "data: live" {
			t.Fatalf("after the replay: %q", got)
		}
	})
}
