package stream

import (
	"net"
	"runtime"
	"testing"
)

// TestYieldPollsNetwork checks that a goroutine busy calling maybe lets a
// goroutine waiting on a socket run, even with one P: without the yield,
// nothing would preempt the busy loop within these few iterations.
func TestYieldPollsNetwork(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	y, err := newYielder()
	if err != nil {
		t.Fatal(err)
	}
	defer y.close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()

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
