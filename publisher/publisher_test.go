package publisher_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	sse "github.com/tmaxmax/go-sse"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/publisher"
	"github.com/sluicehq/sluice/server"
)

const (
	secret     = "publisher-test-secret-0123456789abcdef"
	publishKey = "publisher-test-key-0123456789"
	tenant     = "3f1c2a9e-8d4b-4c1e-9a7f-0b5e6d7c8a91"
)

var (
	chanA = "scan-progress:" + tenant + ":42"
	chanB = "scan-progress:" + tenant + ":43"
)

// env is a real gateway behind a front handler that counts /publish
// requests and can be told to fail them.
type env struct {
	t        *testing.T
	gw       *server.Server
	srv      *httptest.Server
	requests atomic.Int32
	mu       sync.Mutex
	fault    func(n int32, w http.ResponseWriter, r *http.Request) bool // true: handled
}

func newEnv(t *testing.T, mutate func(*server.Config)) *env {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.JWTSecret = secret
	cfg.PublishKeys = []string{publishKey}
	cfg.LogLevel = "error"
	if mutate != nil {
		mutate(&cfg)
	}
	gw, err := server.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	e := &env{t: t, gw: gw}
	inner := gw.Handler()
	front := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/publish" {
			n := e.requests.Add(1)
			e.mu.Lock()
			f := e.fault
			e.mu.Unlock()
			if f != nil && f(n, w, r) {
				return
			}
		}
		inner.ServeHTTP(w, r)
	})
	e.srv = httptest.NewUnstartedServer(nil)
	e.srv.Config = sluice.NewHTTPServer(front)
	e.srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
		e.srv.Close()
		_ = gw.Close()
	})
	return e
}

func (e *env) setFault(f func(n int32, w http.ResponseWriter, r *http.Request) bool) {
	e.mu.Lock()
	e.fault = f
	e.mu.Unlock()
	e.requests.Store(0)
}

func (e *env) client(opts ...publisher.Option) *publisher.Client {
	opts = append([]publisher.Option{publisher.WithBackoff(time.Millisecond, 20*time.Millisecond)}, opts...)
	return publisher.New(e.srv.URL, publishKey, opts...)
}

// subscribe opens a stream on chans and returns its events after
// stream-open.
func (e *env) subscribe(chans ...string) <-chan sse.Event {
	e.t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "u1", "tenant_id": tenant, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(secret))
	if err != nil {
		e.t.Fatal(err)
	}
	q := ""
	for _, c := range chans {
		q += "&channel=" + c
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.URL+"/events?"+q[1:], nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		cancel()
		e.t.Fatalf("subscribe: %v %v", err, resp)
	}
	e.t.Cleanup(func() { cancel(); resp.Body.Close() })
	evs := make(chan sse.Event, 4096)
	go func() {
		defer close(evs)
		for ev, err := range sse.Read(resp.Body, nil) {
			if err != nil {
				return
			}
			if ev.Type != "stream-open" {
				evs <- ev
			}
		}
	}()
	return evs
}

// collect reads n events from evs, failing after 5 s.
func collect(t *testing.T, evs <-chan sse.Event, n int) []sse.Event {
	t.Helper()
	var out []sse.Event
	deadline := time.After(5 * time.Second)
	for len(out) < n {
		select {
		case ev, ok := <-evs:
			if !ok {
				t.Fatalf("stream ended after %d events", len(out))
			}
			out = append(out, ev)
		case <-deadline:
			t.Fatalf("%d events of %d within 5s", len(out), n)
		}
	}
	return out
}

// quiet checks that no further event arrives for a short while.
func quiet(t *testing.T, evs <-chan sse.Event) {
	t.Helper()
	select {
	case ev := <-evs:
		t.Fatalf("unexpected event %s %s", ev.Type, ev.Data)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestPublishAndBatch(t *testing.T) {
	e := newEnv(t, nil)
	evs := e.subscribe(chanA, chanB)
	pub := e.client()
	ctx := context.Background()

	id, err := pub.Publish(ctx, chanA, "scan.progress", map[string]any{"percent": 10})
	if err != nil || id == "" {
		t.Fatalf("Publish: %q %v", id, err)
	}
	ids, err := pub.PublishBatch(ctx, []publisher.Event{
		{Channel: chanA, Type: "scan.progress", Data: map[string]int{"percent": 50}},
		{Channel: chanB, Type: "scan.started", Data: json.RawMessage(`{ "by" : "u1" }`)},
		{Channel: chanA, Type: "scan.completed", Data: json.RawMessage(`null`)},
	})
	if err != nil || len(ids) != 3 {
		t.Fatalf("PublishBatch: %v %v", ids, err)
	}
	got := collect(t, evs, 4)
	want := []struct{ typ, data string }{
		{"scan.progress", `{"percent":10}`},
		{"scan.progress", `{"percent":50}`},
		{"scan.started", `{"by":"u1"}`},
		{"scan.completed", `null`},
	}
	for i, w := range want {
		if got[i].Type != w.typ || got[i].Data != w.data {
			t.Errorf("event %d: %s %s, want %s %s", i, got[i].Type, got[i].Data, w.typ, w.data)
		}
	}
}

func TestErrorsAreTyped(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.MaxEventBytes = 64 })
	ctx := context.Background()
	pub := e.client()
	for _, tc := range []struct {
		name   string
		call   func() error
		status int
		code   string
	}{
		{"malformed channel", func() error { _, err := pub.Publish(ctx, "scan-progress:nope:1", "scan.progress", 1); return err }, 400, publisher.CodeMalformedChannel},
		{"bad event name", func() error { _, err := pub.Publish(ctx, chanA, "Progress", 1); return err }, 400, publisher.CodeInvalidEvent},
		{"reserved event name", func() error { _, err := pub.Publish(ctx, chanA, "stream-open", 1); return err }, 400, publisher.CodeInvalidEvent},
		{"too large", func() error { _, err := pub.Publish(ctx, chanA, "scan.progress", strings.Repeat("x", 100)); return err }, 413, publisher.CodeEventTooLarge},
		{"empty batch", func() error { _, err := pub.PublishBatch(ctx, nil); return err }, 400, publisher.CodeEmptyBatch},
		{"batch too large", func() error {
			evs := make([]publisher.Event, publisher.MaxBatch+1)
			for i := range evs {
				evs[i] = publisher.Event{Channel: chanA, Type: "scan.progress", Data: i}
			}
			_, err := pub.PublishBatch(ctx, evs)
			return err
		}, 413, publisher.CodeBatchTooLarge},
		{"wrong key", func() error {
			_, err := publisher.New(e.srv.URL, "wrong").Publish(ctx, chanA, "scan.progress", 1)
			return err
		}, 401, publisher.CodeInvalidToken},
		{"unencodable data", func() error { _, err := pub.Publish(ctx, chanA, "scan.progress", func() {}); return err }, 400, publisher.CodeInvalidEvent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.requests.Store(0)
			err := tc.call()
			var pe *publisher.Error
			if !errors.As(err, &pe) || pe.Status != tc.status || pe.Code != tc.code || pe.Temporary() {
				t.Fatalf("err = %#v, want %d %s", err, tc.status, tc.code)
			}
			if !publisher.IsCode(err, tc.code) {
				t.Fatal("IsCode = false")
			}
			if n := e.requests.Load(); n > 1 {
				t.Fatalf("%d requests: a final refusal was retried", n)
			}
		})
	}
	// nil data is JSON null, a valid payload.
	if _, err := pub.Publish(ctx, chanA, "scan.progress", nil); err != nil {
		t.Fatal(err)
	}
}

// unavailable answers like a gateway whose broker is down.
func unavailable(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte(`{"status":503,"code":"broker_unavailable","title":"Service Unavailable","detail":"retry later"}`))
}

func TestRetries(t *testing.T) {
	e := newEnv(t, nil)
	evs := e.subscribe(chanA)
	ctx := context.Background()

	t.Run("503 then success", func(t *testing.T) {
		e.setFault(func(n int32, w http.ResponseWriter, _ *http.Request) bool {
			if n <= 2 {
				unavailable(w)
				return true
			}
			return false
		})
		if _, err := e.client().Publish(ctx, chanA, "scan.progress", "a"); err != nil {
			t.Fatal(err)
		}
		if n := e.requests.Load(); n != 3 {
			t.Fatalf("%d requests, want 3", n)
		}
		collect(t, evs, 1)
	})
	t.Run("429 with Retry-After", func(t *testing.T) {
		e.setFault(func(n int32, w http.ResponseWriter, _ *http.Request) bool {
			if n == 1 {
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusTooManyRequests)
				return true
			}
			return false
		})
		start := time.Now()
		// The longest wait caps Retry-After.
		if _, err := e.client(publisher.WithBackoff(time.Millisecond, 30*time.Millisecond)).Publish(ctx, chanA, "scan.progress", "b"); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 900*time.Millisecond {
			t.Fatalf("waited %v: Retry-After not capped", d)
		}
		collect(t, evs, 1)
	})
	t.Run("network error", func(t *testing.T) {
		e.setFault(func(n int32, w http.ResponseWriter, _ *http.Request) bool {
			if n == 1 {
				conn, _, _ := http.NewResponseController(w).Hijack()
				conn.Close()
				return true
			}
			return false
		})
		if _, err := e.client().Publish(ctx, chanA, "scan.progress", "c"); err != nil {
			t.Fatal(err)
		}
		collect(t, evs, 1)
	})
	t.Run("gives up", func(t *testing.T) {
		e.setFault(func(_ int32, w http.ResponseWriter, _ *http.Request) bool { unavailable(w); return true })
		_, err := e.client(publisher.WithRetries(2)).Publish(ctx, chanA, "scan.progress", "d")
		var pe *publisher.Error
		if !errors.As(err, &pe) || pe.Code != publisher.CodeBrokerUnavailable || !pe.Temporary() {
			t.Fatalf("err = %v", err)
		}
		if n := e.requests.Load(); n != 3 {
			t.Fatalf("%d requests, want 1 + 2 retries", n)
		}
		e.setFault(nil)
		_, err = e.client(publisher.WithRetries(0)).PublishBatch(ctx, []publisher.Event{{Channel: chanA, Type: "scan.progress", Data: 1}})
		if err != nil {
			t.Fatal(err)
		}
		collect(t, evs, 1)
	})
	t.Run("context ends the wait", func(t *testing.T) {
		e.setFault(func(_ int32, w http.ResponseWriter, _ *http.Request) bool { unavailable(w); return true })
		ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, err := e.client(publisher.WithRetries(1000), publisher.WithBackoff(10*time.Millisecond, 10*time.Millisecond)).Publish(ctx, chanA, "scan.progress", "e")
		// The context ends during a wait (the last refusal is returned) or
		// during a request.
		if !publisher.IsCode(err, publisher.CodeBrokerUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
	})
	// The fault stays: a request the client gave up on may still reach
	// the server.
	quiet(t, evs)
}

// TestRetryAfterLostReplyPublishesOnce: when the gateway published but the
// reply was lost, the retry carries the same Idempotency-Key, so the gateway
// answers the first id and publishes nothing again.
func TestRetryAfterLostReplyPublishesOnce(t *testing.T) {
	e := newEnv(t, nil)
	evs := e.subscribe(chanA)
	inner := e.gw.Handler()
	var keys []string
	e.setFault(func(n int32, w http.ResponseWriter, r *http.Request) bool {
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		if n == 1 {
			inner.ServeHTTP(httptest.NewRecorder(), r) // published…
			conn, _, _ := http.NewResponseController(w).Hijack()
			conn.Close() // …but the reply is lost
			return true
		}
		return false
	})
	if _, err := e.client().Publish(context.Background(), chanA, "scan.progress", "once"); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0] == "" || keys[0] != keys[1] {
		t.Fatalf("Idempotency-Keys of the attempts: %q, want one key repeated", keys)
	}
	if got := collect(t, evs, 1); got[0].Data != `"once"` {
		t.Fatalf("events %v", got)
	}
	quiet(t, evs)
	if _, err := e.client().Publish(context.Background(), chanA, "scan.progress", "twice"); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 || keys[2] == keys[0] {
		t.Fatalf("a second Publish reused the first one's key: %q", keys)
	}
	collect(t, evs, 1)

	// Without retries the caller sees the error and nothing is sent twice.
	e.setFault(func(n int32, w http.ResponseWriter, r *http.Request) bool {
		inner.ServeHTTP(httptest.NewRecorder(), r)
		conn, _, _ := http.NewResponseController(w).Hijack()
		conn.Close()
		return true
	})
	if _, err := e.client(publisher.WithRetries(0)).Publish(context.Background(), chanA, "scan.progress", "x"); err == nil {
		t.Fatal("a lost reply was not reported")
	}
	collect(t, evs, 1)
	quiet(t, evs)
}
