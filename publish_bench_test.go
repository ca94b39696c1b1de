package sluice_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/auth/jwtauth"
	"github.com/sluicehq/sluice/channel"
)

// BenchmarkPublishOne is the single-publish path end to end, in process:
// one POST /publish of one small event through Gateway.Handler (JSON
// decoding, validation, compaction, the memory broker, the hub's fan-out)
// to a channel read by subs open streams over loopback (a raw connection
// that reads and discards, so the client allocates nothing), waiting for
// every stream to receive it before the next publish. Coalescing is off:
// at 1,000 publishes/s over 5,000 channels every event is a write of its
// own. allocs/op and B/op are what one publish costs the heap, which sets
// how often the collector runs; GCs/10k is that, measured.
func BenchmarkPublishOne(b *testing.B) {
	for _, subs := range []int{0, 1} {
		b.Run(fmt.Sprintf("subs=%d", subs), func(b *testing.B) {
			benchPublishOne(b, subs, false)
		})
	}
	// The same over a keep-alive loopback connection: net/http's own
	// reading and writing of the request included, as in a server.
	b.Run("subs=1/http", func(b *testing.B) { benchPublishOne(b, 1, true) })
}

func benchPublishOne(b *testing.B, subs int, overHTTP bool) {
	ctx := context.Background()
	secret := []byte("bench-secret-0123456789abcdef0123456")
	v, err := jwtauth.New(ctx, jwtauth.Config{Secret: secret})
	if err != nil {
		b.Fatal(err)
	}
	gw, err := sluice.New(ctx, sluice.Options{
		Auth:          auth.Config{Tokens: v},
		PublishKeys:   []string{"bench-publish-key"},
		WriteCoalesce: -1,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer gw.Close()
	h := gw.Handler()

	const tenant = "3f1c2a9e-8d4b-4c1e-9a7f-0b5e6d7c8a91"
	ch := channel.MustMake("bench", tenant, "one")
	var readers []*blockCounter
	srv := httptest.NewServer(h)
	defer srv.Close()
	if subs > 0 {
		tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": "alice", "tenant_id": tenant, "exp": time.Now().Add(time.Hour).Unix(),
		}).SignedString(secret)
		for range subs {
			c, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "GET /events?channel=%s HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer %s\r\n\r\n", ch, tok)
			r := &blockCounter{more: make(chan struct{}, 1), done: make(chan struct{})}
			go r.run(c)
			readers = append(readers, r)
		}
		for _, r := range readers {
			r.wait(b, 1) // stream-open
		}
	}

	body := []byte(`{"channel":"` + ch.String() + `","event":"bench.tick","data":{"seq": 1234567, "ts": 1763845200123456789}}`)
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	b.ReportAllocs()
	if overHTTP {
		benchPublishHTTP(b, srv.Listener.Addr().String(), body, readers)
		return
	}
	// One request and one response writer, reset for every publish, so
	// that what is counted is the gateway's work, not the harness's.
	rd := bytes.NewReader(body)
	req := httptest.NewRequest(http.MethodPost, "/publish", io.NopCloser(rd))
	req.Header.Set("Authorization", "Bearer bench-publish-key")
	req.Header.Set("Content-Type", "application/json")
	w := &replyWriter{h: http.Header{}}
	n := int64(0)
	for b.Loop() {
		rd.Reset(body)
		req.Body = io.NopCloser(rd)
		req.ContentLength = int64(len(body))
		w.reset()
		h.ServeHTTP(w, req)
		if w.code != http.StatusOK {
			b.Fatalf("POST /publish: %d %s", w.code, w.body)
		}
		n++
		for _, r := range readers {
			r.wait(b, 1+n)
		}
	}
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(m1.NumGC-m0.NumGC)*10000/float64(n), "GCs/10k")
}

// benchPublishHTTP posts body over one keep-alive connection per op,
// reading each answer into a fixed buffer, so that the client allocates
// nothing.
func benchPublishHTTP(b *testing.B, addr string, body []byte, readers []*blockCounter) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := fmt.Appendf(nil, "POST /publish HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer bench-publish-key\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	buf := make([]byte, 4096)
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	b.ReportAllocs()
	n := int64(0)
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		got := 0
		for !bytes.HasSuffix(buf[:got], []byte("]}\n")) { // the end of {"ids":[…]}
			k, err := c.Read(buf[got:])
			if err != nil || got+k == len(buf) {
				b.Fatalf("POST /publish: %v %q", err, buf[:got+k])
			}
			got += k
		}
		if !bytes.HasPrefix(buf, []byte("HTTP/1.1 200 ")) {
			b.Fatalf("POST /publish: %q", buf[:got])
		}
		n++
		for _, r := range readers {
			r.wait(b, 1+n)
		}
	}
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(m1.NumGC-m0.NumGC)*10000/float64(n), "GCs/10k")
}

// blockCounter reads a stream's bytes into a fixed buffer and counts the
// SSE blocks (blank lines) seen.
type blockCounter struct {
	blocks atomic.Int64
	more   chan struct{} // cap 1: blocks grew
	done   chan struct{} // closed when the stream ended
}

func (r *blockCounter) run(c net.Conn) {
	buf := make([]byte, 64<<10)
	var last byte
	for {
		n, err := c.Read(buf)
		for _, x := range buf[:n] {
			// Blocks end in "\n\n"; the response head ("\r\n\r\n") and
			// the chunk framing ("\r\n") never hold two LFs in a row.
			if x == '\n' && last == '\n' {
				r.blocks.Add(1)
				select {
				case r.more <- struct{}{}:
				default:
				}
			}
			last = x
		}
		if err != nil {
			close(r.done)
			return
		}
	}
}

func (r *blockCounter) wait(b *testing.B, n int64) {
	for r.blocks.Load() < n {
		select {
		case <-r.more:
		case <-r.done:
			b.Fatalf("stream got %d blocks, want %d", r.blocks.Load(), n)
		}
	}
}

// replyWriter is a reusable http.ResponseWriter that keeps the status and
// body of the last reply.
type replyWriter struct {
	h    http.Header
	code int
	body []byte
}

func (w *replyWriter) reset() {
	clear(w.h)
	w.code, w.body = 0, w.body[:0]
}

func (w *replyWriter) Header() http.Header { return w.h }

func (w *replyWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *replyWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.body = append(w.body, p...)
	return len(p), nil
}

// SetReadDeadline is what a server connection offers (http.ResponseController).
func (w *replyWriter) SetReadDeadline(time.Time) error { return nil }
