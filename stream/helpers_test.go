package stream

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/broker/memory"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
)

const benchTenant = "3f1c2a9e-8d4b-4c1e-9a7f-0b5e6d7c8a91"

type allowAll struct{}

func (allowAll) Authenticate(*http.Request, auth.Options) (auth.Principal, error) {
	return auth.Principal{User: "bench", Tenant: benchTenant, Kind: auth.KindAPIKey}, nil
}
func (allowAll) StillValid(context.Context, auth.Principal) error { return nil }
func (allowAll) Check(context.Context, auth.Principal, []channel.Name) error {
	return nil
}

type benchEnv struct {
	s    *Server
	b    *memory.Broker
	srv  *httptest.Server
	once sync.Once
}

// close drains and stops the server, once; it also runs at cleanup.
func (e *benchEnv) close() {
	e.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.s.Drain(ctx)
		e.srv.Close()
		e.s.Close()
		_ = e.b.Close()
	})
}

func newBenchEnv(tb testing.TB, mutate ...func(*Config)) *benchEnv {
	b := memory.New(broker.Options{})
	key, _ := b.CursorKey(context.Background())
	cfg := Config{Broker: b, Auth: allowAll{}, Gate: allowAll{}, Codec: event.NewCodec(key), QueueSize: 4096}
	for _, f := range mutate {
		f(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	e := &benchEnv{s: s, b: b, srv: httptest.NewServer(s.Handler(QueryChannels))}
	tb.Cleanup(e.close)
	return e
}

// lineStream reads an SSE response line by line in the background.
type lineStream struct {
	resp  *http.Response
	lines chan string
	err   chan error // the body's final read error (io.EOF: a clean end)
}

func openLines(t *testing.T, e *benchEnv, ch channel.Name) *lineStream {
	t.Helper()
	return openLinesFrom(t, e, "", ch)
}

// openLinesFrom opens a stream on chans resuming from cursor (none when
// empty).
func openLinesFrom(t *testing.T, e *benchEnv, cursor string, chans ...channel.Name) *lineStream {
	t.Helper()
	q := ""
	for i, ch := range chans {
		if i > 0 {
			q += "&"
		}
		q += "channel=" + ch.String()
	}
	req, err := http.NewRequest(http.MethodGet, e.srv.URL+"/events?"+q, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cursor != "" {
		req.Header.Set("Last-Event-ID", cursor)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	ls := &lineStream{resp: resp, lines: make(chan string, 4096), err: make(chan error, 1)}
	go func() {
		r := bufio.NewReader(resp.Body)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				ls.err <- err
				close(ls.lines)
				return
			}
			ls.lines <- strings.TrimSuffix(line, "\n")
		}
	}()
	t.Cleanup(func() { resp.Body.Close() })
	return ls
}

// until reads lines until one satisfies ok and returns the lines read.
func (ls *lineStream) until(t *testing.T, d time.Duration, ok func(string) bool) []string {
	t.Helper()
	var got []string
	timeout := time.After(d)
	for {
		select {
		case l, open := <-ls.lines:
			if !open {
				t.Fatalf("stream ended; read %q", got)
			}
			got = append(got, l)
			if ok(l) {
				return got
			}
		case <-timeout:
			t.Fatalf("timed out; read %q", got)
		}
	}
}

// end waits for the body to end and returns its final error.
func (ls *lineStream) end(t *testing.T) error {
	t.Helper()
	for range ls.lines {
	}
	select {
	case err := <-ls.err:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end")
		return nil
	}
}

func publishN(t *testing.T, e *benchEnv, ch channel.Name, n int) {
	t.Helper()
	for i := range n {
		msg := []event.Message{{Channel: ch, Type: "test.tick", Data: []byte(strconv.Itoa(i))}}
		if _, err := e.b.Publish(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
}

// forEachTransport runs f once with streams parked (where the platform
// parks them) and once with every stream on a goroutine of its own.
func forEachTransport(t *testing.T, f func(t *testing.T, mutate func(*Config))) {
	t.Run("parked", func(t *testing.T) { f(t, func(*Config) {}) })
	t.Run("goroutine", func(t *testing.T) { f(t, func(c *Config) { c.DisablePark = true }) })
}
