package main

import (
	"math/rand/v2"
	"testing"
)

func TestBuckets(t *testing.T) {
	for i := range numBuckets - 1 {
		if lo, hi := bucketLow(i), bucketLow(i+1); lo >= hi || bucketOf(lo) != i || bucketOf(hi-1) != i {
			t.Fatalf("bucket %d: [%d, %d) maps to %d..%d", i, lo, hi, bucketOf(lo), bucketOf(hi-1))
		}
	}
	for range 100000 {
		v := rand.Int64N(1 << 40)
		lo, hi := bucketLow(bucketOf(v)), bucketLow(bucketOf(v)+1)
		if v < lo || v >= hi || float64(hi-lo) > float64(v)/subCount+1 {
			t.Fatalf("%d in [%d, %d)", v, lo, hi)
		}
	}
}

func TestQuantiles(t *testing.T) {
	var h histogram
	if h.quantile(0.5) != 0 {
		t.Fatal("empty histogram")
	}
	perm := rand.Perm(10000)
	for _, i := range perm {
		h.record(int64(i+1) * 1000) // 1 µs … 10 ms
	}
	for _, tt := range []struct {
		q    float64
		want int64
	}{{0.5, 5_000_000}, {0.9, 9_000_000}, {0.99, 9_900_000}, {1, 10_000_000}} {
		got := h.quantile(tt.q)
		if d := float64(got-tt.want) / float64(tt.want); d < -0.01 || d > 0.01 {
			t.Errorf("q%v = %d, want %d ±1%%", tt.q, got, tt.want)
		}
	}
	if h.max.Load() != 10_000_000 || h.total.Load() != 10000 {
		t.Errorf("max %d total %d", h.max.Load(), h.total.Load())
	}
	var one histogram
	one.record(70)
	if one.quantile(0.99) != 70 {
		t.Errorf("single sample: %d", one.quantile(0.99))
	}
}

func TestSeqTracker(t *testing.T) {
	var s seqTracker
	for _, seq := range []uint64{0, 1, 2, 5, 5, 3, 6} { // 3, 4 lost; 5 and 3 late: duplicates
		s.see(seq)
	}
	s.finish(10) // 7, 8, 9 never came
	if s.lost != 5 || s.dup != 2 {
		t.Errorf("lost %d dup %d, want 5 and 2", s.lost, s.dup)
	}
}

func TestLoopbackTarget(t *testing.T) {
	for _, tt := range []struct {
		url string
		ok  bool
		ip  string
	}{
		{"http://127.0.0.1:8080", true, "127.0.0.1"},
		{"http://127.200.3.4:8080", true, "127.200.3.4"},
		{"http://localhost:8080", true, "127.0.0.1"},
		{"http://LocalHost", true, "127.0.0.1"},
		{"http://[::1]:8080", true, "::1"},
		{"http://10.0.0.1:8080", false, ""},
		{"http://128.0.0.1", false, ""},
		{"http://example.com", false, ""},
		{"http://127.0.0.1.nip.io", false, ""},
		{"http://127.0.0.1@example.com/", false, ""},
		{"http://[::2]", false, ""},
		{"http://0.0.0.0:8080", false, ""},
		{"ftp://127.0.0.1", false, ""},
		{"127.0.0.1:8080", false, ""},
	} {
		_, ip, err := loopbackTarget(tt.url)
		if (err == nil) != tt.ok || (tt.ok && ip.String() != tt.ip) {
			t.Errorf("%s: ip %v err %v", tt.url, ip, err)
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	stat := []byte("4242 (sluice (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 50 0 0 20 0 12 0 100 0 0\n")
	if n, err := parseStatCPU(stat); err != nil || n != 200 {
		t.Fatalf("got %d, %v; want 200", n, err)
	}
	if _, err := parseStatCPU([]byte("garbage")); err == nil {
		t.Fatal("want an error")
	}
}

func TestPayload(t *testing.T) {
	ev := appendEvent(nil, "bench:t:1", 42, 1712345678901234567)
	if string(ev) != `{"channel":"bench:t:1","event":"bench.tick","data":{"seq":42,"ts":1712345678901234567}}` {
		t.Fatalf("%s", ev)
	}
	data := []byte(`{"seq":42,"ts":1712345678901234567}`)
	if jsonInt(data, `"seq":`) != 42 || jsonInt(data, `"ts":`) != 1712345678901234567 || jsonInt(data, `"x":`) != 0 {
		t.Fatal("jsonInt")
	}
}

func TestParseSockstat(t *testing.T) {
	raw := []byte("sockets: used 31\nTCP: inuse 11 orphan 0 tw 4 alloc 14 mem 237\nUDP: inuse 0 mem 0\n")
	if got := parseSockstat(raw, 4096); got != 237*4 {
		t.Fatalf("got %d kB, want %d", got, 237*4)
	}
	if got := parseSockstat([]byte("UDP: inuse 0 mem 3\n"), 4096); got != -1 {
		t.Fatalf("no TCP line: got %d", got)
	}
}
