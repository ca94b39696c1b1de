package sluice_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/auth/jwtauth"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/internal/benchutil"
	"github.com/sluicehq/sluice/limits"
)

// BenchmarkIdleStreams opens 2,000 streams through the whole gateway (a JWT
// per stream, Gateway.Handler, parked streams on Linux) and reports the Go
// heap each holds once open and idle, after a collection: B/stream (see
// benchutil.IdleHeap; the in-process client's ~0.3 KB included). The RSS of
// an idle server grows by about twice this per stream with GOGC=100, the
// collector's headroom (docs/benchmarks.md). package server's
// BenchmarkIdleStreams measures the command's configuration.
// SLUICE_IDLE_HEAPPROFILE=path writes the heap profile of the open streams,
// every allocation recorded.
func BenchmarkIdleStreams(b *testing.B) {
	// channels=1: every stream on one channel (sluice-bench's idle shape);
	// channels=2000: one channel each (its many-channels shape).
	const n = 2000
	for _, nch := range []int{1, n} {
		b.Run(fmt.Sprintf("channels=%d", nch), func(b *testing.B) {
			profile := os.Getenv("SLUICE_IDLE_HEAPPROFILE")
			if profile != "" {
				runtime.MemProfileRate = 1
			}
			// One measurement, however many iterations are asked: it is
			// B/stream that counts (ns/op means nothing here). Reported
			// after the loop, whose start would clear it.
			perStream := idleHeap(b, n, nch, profile)
			for b.Loop() {
			}
			b.ReportMetric(perStream, "B/stream")
		})
	}
}

// idleHeap opens n streams of one user over nch channels on a new gateway
// and returns the heap each holds.
func idleHeap(b *testing.B, n, nch int, profile string) float64 {
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
	defer gw.Close()
	request := func(i int) string {
		ch := channel.MustMake("bench", tenant, fmt.Sprint("idle-", i%nch))
		return fmt.Sprintf("GET /events?channel=%s HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer %s\r\n\r\n", ch, tok)
	}
	return benchutil.IdleHeap(b, gw.Handler(), n, request, gw.OpenStreams, profile)
}
