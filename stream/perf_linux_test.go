package stream

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
)

// These benchmarks serve real streams over loopback TCP through net/http.
// The clients are raw sockets read by one epoll loop, so that they hold no
// Go memory and no goroutine each: what the heap grows by is the server's.

// clients are raw loopback sockets holding one stream each, drained by a
// single goroutine that counts the SSE blocks each one received.
type clients struct {
	ep     int
	fds    []int
	blocks []atomic.Int64
	last   []byte // per fd: was the previous byte read a '\n'
	stop   chan struct{}
	done   chan struct{}
}

func dialClients(tb testing.TB, addr string, path string, n int) *clients {
	tb.Helper()
	ap, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		tb.Fatal(err)
	}
	cl := &clients{ep: ep, blocks: make([]atomic.Int64, n), last: make([]byte, n), stop: make(chan struct{}), done: make(chan struct{})}
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
	sa := &unix.SockaddrInet4{Port: ap.Port}
	copy(sa.Addr[:], ap.IP.To4())
	for i := range n {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			tb.Fatalf("socket %d: %v", i, err)
		}
		if err := unix.Connect(fd, sa); err != nil {
			tb.Fatalf("connect %d: %v", i, err)
		}
		if _, err := unix.Write(fd, req); err != nil {
			tb.Fatal(err)
		}
		_ = unix.SetNonblock(fd, true)
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)}
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			tb.Fatal(err)
		}
		cl.fds = append(cl.fds, fd)
	}
	go cl.loop()
	tb.Cleanup(cl.close)
	return cl
}

func (cl *clients) loop() {
	defer close(cl.done)
	evs := make([]unix.EpollEvent, 256)
	buf := make([]byte, 64<<10)
	for {
		select {
		case <-cl.stop:
			return
		default:
		}
		n, err := unix.EpollWait(cl.ep, evs, 50)
		if err != nil && err != unix.EINTR {
			return
		}
		for _, e := range evs[:max(n, 0)] {
			i := int(e.Fd)
			for {
				m, err := unix.Read(cl.fds[i], buf)
				if m <= 0 || err != nil {
					break
				}
				k := int64(0)
				prev := cl.last[i]
				for _, c := range buf[:m] {
					if c == '\n' && prev == '\n' {
						k++
					}
					prev = c
				}
				cl.last[i] = prev
				cl.blocks[i].Add(k)
			}
		}
	}
}

func (cl *clients) close() {
	select {
	case <-cl.stop:
		return
	default:
	}
	close(cl.stop)
	<-cl.done
	for _, fd := range cl.fds {
		_ = unix.Close(fd)
	}
	_ = unix.Close(cl.ep)
}

// waitBlocks waits until every client received at least want blocks.
func (cl *clients) waitBlocks(tb testing.TB, want int64) {
	deadline := time.Now().Add(60 * time.Second)
	for i := range cl.blocks {
		for cl.blocks[i].Load() < want {
			if time.Now().After(deadline) {
				tb.Fatalf("client %d got %d blocks, want %d", i, cl.blocks[i].Load(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

func settleOpen(tb testing.TB, s *Server, n int) {
	deadline := time.Now().Add(60 * time.Second)
	for s.Open() < n {
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d streams open", s.Open(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func heapAndStacks() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}

// BenchmarkIdleStreams opens a fixed number of idle streams and reports the server's Go memory per open stream (heap and goroutine stacks,
// after GC). Kernel socket buffers are not Go memory and not counted.
func BenchmarkIdleStreams(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			for b.Loop() {
				e := newBenchEnv(b)
				ch := channel.MustMake("bench", benchTenant, "idle")
				before := heapAndStacks()
				cl := dialClients(b, e.srv.Listener.Addr().String(), "/events?channel="+ch.String(), n)
				settleOpen(b, e.s, n)
				cl.waitBlocks(b, 1) // stream-open arrived everywhere
				time.Sleep(100 * time.Millisecond)
				after := heapAndStacks()
				if path := os.Getenv("SLUICE_IDLE_HEAPPROFILE"); path != "" {
					f, err := os.Create(path)
					if err == nil {
						_ = pprof.WriteHeapProfile(f)
						f.Close()
					}
				}
				b.ReportMetric(float64(int64(after)-int64(before))/float64(n), "B/conn")
				b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
				cl.close()
				e.close() // the next iteration counts no goroutine of this server
			}
		})
	}
}

// BenchmarkFanout publishes one ~45-byte event per op to a channel read by N
// streams, waiting for the clients every 1024 events: ns/delivery is
// the cost of one event reaching one subscriber, end to end over loopback
// (the reading clients included), allocs/delivery the allocations per event
// divided by N (publishing itself allocates the event once).
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			e := newBenchEnv(b)
			ch := channel.MustMake("bench", benchTenant, "fanout")
			cl := dialClients(b, e.srv.Listener.Addr().String(), "/events?channel="+ch.String(), n)
			settleOpen(b, e.s, n)
			cl.waitBlocks(b, 1)
			msg := []event.Message{{Channel: ch, Type: "bench.tick", Data: []byte(`{"seq":1234567,"ts":1763845200123456789}`)}}
			ctx := context.Background()
			const batch = 1024 // events in flight before waiting for the clients (queues hold 4096)
			var sent int64
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := e.b.Publish(ctx, msg); err != nil {
					b.Fatal(err)
				}
				sent++
				if sent%batch == 0 || i == b.N-1 {
					cl.waitBlocks(b, 1+sent)
				}
			}
			b.StopTimer()
			runtime.ReadMemStats(&m1)
			b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(int64(b.N)*int64(n)), "allocs/delivery")
			el := b.Elapsed()
			b.ReportMetric(float64(el.Nanoseconds())/float64(int64(b.N)*int64(n)), "ns/delivery")
			cl.close()
		})
	}
}

// BenchmarkDeliverPath is the Go work of one delivery on a parked stream,
// without the socket: the broker's Deliver (enqueue), then the writer
// appending the shared frame and framing the chunk. Steady state allocates
// nothing; channels=4 assembles the multi-channel cursor per stream.
func BenchmarkDeliverPath(b *testing.B) {
	codec := event.NewCodec([]byte("bench-key"))
	for _, nch := range []int{1, 4} {
		b.Run(fmt.Sprintf("channels=%d", nch), func(b *testing.B) {
			chans := make([]channel.Name, nch)
			pos := make([]event.Position, nch)
			for i := range chans {
				chans[i] = channel.MustMake("bench", benchTenant, fmt.Sprint("c", i))
				pos[i] = event.Position{Epoch: 7}
			}
			s := &Server{cfg: Config{Codec: codec}}
			s.cfg.defaults()
			c := newConn(auth.Principal{}, chans, 1<<20, 1<<30)
			wr := &writer{s: s, c: c, chans: chans, pos: pos}
			if nch > 1 {
				wr.segs = make([]string, nch)
				for i, ch := range chans {
					wr.segs[i] = codec.Segment(ch, pos[i])
				}
			}
			const batch = 4 // events per write, as coalescing gives at 200/s
			evs := make([]*event.Event, 4096)
			for i := range evs {
				evs[i] = &event.Event{Channel: chans[i%nch], Type: "bench.tick", Data: []byte(`{"seq":1234567,"ts":1763845200123456789}`)}
			}
			var buf []byte
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				ev := evs[i%len(evs)]
				ev.Pos = event.Position{Epoch: 7, Offset: uint64(i/nch + 1)} // the channel's next: no duplicate, no gap
				c.Deliver(ev)
				if (i+1)%batch == 0 {
					wr.buf = append(buf[:0], make([]byte, chunkRoom)...)
					wr.appendQueued(c)
					full, _ := frameChunk(wr.buf, false)
					buf = full[:0]
				}
			}
		})
	}
}
