package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	sse "github.com/tmaxmax/go-sse"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/server"
)

const (
	testSecret     = "test-secret-0123456789abcdef0123456789"
	testPublishKey = "test-publisher-key-0123456789"
	tenantA        = "3f1c2a9e-8d4b-4c1e-9a7f-0b5e6d7c8a91"
	tenantB        = "7a0e4b1c-2d3f-4e5a-8b6c-9d0e1f2a3b4c"
)

// env is a gateway served over real HTTP on a free loopback port.
type env struct {
	t   *testing.T
	gw  *server.Server
	srv *httptest.Server
}

func newEnv(t *testing.T, mutate func(*server.Config), opts ...server.Option) *env {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.JWTSecret = testSecret
	cfg.PublishKeys = []string{testPublishKey}
	cfg.LogLevel = "error"
	if mutate != nil {
		mutate(&cfg)
	}
	gw, err := server.New(context.Background(), cfg, opts...)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	srv := httptest.NewUnstartedServer(gw.Handler())
	srv.Config = sluice.NewHTTPServer(gw.Handler())
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
		srv.Close()
		_ = gw.Close()
	})
	return &env{t: t, gw: gw, srv: srv}
}

// token mints an HS256 JWT for user in tenant, valid for ttl, with extra
// claims merged in (a nil value deletes a claim).
func token(t testing.TB, user, tenant string, ttl time.Duration, extra map[string]any) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{"sub": user, "tenant_id": tenant, "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// chanName is the canonical name of channel prefix:tenant:res.
func chanName(prefix, tenant, res string) string {
	return channel.MustMake(prefix, tenant, res).String()
}

func (e *env) eventsURL(q url.Values) string { return e.srv.URL + "/events?" + q.Encode() }

// publish posts body to /publish and returns status and decoded reply.
func (e *env) publish(body any) (int, map[string]any) {
	e.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/publish", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+testPublishKey)
	req.Header.Set("Content-Type", "application/json")
	return doJSON(e.t, req)
}

func (e *env) mustPublish(ch, typ string, data any) string {
	e.t.Helper()
	st, reply := e.publish(map[string]any{"channel": ch, "event": typ, "data": data})
	if st != http.StatusOK {
		e.t.Fatalf("publish: %d %v", st, reply)
	}
	return reply["ids"].([]any)[0].(string)
}

// doJSON sends req and returns its status and JSON reply (nil if empty).
func doJSON(t testing.TB, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("reply is not JSON: %q", raw)
		}
	}
	return resp.StatusCode, m
}

// stream is an open SSE response read by go-sse's parser in the background.
type stream struct {
	t      testing.TB
	resp   *http.Response
	cancel context.CancelFunc
	events chan sse.Event
	done   chan error
}

// open GETs url with header and returns the stream if the status is 200; it
// fails the test otherwise.
func open(t testing.TB, rawURL string, header http.Header) *stream {
	t.Helper()
	s, resp := tryOpen(t, rawURL, header)
	if s == nil {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", rawURL, resp.StatusCode, body)
	}
	return s
}

func tryOpen(t testing.TB, rawURL string, header http.Header) (*stream, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		t.Cleanup(func() { resp.Body.Close() })
		return nil, resp
	}
	s := &stream{t: t, resp: resp, cancel: cancel, events: make(chan sse.Event, 4096), done: make(chan error, 1)}
	go func() {
		defer close(s.events)
		for ev, err := range sse.Read(resp.Body, &sse.ReadConfig{MaxEventSize: 1 << 20}) {
			if err != nil {
				s.done <- err
				return
			}
			s.events <- ev
		}
		s.done <- nil
	}()
	t.Cleanup(s.close)
	return s, resp
}

func (s *stream) close() {
	s.cancel()
	s.resp.Body.Close()
}

// next returns the next event, failing the test after d.
func (s *stream) next(d time.Duration) sse.Event {
	s.t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			s.t.Fatalf("stream ended while waiting for an event")
		}
		return ev
	case <-time.After(d):
		s.t.Fatalf("no event within %v", d)
	}
	return sse.Event{}
}

// expect returns the next event and checks its type.
func (s *stream) expect(typ string) sse.Event {
	s.t.Helper()
	ev := s.next(5 * time.Second)
	if ev.Type != typ {
		s.t.Fatalf("event type %q (data %s), want %q", ev.Type, ev.Data, typ)
	}
	return ev
}

// ended waits for the server to close the stream.
func (s *stream) ended(d time.Duration) {
	s.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case _, ok := <-s.events:
			if !ok {
				return
			}
		case <-deadline:
			s.t.Fatalf("stream still open after %v", d)
		}
	}
}

// streamError reads until the stream-error event and returns its condition.
func (s *stream) streamError(d time.Duration) string {
	s.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				s.t.Fatalf("stream ended without stream-error")
			}
			if ev.Type != "stream-error" {
				continue
			}
			var c struct{ Condition string }
			if err := json.Unmarshal([]byte(ev.Data), &c); err != nil {
				s.t.Fatalf("stream-error data %q", ev.Data)
			}
			return c.Condition
		case <-deadline:
			s.t.Fatalf("no stream-error within %v", d)
			return ""
		}
	}
}

// bearer is an Authorization header with bearer credential tok.
func bearer(tok string) http.Header {
	return http.Header{"Authorization": {"Bearer " + tok}}
}

// rawPrefix GETs rawURL and returns the response and its body verbatim, up
// to the end of the line where until has been read (or the end of the body).
func rawPrefix(t testing.TB, rawURL string, header http.Header, until string) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	var got strings.Builder
	for !strings.Contains(got.String(), until) {
		line, err := br.ReadString('\n')
		got.WriteString(line)
		if err != nil {
			break
		}
	}
	return resp, got.String()
}

// rawStreamRequest is the HTTP/1.1 request of a stream of q with bearer
// token tok, for a test that writes it on a connection of its own.
func rawStreamRequest(q url.Values, tok string) string {
	return "GET /events?" + q.Encode() + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok + "\r\n\r\n"
}

// readOpening reads, on c after a stream request, the response head and the
// event-stream blocks up to stream-open, which it returns. It fails the
// test on a refusal, an error or after d.
func readOpening(t testing.TB, c net.Conn, d time.Duration) testutil.Block {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("stream response: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream response: %s", resp.Status)
	}
	r := testutil.NewBlockReader(resp.Body)
	for {
		b, err := r.Next()
		if err != nil {
			t.Fatalf("reading the opening block: %v", err)
		}
		if b.Event == "stream-open" {
			return b
		}
	}
}

// problemOf checks a problem+json reply.
func problemOf(t *testing.T, resp *http.Response) map[string]any {
	t.Helper()
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var p map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	if p["code"] == "" || p["title"] == "" || p["detail"] == nil || int(p["status"].(float64)) != resp.StatusCode {
		t.Fatalf("incomplete problem %v", p)
	}
	return p
}

// issueTicket asks POST /tickets for a ticket with header credential tok.
func issueTicket(t testing.TB, e *env, tok string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/tickets", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	st, reply := doJSON(t, req)
	tk, _ := reply["ticket"].(string)
	if st != http.StatusOK || tk == "" {
		t.Fatalf("POST /tickets: %d %v", st, reply)
	}
	return tk
}

// refused opens rawURL and checks that it is refused with status and code
// (any code when code is empty).
func refused(t *testing.T, rawURL string, h http.Header, status int, code string) map[string]any {
	t.Helper()
	s, resp := tryOpen(t, rawURL, h)
	if s != nil {
		t.Fatalf("GET %s opened a stream, want %d %s", redactURL(rawURL), status, code)
	}
	if resp.StatusCode != status {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d (%s), want %d %s", resp.StatusCode, body, status, code)
	}
	p := problemOf(t, resp)
	if code != "" && p["code"] != code {
		t.Fatalf("code %v, want %s", p["code"], code)
	}
	return p
}

// redactURL is raw with its credentials redacted, for failure messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "?"
	}
	return auth.RedactURL(u)
}

// claims are the claims of a valid token of user in tenant, for sign.
func claims(user, tenant string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"sub": user, "tenant_id": tenant, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

// sign signs c with method m and key.
func sign(t *testing.T, m jwt.SigningMethod, c jwt.Claims, key any) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// must returns v, panicking on err.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// postRevoke calls POST /revoke with the publisher key.
func postRevoke(t *testing.T, e *env, key string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/revoke", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	return doJSON(t, req)
}
