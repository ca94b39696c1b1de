package sluice_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/auth/jwtauth"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/limits"
)

// BenchmarkIdleStreams opens 2,000 streams through the whole gateway (a JWT
// per stream, Gateway.Handler, NewHTTPServer, parked streams on Linux) and
// reports the Go heap each holds once open and idle, after a collection:
// B/stream. The clients are raw connections in the same process that never
// read; their net.Conn is counted too (~0.3 KB each). Kernel socket buffers
// are not Go memory. The RSS of an idle server grows by about twice this per
// stream with GOGC=100, the collector's headroom (docs/benchmarks.md).
// SLUICE_IDLE_HEAPPROFILE=path writes the heap profile of the open streams,
// every allocation recorded.
func BenchmarkIdleStreams(b *testing.B) {
	// channels=1: every stream on one channel (sluice-bench's idle shape);
	// channels=2000: one channel each (its many-channels shape).
	for _, nch := range []int{1, 2000} {
		b.Run(fmt.Sprintf("channels=%d", nch), func(b *testing.B) {
			profile := os.Getenv("SLUICE_IDLE_HEAPPROFILE")
			if profile != "" {
				runtime.MemProfileRate = 1
			}
			for b.Loop() {
				b.ReportMetric(idleHeap(b, nch, profile), "B/stream")
			}
		})
	}
}

const idleStreams = 2000

// idleHeap opens idleStreams streams over nch channels on a new gateway and
// returns the heap each holds.
func idleHeap(b *testing.B, nch int, profile string) float64 {
	ctx := context.Background()
	secret := []byte("bench-secret-0123456789abcdef0123456")
	v, err := jwtauth.New(ctx, jwtauth.Config{Secret: secret})
	if err != nil {
		b.Fatal(err)
	}
	const tenant = "3f1c2a9e-8d4b-4c1e-9a7f-0b5e6d7c8a91"
	tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "alice", "tenant_id": tenant, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(secret)
	gw, err := sluice.New(ctx, sluice.Options{
		Auth:   auth.Config{Tokens: v},
		Limits: limits.Config{MaxStreamsPerUser: -1, MaxStreamsPerTenant: -1, ConnRate: -1},
	})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = gw.Close()
		b.Fatal(err)
	}
	srv := sluice.NewHTTPServer(gw.Handler())
	go func() { _ = srv.Serve(ln) }()
	conns := make([]net.Conn, 0, idleStreams)
	defer func() { // after a Fatal too
		for _, c := range conns {
			_ = c.Close()
		}
		_ = srv.Close()
		_ = gw.Close()
	}()

	before := heapAfterGC()
	// In steps of 100, each open before the next: connections that have not
	// sent a complete request are bounded per client address.
	for i := range idleStreams {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		ch := channel.MustMake("bench", tenant, fmt.Sprint("idle-", i%nch))
		fmt.Fprintf(c, "GET /events?channel=%s HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer %s\r\n\r\n", ch, tok)
		if (i+1)%100 == 0 {
			waitOpen(b, gw, i+1)
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
	return float64(int64(after)-int64(before)) / idleStreams
}

// waitOpen waits until gw has n open streams.
func waitOpen(b *testing.B, gw *sluice.Gateway, n int) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for gw.OpenStreams() < n {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d streams open", gw.OpenStreams(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
