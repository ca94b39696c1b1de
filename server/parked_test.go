package server_test

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/server"
)

// Streams served through the gateway's whole handler chain (CORS, limits,
// body guard, panic recovery, access log) are parked: they hold no
// goroutine once open. A middleware that wraps the response writer of a
// stream would silently cost a goroutine per stream.
func TestGatewayStreamsParked(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("streams are parked on Linux only")
	}
	routes := server.WithRoutes(func(gw *sluice.Gateway, mux *http.ServeMux) {
		mux.Handle("GET /scans/{id}/events", gw.Stream(func(r *http.Request, p auth.Principal) ([]channel.Name, error) {
			return []channel.Name{channel.MustMake("scan-progress", p.Tenant, r.PathValue("id"))}, nil
		}))
	})
	for _, tc := range []struct {
		name, path, logLevel string
	}{
		{"GET /events", "/events?" + url.Values{"channel": {chanName("scan-progress", tenantA, "parked")}}.Encode(), "error"},
		{"a stream of Options.Routes", "/scans/parked/events", "error"},
		// The access log wraps the response writer of what it logs.
		{"GET /events, debug log", "/events?" + url.Values{"channel": {chanName("scan-progress", tenantA, "parked")}}.Encode(), "debug"},
		{"a stream of Options.Routes, debug log", "/scans/parked/events", "debug"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			level := slog.LevelError
			if tc.logLevel == "debug" {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: level}))
			e := newEnv(t, nil, routes, server.WithLogger(log))
			tok := token(t, "u1", tenantA, time.Hour, nil)
			addr := strings.TrimPrefix(e.srv.URL, "http://")
			open := func() net.Conn {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				if _, err := io.WriteString(c, "GET "+tc.path+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+tok+"\r\n\r\n"); err != nil {
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
		})
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
