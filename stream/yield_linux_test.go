package stream

import (
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// TestYieldPollsNetwork checks that a goroutine busy calling maybe lets a
// goroutine waiting on a socket run, even with one P: without the yield,
// nothing would preempt the busy loop within these few iterations.
func TestYieldPollsNetwork(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	y, err := newYielder(yieldEvery)
	if err != nil {
		t.Fatal(err)
	}
	defer y.close()
	client, server := tcpPair(t)

	read := make(chan struct{}, 1)
	parked := make(chan struct{})
	go func() {
		var buf [1]byte
		close(parked)
		if _, err := server.Read(buf[:]); err == nil {
			read <- struct{}{}
		}
	}()
	<-parked
	runtime.Gosched() // let the reader block in the netpoller
	if _, err := client.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		select {
		case <-read:
			t.Logf("reader ran after %d yields", i)
			return
		default:
		}
		y.maybe(y.last + int64(yieldEvery)) // a yield is due
	}
	t.Fatal("the reader did not run while the writer yielded 10 times")
}

// TestScanPollsNetwork checks that the ticker's scan of the parked streams
// lets a goroutine waiting on a socket run before the scan ends, with one
// P: a scan of thousands of streams takes about a millisecond, which a
// publish request arriving meanwhile would otherwise wait for whole.
func TestScanPollsNetwork(t *testing.T) {
	s := &Server{cfg: Config{KeepAlive: time.Hour, WriteTimeout: time.Hour}}
	pl := &poller{s: s}
	y, err := newYielder(scanYieldEvery)
	if err != nil {
		t.Fatal(err)
	}
	pl.scanYield = y
	defer pl.closeYielders()
	now := time.Now().UnixNano()
	for i := range pl.table {
		pl.table[i].m = make(map[uint64]*parked)
	}
	for id := range uint64(100_000) { // nothing due: the scan only reads
		p := &parked{}
		p.lastWrite.Store(now)
		pl.table[pl.shard(id)].m[id] = p
	}

	client, server := tcpPair(t)

	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var read atomic.Bool
	parkedRead := make(chan struct{})
	go func() {
		var buf [1]byte
		close(parkedRead)
		if _, err := server.Read(buf[:]); err == nil {
			read.Store(true)
		}
	}()
	<-parkedRead
	runtime.Gosched() // let the reader block in the netpoller
	if _, err := client.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	// On loopback the byte is in the server's socket when Write returns;
	// this goroutine has not let go of the P since, so the reader has not
	// been woken yet.
	start := time.Now()
	pl.scan(time.Now().UnixNano())
	took := time.Since(start)
	if !read.Load() {
		t.Fatalf("the reader did not run during a scan of %v", took)
	}
	t.Logf("scan of %v; the reader ran meanwhile", took)
}

// tcpPair returns the two ends of a loopback TCP connection, closed at
// cleanup.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}
