package limits

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/problem"
)

// fakeConn is a net.Conn with a chosen peer address that records what is
// written to it and whether it was closed.
type fakeConn struct {
	net.Conn // nil: only the methods below are used
	peer     net.Addr

	mu     sync.Mutex
	wrote  strings.Builder
	closed chan struct{}
	once   sync.Once
}

func newFake(peer string) *fakeConn {
	ap := netip.MustParseAddrPort(peer)
	return &fakeConn{peer: net.TCPAddrFromAddrPort(ap), closed: make(chan struct{})}
}

func (c *fakeConn) RemoteAddr() net.Addr             { return c.peer }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }
func (c *fakeConn) Close() error                     { c.once.Do(func() { close(c.closed) }); return nil }
func (c *fakeConn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}
func (c *fakeConn) waitClosed(t *testing.T) {
	t.Helper()
	select {
	case <-c.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("connection not closed")
	}
}
func (c *fakeConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wrote.Write(b)
}
func (c *fakeConn) written() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wrote.String()
}

func TestConnsPerAddrClosesOldest(t *testing.T) {
	cs := NewConns(ConnsConfig{MaxPendingPerAddr: 3})
	var a []*fakeConn
	for range 5 {
		c := newFake("192.0.2.1:1000")
		a = append(a, c)
		cs.ConnState(c, http.StateNew)
	}
	other := newFake("192.0.2.2:1000")
	cs.ConnState(other, http.StateNew)
	a[0].waitClosed(t)
	a[1].waitClosed(t)
	for _, c := range append(a[2:], other) {
		if c.isClosed() {
			t.Fatal("a newer connection, or another address's, was closed")
		}
	}
	if got := a[0].written(); !strings.HasPrefix(got, "HTTP/1.1 429 ") || !strings.Contains(got, "application/problem+json") ||
		!strings.Contains(got, `"code":"`+problem.CodeTooManyPending+`"`) || !strings.Contains(got, "Retry-After: 1\r\n") {
		t.Fatalf("answer %q", got)
	}
	if cs.Pending() != 4 || cs.Closed() != 2 {
		t.Fatalf("pending %d, closed %d", cs.Pending(), cs.Closed())
	}
	// A request head arrives: the connection no longer counts.
	cs.ConnState(a[2], http.StateActive)
	cs.ConnState(newFake("192.0.2.1:1001"), http.StateNew)
	if a[3].isClosed() {
		t.Fatal("closed although the address is within its bound")
	}
	// Closed and hijacked connections leave no trace.
	for _, c := range append(a, other) {
		cs.ConnState(c, http.StateClosed)
	}
	if n := cs.Pending(); n != 1 {
		t.Fatalf("pending %d", n)
	}
}

func TestConnsTotalAndIdle(t *testing.T) {
	cs := NewConns(ConnsConfig{MaxPending: 2, MaxPendingPerAddr: 10})
	idle := newFake("192.0.2.1:1")
	cs.ConnState(idle, http.StateNew)
	cs.ConnState(idle, http.StateActive)
	cs.ConnState(idle, http.StateIdle) // waiting for its next request
	b := newFake("192.0.2.2:1")
	cs.ConnState(b, http.StateNew)
	c := newFake("192.0.2.3:1")
	cs.ConnState(c, http.StateNew)
	idle.waitClosed(t)
	if idle.written() != "" {
		t.Fatalf("an idle connection is closed without an answer, got %q", idle.written())
	}
	d := newFake("192.0.2.4:1")
	cs.ConnState(d, http.StateNew)
	b.waitClosed(t)
	if got := b.written(); !strings.HasPrefix(got, "HTTP/1.1 503 ") {
		t.Fatalf("answer %q", got)
	}
	if c.isClosed() || d.isClosed() {
		t.Fatal("newer connections closed")
	}
}

func TestConnsExemptAndIPv6(t *testing.T) {
	proxy := netip.MustParseAddr("10.0.0.1")
	cs := NewConns(ConnsConfig{MaxPendingPerAddr: 1, Exempt: func(a netip.Addr) bool { return a == proxy }})
	p1, p2 := newFake("10.0.0.1:1"), newFake("10.0.0.1:2")
	cs.ConnState(p1, http.StateNew)
	cs.ConnState(p2, http.StateNew)
	// Two addresses of one /64 count as one client.
	v1, v2 := newFake("[2001:db8::1]:1"), newFake("[2001:db8::2]:1")
	cs.ConnState(v1, http.StateNew)
	cs.ConnState(v2, http.StateNew)
	v1.waitClosed(t)
	if p1.isClosed() || p2.isClosed() || v2.isClosed() {
		t.Fatal("a trusted proxy's connections are not bounded per address")
	}
}

func TestConnsOff(t *testing.T) {
	cs := NewConns(ConnsConfig{})
	for range 100 {
		cs.ConnState(newFake("192.0.2.1:1"), http.StateNew)
	}
	if cs.Pending() != 0 {
		t.Fatal("counted without bounds")
	}
}

// TestConnsRealServer: with the hook on a real server, connections that
// send nothing past the bound are answered 429 and closed, and a request
// sent at once is served.
func TestConnsRealServer(t *testing.T) {
	cs := NewConns(ConnsConfig{MaxPendingPerAddr: 10})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }), ConnState: cs.ConnState}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	var silent []net.Conn
	for range 30 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	refused := 0
	deadline := time.Now().Add(time.Second)
	for _, c := range silent {
		_ = c.SetReadDeadline(deadline)
		b, _ := io.ReadAll(c)
		if strings.HasPrefix(string(b), "HTTP/1.1 429 ") {
			refused++
		}
	}
	if refused < 20 {
		t.Fatalf("%d of 30 silent connections refused, want at least 20", refused)
	}
}
