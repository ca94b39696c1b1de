package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/event"
)

// fake is an SSE server following protocol.md §4 framing. Each connection runs the
// handler with its zero-based index; requests are recorded.
type fake struct {
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []*http.Request
	handle func(n int, w http.ResponseWriter, r *http.Request)
}

func newFake(t *testing.T, handle func(n int, w http.ResponseWriter, r *http.Request)) *fake {
	t.Helper()
	f := &fake{handle: handle}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		n := len(f.reqs)
		f.reqs = append(f.reqs, r.Clone(context.Background()))
		f.mu.Unlock()
		f.handle(n, w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) req(n int) *http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs[n]
}

func (f *fake) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

func startStream(w http.ResponseWriter, retryMS int, cursor string, channels ...string) {
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	q := ""
	for i, c := range channels {
		if i > 0 {
			q += ","
		}
		q += `"` + c + `"`
	}
	fmt.Fprintf(w, "retry: %d\nid: %s\nevent: stream-open\ndata: {\"channels\":[%s]}\n\n", retryMS, cursor, q)
	w.(http.Flusher).Flush()
}

func send(w http.ResponseWriter, id, typ, data string) {
	fmt.Fprintf(w, "id: %s\nevent: %s\n", id, typ)
	for _, line := range strings.Split(data, "\n") {
		fmt.Fprintf(w, "data: %s\n", line)
	}
	fmt.Fprint(w, "\n")
	w.(http.Flusher).Flush()
}

func sendEnd(w http.ResponseWriter, cond event.EndReason) {
	fmt.Fprintf(w, "event: stream-error\ndata: {\"condition\":%q,\"text\":\"bye\"}\n\n", cond)
	w.(http.Flusher).Flush()
}

func problem(w http.ResponseWriter, status int, code string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sluice", error="invalid_token"`)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"status":%d,"title":%q,"detail":"refused","code":%q}`, status, http.StatusText(status), code)
}

// hold keeps a stream open until the client leaves.
func hold(r *http.Request) { <-r.Context().Done() }

func newStream(t *testing.T, cfg Config) *Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = time.Millisecond
	}
	s := Subscribe(ctx, cfg)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func next(t *testing.T, s *Stream) Item {
	t.Helper()
	it, err := s.Next()
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return it
}

func expect[T Item](t *testing.T, s *Stream) T {
	t.Helper()
	it := next(t, s)
	v, ok := it.(T)
	if !ok {
		var zero T
		t.Fatalf("got %#v, want a %T", it, zero)
	}
	return v
}

const ch = "scan-progress:3f1c2a4e-1b2c-4d5e-8f90-123456789abc:42"

func TestReconnectResume(t *testing.T) {
	f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch n {
		case 0:
			startStream(w, 5, "c0", ch)
			send(w, "c1", "scan.progress", `{"pct":1}`)
			send(w, "c2", "scan.progress", "{\n\"pct\":2}")
		case 1:
			startStream(w, 5, r.Header.Get("Last-Event-ID"), ch)
			// The connection drops before any event: the open cursor
			// counts as seen.
		case 2:
			startStream(w, 5, r.Header.Get("Last-Event-ID"), ch)
			send(w, "c3", "scan.progress", `{"pct":3}`)
			hold(r)
		}
	})
	s := newStream(t, Config{URL: f.srv.URL, Channels: []string{ch}, LastEventID: "start"})

	if o := expect[Open](t, s); o.Cursor != "c0" || len(o.Channels) != 1 || o.Channels[0] != ch {
		t.Fatalf("open = %+v", o)
	}
	if m := expect[Message](t, s); m != (Message{ID: "c1", Type: "scan.progress", Data: `{"pct":1}`}) {
		t.Fatalf("message = %+v", m)
	}
	if m := expect[Message](t, s); m.Data != "{\n\"pct\":2}" {
		t.Fatalf("multi-line data = %q", m.Data)
	}
	rc := expect[Reconnecting](t, s)
	if !errors.Is(rc.Err, io.EOF) || rc.Delay < 5*time.Millisecond {
		t.Fatalf("reconnecting = %+v, want EOF and at least the server's retry", rc)
	}
	if o := expect[Open](t, s); o.Cursor != "c2" {
		t.Fatalf("resumed at %q, want c2", o.Cursor)
	}
	expect[Reconnecting](t, s)
	expect[Open](t, s)
	if m := expect[Message](t, s); m.ID != "c3" {
		t.Fatalf("message = %+v", m)
	}
	for i, want := range []string{"start", "c2", "c2"} {
		r := f.req(i)
		if got := r.Header.Get("Last-Event-ID"); got != want {
			t.Errorf("request %d: Last-Event-ID %q, want %q", i, got, want)
		}
		if got := r.URL.Query()["channel"]; len(got) != 1 || got[0] != ch {
			t.Errorf("request %d: channels %q", i, got)
		}
		if r.URL.Path != "/events" || r.Header.Get("Accept") != "text/event-stream" {
			t.Errorf("request %d: %s %q", i, r.URL.Path, r.Header.Get("Accept"))
		}
	}
	if s.Cursor() != "c3" {
		t.Errorf("Cursor() = %q", s.Cursor())
	}
}

func TestReset(t *testing.T) {
	f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
		startStream(w, 5, "head", ch)
		fmt.Fprint(w, "event: stream-reset\ndata: {\"reason\":\"history trimmed\"}\n\n")
		send(w, "c9", "scan.progress", `1`)
		hold(r)
	})
	s := newStream(t, Config{URL: f.srv.URL, Channels: []string{ch}, LastEventID: "old"})
	expect[Open](t, s)
	if r := expect[Reset](t, s); r.Reason != "history trimmed" {
		t.Fatalf("reset = %+v", r)
	}
	if s.Cursor() != "head" {
		t.Errorf("after reset the cursor is the open cursor, got %q", s.Cursor())
	}
	if m := expect[Message](t, s); m.ID != "c9" {
		t.Fatalf("message = %+v", m)
	}
}

func TestTokenExpiredRefreshes(t *testing.T) {
	var calls atomic.Int32
	token := func(ctx context.Context) (string, error) {
		return fmt.Sprintf("tok%d", calls.Add(1)), nil
	}
	f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			startStream(w, 1000, "c0", ch)
			send(w, "c1", "scan.progress", `1`)
			sendEnd(w, event.EndTokenExpired)
			return
		}
		startStream(w, 1000, r.URL.Query().Get("lastEventId"), ch)
		hold(r)
	})
	s := newStream(t, Config{URL: f.srv.URL, Channels: []string{ch}, Token: token})
	expect[Open](t, s)
	expect[Message](t, s)
	start := time.Now()
	if e := expect[Ended](t, s); e.Condition != event.EndTokenExpired || e.Text != "bye" {
		t.Fatalf("ended = %+v", e)
	}
	if o := expect[Open](t, s); o.Cursor != "c1" {
		t.Fatalf("resumed at %q", o.Cursor)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("token-expired reconnect waited %v; it should not wait for retry", d)
	}
	r0, r1 := f.req(0), f.req(1)
	if r0.Header.Get("Authorization") != "Bearer tok1" || r1.Header.Get("Authorization") != "Bearer tok2" {
		t.Errorf("authorization %q then %q", r0.Header.Get("Authorization"), r1.Header.Get("Authorization"))
	}
	if r1.URL.Query().Get("lastEventId") != "c1" || r1.Header.Get("Last-Event-ID") != "" {
		t.Errorf("fresh connection should carry ?lastEventId=c1, got query %q header %q",
			r1.URL.RawQuery, r1.Header.Get("Last-Event-ID"))
	}
}

func TestUnauthorizedRetriesOnceWithFreshToken(t *testing.T) {
	var calls atomic.Int32
	token := func(ctx context.Context) (string, error) {
		calls.Add(1)
		return "tok", nil
	}
	f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
		problem(w, http.StatusUnauthorized, "token_expired")
	})
	s := newStream(t, Config{URL: f.srv.URL, Channels: []string{ch}, Token: token})
	rc := expect[Reconnecting](t, s)
	var he *HTTPError
	if !errors.As(rc.Err, &he) || he.Status != 401 {
		t.Fatalf("reconnecting = %+v", rc)
	}
	_, err := s.Next()
	if !errors.As(err, &he) || he.Status != 401 || he.Code != "token_expired" || he.Detail != "refused" {
		t.Fatalf("err = %v, want a 401 HTTPError", err)
	}
	if calls.Load() != 2 || f.count() != 2 {
		t.Errorf("token calls %d, requests %d, want 2 and 2", calls.Load(), f.count())
	}
	if _, err2 := s.Next(); err2 != err {
		t.Errorf("terminal error not sticky: %v", err2)
	}
}

func TestUnauthorizedThenRecovered(t *testing.T) {
	f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			problem(w, http.StatusUnauthorized, "invalid_token")
			return
		}
		startStream(w, 5, "c0", ch)
		hold(r)
	})
	s := newStream(t, Config{URL: f.srv.URL, Channels: []string{ch},
		Token: func(context.Context) (string, error) { return "t", nil }})
	expect[Reconnecting](t, s)
	expect[Open](t, s)
}

func TestTerminalErrors(t *testing.T) {
	for _, tt := range []struct {
		status int
		code   string
		token  bool
	}{
		{http.StatusBadRequest, "malformed_channel", true},
		{http.StatusForbidden, "foreign_tenant", true},
		{http.StatusUnauthorized, "missing_credentials", false},
		{http.StatusNotFound, "not_found", true},
	} {
		t.Run(tt.code, func(t *testing.T) {
			f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
				problem(w, tt.status, tt.code)
			})
			cfg := Config{URL: f.srv.URL, Channels: []string{ch}}
			if tt.token {
				cfg.Token = func(context.Context) (string, error) { return "t", nil }
			}
			s := newStream(t, cfg)
			_, err := s.Next()
			var he *HTTPError
			if !errors.As(err, &he) || he.Status != tt.status || he.Code != tt.code {
				t.Fatalf("err = %v", err)
			}
			if f.count() != 1 {
				t.Errorf("%d requests, want 1", f.count())
			}
		})
	}
}

func TestTooManyRequestsRetries(t *testing.T) {
	f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n < 2 {
			problem(w, http.StatusTooManyRequests, "too_many_streams")
			return
		}
		startStream(w, 5, "c0", ch)
		hold(r)
	})
	s := newStream(t, Config{URL: f.srv.URL, Channels: []string{ch}})
	a, b := expect[Reconnecting](t, s), expect[Reconnecting](t, s)
	if b.Delay < a.Delay {
		t.Errorf("backoff shrank: %v then %v", a.Delay, b.Delay)
	}
	expect[Open](t, s)
}

func TestAccessRevokedIsTerminal(t *testing.T) {
	f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
		startStream(w, 5, "c0", ch)
		sendEnd(w, event.EndAccessRevoked)
	})
	s := newStream(t, Config{URL: f.srv.URL, Channels: []string{ch}})
	expect[Open](t, s)
	if e := expect[Ended](t, s); e.Condition != event.EndAccessRevoked {
		t.Fatalf("ended = %+v", e)
	}
	if _, err := s.Next(); !errors.Is(err, ErrAccessRevoked) {
		t.Fatalf("err = %v", err)
	}
	if f.count() != 1 {
		t.Errorf("%d requests after revocation, want 1", f.count())
	}
}

func TestShuttingDownHonoursRetry(t *testing.T) {
	f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			// A request arriving during a drain: retry and the end, no open.
			w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
			fmt.Fprint(w, "retry: 80\n\n")
			sendEnd(w, event.EndShuttingDown)
			return
		}
		startStream(w, 5, "c0", ch)
		hold(r)
	})
	s := newStream(t, Config{URL: f.srv.URL, Channels: []string{ch}})
	start := time.Now()
	if e := expect[Ended](t, s); e.Condition != event.EndShuttingDown {
		t.Fatalf("ended = %+v", e)
	}
	expect[Open](t, s)
	if d := time.Since(start); d < 80*time.Millisecond {
		t.Errorf("reconnected after %v, before the server's retry of 80ms", d)
	}
}

func TestSlowConsumerResumes(t *testing.T) {
	f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			startStream(w, 5, "c0", ch)
			send(w, "c1", "a.b", "1")
			sendEnd(w, event.EndSlowConsumer)
			hold(r) // the client, not the server, drops the connection
			return
		}
		startStream(w, 5, r.Header.Get("Last-Event-ID"), ch)
		hold(r)
	})
	s := newStream(t, Config{URL: f.srv.URL, Channels: []string{ch}})
	expect[Open](t, s)
	expect[Message](t, s)
	expect[Ended](t, s)
	if o := expect[Open](t, s); o.Cursor != "c1" {
		t.Fatalf("resumed at %q", o.Cursor)
	}
}

func TestQueryTokenAndPath(t *testing.T) {
	f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
		startStream(w, 5, "c0")
		hold(r)
	})
	s := newStream(t, Config{URL: f.srv.URL + "/", Path: "/api/v1/scans/42/events", UseQueryToken: true,
		Header: http.Header{"X-Trace": {"1"}},
		Token:  func(context.Context) (string, error) { return "jwt.a.b", nil }})
	expect[Open](t, s)
	r := f.req(0)
	if r.URL.Path != "/api/v1/scans/42/events" || r.URL.Query().Get("access_token") != "jwt.a.b" ||
		r.Header.Get("Authorization") != "" || r.URL.Query().Has("channel") || r.Header.Get("X-Trace") != "1" {
		t.Errorf("request %s?%s, Authorization %q", r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"))
	}
}

func TestTokenError(t *testing.T) {
	boom := errors.New("no token")
	s := newStream(t, Config{URL: "http://127.0.0.1:1", Token: func(context.Context) (string, error) { return "", boom }})
	if _, err := s.Next(); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
}

func TestNotEventStream(t *testing.T) {
	f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<html>")
	})
	s := newStream(t, Config{URL: f.srv.URL, Channels: []string{ch}})
	if _, err := s.Next(); !errors.Is(err, ErrNotEventStream) {
		t.Fatalf("err = %v", err)
	}
}

func TestCloseAndCancelLeaveNoGoroutines(t *testing.T) {
	f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
		startStream(w, 5, "c0", ch)
		hold(r)
	})
	tr := &http.Transport{}
	hc := &http.Client{Transport: tr}
	before := runtime.NumGoroutine()

	// Close from another goroutine while Next is blocked on a read.
	s := Subscribe(context.Background(), Config{URL: f.srv.URL, Channels: []string{ch}, HTTPClient: hc})
	expect[Open](t, s)
	done := make(chan error, 1)
	go func() { _, err := s.Next(); done <- err }()
	time.Sleep(10 * time.Millisecond) // let Next block; correctness does not depend on it
	_ = s.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}

	// Cancel the parent context, including during a backoff wait.
	ctx, cancel := context.WithCancel(context.Background())
	s2 := Subscribe(ctx, Config{URL: "http://127.0.0.1:1", HTTPClient: hc, MinBackoff: time.Hour})
	if _, ok := next(t, s2).(Reconnecting); !ok {
		t.Fatal("want Reconnecting for a refused connection")
	}
	go func() { time.Sleep(10 * time.Millisecond); cancel() }()
	if _, err := s2.Next(); !errors.Is(err, context.Canceled) {
		t.Fatalf("after cancel: %v", err)
	}

	tr.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBackoff(t *testing.T) {
	s := Subscribe(context.Background(), Config{URL: "http://x", MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
	defer s.Close()
	for f, want := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		s.failures = f
		d := s.backoff()
		if lo, hi := want*time.Millisecond, want*time.Millisecond*5/4; d < lo || d > hi {
			t.Errorf("failures %d: %v, want in [%v, %v]", f, d, lo, hi)
		}
	}
	s.retry, s.failures = 2*time.Second, 0
	if d := s.backoff(); d < 2*time.Second {
		t.Errorf("server retry is a lower bound, got %v", d)
	}
}
