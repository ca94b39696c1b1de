// Package benchutil measures for the module's benchmarks what takes the
// whole gateway to measure: the heap of idle streams (IdleHeap). It is
// apart from testutil, which package sluice's own dependencies' tests
// import, because it imports package sluice.
package benchutil

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
)

// IdleHeap opens n streams on h, served as the sluice command serves
// (sluice.NewHTTPServer behind sluice.ProblemListener, on loopback), and
// returns the Go heap each holds once open and idle, after a collection,
// in bytes. request(i) is the i-th stream's request head; open reports the
// streams open. The clients are raw connections of this process that never
// read: their net.Conn is counted too (~0.3 KB each). With profile set, the
// heap profile of the open streams is written there (set
// runtime.MemProfileRate first to record every allocation).
func IdleHeap(tb testing.TB, h http.Handler, n int, request func(i int) string, open func() int, profile string) float64 {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := sluice.NewHTTPServer(h)
	go func() { _ = srv.Serve(sluice.ProblemListener(ln)) }()
	conns := make([]net.Conn, 0, n)
	defer func() { // after a Fatal too
		for _, c := range conns {
			_ = c.Close()
		}
		_ = srv.Close()
	}()

	before := heapAfterGC()
	// In steps of 100, each open before the next: connections that have not
	// sent a complete request are bounded per client address.
	for i := range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			tb.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := fmt.Fprint(c, request(i)); err != nil {
			tb.Fatal(err)
		}
		if (i+1)%100 == 0 || i == n-1 {
			testutil.Eventually(tb, 30*time.Second, fmt.Sprintf("%d streams open", i+1), func() bool { return open() >= i+1 })
		}
	}
	time.Sleep(200 * time.Millisecond) // the last opening blocks written, the streams parked
	after := heapAfterGC()
	if profile != "" {
		if f, err := os.Create(profile); err == nil {
			_ = pprof.WriteHeapProfile(f)
			_ = f.Close()
		}
	}
	return float64(int64(after)-int64(before)) / float64(n)
}

func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
