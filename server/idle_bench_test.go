package server_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/internal/benchutil"
	"github.com/sluicehq/sluice/server"
)

// BenchmarkIdleStreams is the Go heap an idle stream holds in the sluice
// command's default configuration (server.DefaultConfig with a JWT secret:
// per-user and per-tenant limits, Prometheus metrics, the membership
// recheck), as sluice-bench's idle shape opens them: a user of its own per
// stream, one channel. B/stream as in benchutil.IdleHeap.
// SLUICE_IDLE_HEAPPROFILE=path writes the heap profile, every allocation
// recorded.
func BenchmarkIdleStreams(b *testing.B) {
	const n = 2000
	profile := os.Getenv("SLUICE_IDLE_HEAPPROFILE")
	if profile != "" {
		runtime.MemProfileRate = 1
	}
	ch := channel.MustMake("bench", tenantA, "idle")
	toks := make([]string, n)
	for i := range toks {
		toks[i] = token(b, fmt.Sprint("user-", i), tenantA, time.Hour, nil)
	}
	request := func(i int) string {
		return fmt.Sprintf("GET /events?channel=%s HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer %s\r\n\r\n", ch, toks[i])
	}
	cfg := server.DefaultConfig()
	cfg.JWTSecret = testSecret
	cfg.LogLevel = "error"
	cfg.ConnRate, cfg.ConnBurst = 1e6, 1e6 // one client address here; sluice-bench uses many
	s, err := server.New(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	// One measurement, however many iterations are asked: it is B/stream
	// that counts (ns/op means nothing here). Reported after the loop,
	// whose start would clear it.
	perStream := benchutil.IdleHeap(b, s.Handler(), n, request, s.OpenStreams, profile)
	for b.Loop() {
	}
	b.ReportMetric(perStream, "B/stream")
}
