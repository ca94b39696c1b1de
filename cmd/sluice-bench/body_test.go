package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// chunk frames s as one HTTP/1.1 chunk.
func chunk(s string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(s), s) }

// streamBody is a stream as the server sends it: the opening block, two
// bench events in one chunk, a reset, an event split over two chunks and an
// event with CRLF line ends, then the last chunk.
var streamBody = chunk("retry: 2000\n\nevent: stream-open\nid: c0\ndata: {}\n\n") +
	chunk("event: bench.tick\nid: c1\ndata: {\"seq\":0,\"ts\":1}\n\nevent: bench.tick\nid: c2\ndata: {\"seq\":1,\"ts\":1}\n\n") +
	chunk(": keep-alive\n\nevent: stream-reset\ndata: {}\n\n") +
	chunk("event: bench.tick\nid: c3\nda") + chunk("ta: {\"seq\":2,\"ts\":1}\n\n") +
	chunk("event: bench.tick\r\nid: c4\r\ndata: {\"seq\":3,\"ts\":1}\r\n\r\n") +
	"0\r\n\r\n"

func newTestBody(raw bool) (*body, *bench, *int) {
	b := &bench{}
	opens := new(int)
	s := &sub{openHist: &histogram{}}
	p := &body{b: b, s: s, onOpen: func() { *opens++ }, shard: &histogram{}, warm: &histogram{}, first: true, max: 256, left: sizeLine}
	if raw {
		p.left = rawBody
	}
	return p, b, opens
}

// TestBodyPieces feeds the same stream whole and in pieces of every size:
// the outcome must not depend on where reads split it.
func TestBodyPieces(t *testing.T) {
	for size := 1; size <= len(streamBody); size++ {
		p, b, opens := newTestBody(false)
		var err error
		for in := streamBody; len(in) > 0 && err == nil; {
			n := min(size, len(in))
			err, in = p.feed([]byte(in[:n])), in[n:]
		}
		if !errors.Is(err, io.EOF) {
			t.Fatalf("pieces of %d: feed ended with %v, want io.EOF at the last chunk", size, err)
		}
		if got := p.s.got.Load(); got != 4 || string(p.s.lastID) != "c4" || *opens != 1 || b.resets.Load() != 1 {
			t.Fatalf("pieces of %d: got %d events, last id %q, %d opens, %d resets; want 4, c4, 1, 1",
				size, got, p.s.lastID, *opens, b.resets.Load())
		}
		p.s.track.finish(4)
		if p.s.track.lost != 0 || p.s.track.dup != 0 {
			t.Fatalf("pieces of %d: lost %d, duplicated %d", size, p.s.track.lost, p.s.track.dup)
		}
	}
}

// TestBodyWarmup checks that events published before the end of the warm-up
// are counted as delivered but kept out of the steady-state latencies.
func TestBodyWarmup(t *testing.T) {
	p, b, _ := newTestBody(true)
	b.steady.Store(100)
	in := "event: bench.tick\ndata: {\"seq\":0,\"ts\":99}\n\n" +
		"event: bench.tick\ndata: {\"seq\":1,\"ts\":100}\n\n" +
		"event: bench.tick\ndata: {\"seq\":2,\"ts\":101}\n\n"
	if err := p.feed([]byte(in)); err != nil {
		t.Fatal(err)
	}
	if got, warm, steady := p.s.got.Load(), p.warm.total.Load(), p.shard.total.Load(); got != 3 || warm != 1 || steady != 2 {
		t.Fatalf("got %d events, %d warm-up and %d steady latencies; want 3, 1, 2", got, warm, steady)
	}
}

func TestBodyErrors(t *testing.T) {
	long := chunk("data: " + strings.Repeat("x", 300) + "\n\n")
	for _, tt := range []struct {
		name, in string
		raw      bool
		want     string
	}{
		{"stream-error", chunk("event: stream-error\ndata: {\"reason\":\"token-expired\"}\n\n"), false, "ended by the server"},
		{"bad size", "zz\r\n", false, "bad chunk size"},
		{"size line too long", strings.Repeat("1", 100), false, "bad chunk size line"},
		{"line too long", long, false, "longer than --buf"},
		{"raw body", "event: stream-error\ndata: {}\n\n", true, "ended by the server"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, _, _ := newTestBody(tt.raw)
			if err := p.feed([]byte(tt.in)); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("feed = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// FuzzBody checks that no input makes the parser panic, and that splitting
// an input in two does not change what it yields.
func FuzzBody(f *testing.F) {
	f.Add([]byte(streamBody), 7)
	f.Add([]byte("5\r\ndata:\r\n0\r\n\r\n"), 3)
	f.Fuzz(func(t *testing.T, in []byte, cut int) {
		whole, _, _ := newTestBody(false)
		errWhole := whole.feed(in)
		split, _, _ := newTestBody(false)
		cut = min(max(cut, 0), len(in))
		errSplit := split.feed(in[:cut])
		if errSplit == nil {
			errSplit = split.feed(in[cut:])
		}
		if (errWhole == nil) != (errSplit == nil) || whole.s.got.Load() != split.s.got.Load() ||
			string(whole.s.lastID) != string(split.s.lastID) {
			t.Fatalf("whole: %v, %d events, id %q; split at %d: %v, %d events, id %q",
				errWhole, whole.s.got.Load(), whole.s.lastID, cut, errSplit, split.s.got.Load(), split.s.lastID)
		}
	})
}
