package server_test

import (
	"io"
	"net"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Streams served through the gateway's whole handler chain (CORS, limits,
// body guard, panic recovery, access log) are parked: they hold no
// goroutine once open. A middleware that wraps the response writer of a
// stream would silently cost a goroutine per stream.
func TestGatewayStreamsParked(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("streams are parked on Linux only")
	}
	e := newEnv(t, nil)
	ch := chanName("scan-progress", tenantA, "parked")
	tok := token(t, "u1", tenantA, time.Hour, nil)
	addr := strings.TrimPrefix(e.srv.URL, "http://")
	open := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, rawStreamRequest(url.Values{"channel": {ch}}, tok)); err != nil {
			t.Fatal(err)
		}
		readOpening(t, c, 10*time.Second)
		return c
	}
	open() // whatever starts lazily (the poller) starts now
	before := settledGoroutines()
	const n = 50
	for range n {
		open()
	}
	if grew := settledGoroutines() - before; grew > n/5 {
		t.Fatalf("%d open streams added %d goroutines: streams are not parked", n, grew)
	}
}

// settledGoroutines returns the goroutine count once it has stopped moving.
func settledGoroutines() int {
	n, stable := runtime.NumGoroutine(), 0
	for deadline := time.Now().Add(5 * time.Second); stable < 10 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		if m := runtime.NumGoroutine(); m == n {
			stable++
		} else {
			n, stable = m, 0
		}
	}
	return n
}
