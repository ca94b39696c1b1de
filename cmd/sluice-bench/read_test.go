package main

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// pipe returns both ends of a loopback TCP connection.
func pipe(t *testing.T) (client, server net.Conn) {
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
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestReadBody streams a body over a real socket in pieces: readBody
// records every event and returns io.EOF at the last chunk.
func TestReadBody(t *testing.T) {
	client, server := pipe(t)
	go func() {
		for in := streamBody; len(in) > 0; {
			n := min(17, len(in))
			if _, err := server.Write([]byte(in[:n])); err != nil {
				return
			}
			in = in[n:]
			time.Sleep(time.Millisecond)
		}
	}()
	p, _, opens := newTestBody(false)
	b := &bench{}
	if err := b.readBody(context.Background(), client, p); !errors.Is(err, io.EOF) {
		t.Fatalf("readBody = %v, want io.EOF", err)
	}
	if got := p.s.got.Load(); got != 4 || string(p.s.lastID) != "c4" || *opens != 1 {
		t.Fatalf("got %d events, last id %q, %d opens; want 4, c4, 1", got, p.s.lastID, *opens)
	}
}

// TestReadBodyCancel checks that cancelling a stream that is waiting for
// bytes ends readBody with the context's error and closes the socket.
func TestReadBodyCancel(t *testing.T) {
	client, server := pipe(t)
	ctx, cancel := context.WithCancel(context.Background())
	p, _, _ := newTestBody(false)
	b := &bench{}
	done := make(chan error, 1)
	go func() { done <- b.readBody(ctx, client, p) }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("readBody = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("readBody did not return after cancel")
	}
	_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := server.Read(make([]byte, 1)); err == nil {
		t.Fatal("the client's socket is still open after cancel")
	}
}
