package server_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/server"
)

// rawAnswer is what a raw connection received before the server closed it.
type rawAnswer struct {
	head   string        // response bytes, at most the first 4 KiB
	closed bool          // the server closed the connection
	after  time.Duration // when it did, from the dial
}

// holdRaw dials addr, writes req and never anything else, then reads until
// the server closes the connection or wait passes.
func holdRaw(addr, req string, wait time.Duration) rawAnswer {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return rawAnswer{head: "dial: " + err.Error()}
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		return rawAnswer{head: "write: " + err.Error(), closed: true, after: time.Since(start)}
	}
	_ = c.SetReadDeadline(start.Add(wait))
	var head []byte
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if len(head) < 4096 {
			head = append(head, buf[:min(n, 4096-len(head))]...)
		}
		if err != nil {
			var ne net.Error
			timeout := errors.As(err, &ne) && ne.Timeout()
			return rawAnswer{head: string(head), closed: !timeout, after: time.Since(start)}
		}
	}
}

// healthzWithin GETs /healthz on a fresh connection and fails the test unless
// a 200 arrives within d.
func healthzWithin(t *testing.T, base string, d time.Duration) time.Duration {
	t.Helper()
	hc := &http.Client{Timeout: d, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	resp, err := hc.Get(base + "/healthz")
	if err != nil {
		t.Fatalf("/healthz during the attack: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz during the attack: %d", resp.StatusCode)
	}
	return time.Since(start)
}

// TestSlowlorisBodyNeverSent opens 300 connections whose requests declare a
// body (Content-Length or chunked) on every kind of endpoint and never send
// it. /healthz keeps answering at once, every refused request is answered
// with Connection: close, and the server closes every connection: at once
// when the handler did not read the body, after SLUICE_BODY_TIMEOUT when it
// did (an authenticated publish).
func TestSlowlorisBodyNeverSent(t *testing.T) {
	const n = 300
	const bodyTimeout = time.Second
	e := newEnv(t, func(c *server.Config) { c.BodyTimeout = bodyTimeout; c.HeaderTimeout = time.Second })
	u, _ := url.Parse(e.srv.URL)
	ch := chanName("doc", tenantA, "sl")
	kinds := []struct{ name, req string }{
		{"healthz", "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"},
		{"healthz chunked", "GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"publish without key", "POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 262144\r\n\r\n"},
		{"publish with key", "POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + testPublishKey + "\r\nContent-Length: 1000\r\n\r\n{\"chan"},
		{"tickets chunked", "POST /tickets HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":"},
		{"events", "GET /events?channel=" + ch + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n"},
		{"not found", "PUT /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n"},
	}
	wait := bodyTimeout + 4*time.Second
	answers := make([]rawAnswer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = holdRaw(u.Host, kinds[i%len(kinds)].req, wait)
		}()
	}
	time.Sleep(300 * time.Millisecond) // let the connections in before probing
	d := healthzWithin(t, e.srv.URL, time.Second)
	wg.Wait()

	closed := 0
	var slowest time.Duration
	for i, a := range answers {
		k := kinds[i%len(kinds)]
		if !a.closed {
			t.Errorf("%s: connection %d still open after %v (answer %q)", k.name, i, wait, a.head)
			continue
		}
		closed++
		slowest = max(slowest, a.after)
		head, _, _ := strings.Cut(a.head, "\r\n\r\n")
		if !strings.HasPrefix(head, "HTTP/1.1 ") || !strings.Contains(head, "\r\nConnection: close") {
			t.Errorf("%s: answer %q, want a response with Connection: close", k.name, a.head)
			continue
		}
		status, _ := strconv.Atoi(head[9:12])
		if status >= 400 && !strings.Contains(head, "Content-Type: application/problem+json") {
			t.Errorf("%s: error answer without a problem body: %q", k.name, head)
		}
	}
	if closed < n {
		t.Fatalf("%d of %d connections closed", closed, n)
	}
	t.Logf("/healthz answered in %v during the attack; %d/%d closed, the last after %v", d.Round(time.Millisecond), closed, n, slowest.Round(time.Millisecond))
}

// TestUnreadBodyDoesNotLoseTheAnswer sends a complete body to an endpoint that
// does not read it: the answer arrives whole and the connection ends cleanly
// (no reset eating the answer), while a publish that reads its body keeps
// its connection for the next request.
func TestUnreadBodyDoesNotLoseTheAnswer(t *testing.T) {
	e := newEnv(t, nil)
	u, _ := url.Parse(e.srv.URL)
	body := strings.Repeat("x", 100_000)
	a := holdRaw(u.Host, "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body, 5*time.Second)
	if !a.closed || !strings.HasPrefix(a.head, "HTTP/1.1 200 ") || !strings.HasSuffix(a.head, `{"status":"ok"}`+"\n") {
		t.Fatalf("closed %v, answer %q", a.closed, a.head)
	}

	// Two publishes reuse one connection.
	var conns atomic.Int32
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conns.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}}
	ch := chanName("doc", tenantA, "keep")
	for range 3 {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/publish", strings.NewReader(`{"channel":"`+ch+`","event":"doc.updated","data":1}`))
		req.Header.Set("Authorization", "Bearer "+testPublishKey)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("publish: %d", resp.StatusCode)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("three publishes took %d connections, want 1 (keep-alive)", n)
	}
}

// TestSlowlorisHeadersNeverComplete opens 300 connections that send part of
// a request's headers and stop. Past SLUICE_MAX_PENDING_CONNS_PER_ADDR the
// oldest unfinished connections of the address are closed at once with a 429
// problem; the others are closed at SLUICE_HEADER_TIMEOUT; /healthz, from
// the same address, answers all along.
func TestSlowlorisHeadersNeverComplete(t *testing.T) {
	const n, perAddr = 300, 100
	const headerTimeout = 2 * time.Second
	e := newEnv(t, func(c *server.Config) { c.HeaderTimeout = headerTimeout; c.MaxPendingConnsPerAddr = perAddr })
	u, _ := url.Parse(e.srv.URL)
	wait := headerTimeout + 4*time.Second
	answers := make([]rawAnswer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = holdRaw(u.Host, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", wait)
		}()
	}
	time.Sleep(300 * time.Millisecond)
	d := healthzWithin(t, e.srv.URL, time.Second)
	wg.Wait()
	closed, early, problems := 0, 0, 0
	for i, a := range answers {
		if !a.closed {
			t.Errorf("connection %d still open after %v", i, wait)
			continue
		}
		closed++
		if a.after < headerTimeout { // a connection the timeout closes lived at least that long
			early++
		}
		if strings.HasPrefix(a.head, "HTTP/1.1 429 ") {
			if !strings.Contains(a.head, "Content-Type: application/problem+json") || !strings.Contains(a.head, `"code":"too_many_pending_connections"`) {
				t.Errorf("429 without its problem: %q", a.head)
			}
			problems++
		}
	}
	if closed < n {
		t.Fatalf("%d of %d connections closed", closed, n)
	}
	if early < n-perAddr-10 || problems == 0 {
		t.Fatalf("%d closed before the header timeout (%d with a 429 problem), want about %d", early, problems, n-perAddr)
	}
	t.Logf("/healthz answered in %v; %d closed early (%d with a problem), all %d within %v", d.Round(time.Millisecond), early, problems, n, wait)
}

// TestUncleanPathNeverRedirects asks for paths net/http's ServeMux would
// clean with a redirect echoing the query (and its ticket): each is a 404
// problem, with no Location.
func TestUncleanPathNeverRedirects(t *testing.T) {
	e := newEnv(t, nil)
	u, _ := url.Parse(e.srv.URL)
	for _, p := range []string{"/./events", "//events", "/x/../events", "/events/.", "/healthz/..", "/./tickets"} {
		t.Run(p, func(t *testing.T) {
			a := holdRaw(u.Host, "GET "+p+"?ticket=SECRET-TICKET&access_token=SECRET-TOKEN HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
			if !strings.HasPrefix(a.head, "HTTP/1.1 404 ") || !strings.Contains(a.head, "application/problem+json") {
				t.Fatalf("answer %q, want a 404 problem", a.head)
			}
			if strings.Contains(a.head, "SECRET") || strings.Contains(a.head, "Location:") {
				t.Fatalf("the answer echoes the request: %q", a.head)
			}
		})
	}
}

// TestErrorsAreProblems sends requests that net/http's ServeMux would refuse
// in text/plain before any route: each answer is a problem.
func TestErrorsAreProblems(t *testing.T) {
	e := newEnv(t, nil)
	u, _ := url.Parse(e.srv.URL)
	cases := []struct {
		name, req string
		status    int
	}{
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: close\r\n\r\n", 405},
		{"CONNECT path", "CONNECT /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405},
		{"headers over the limit", "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: " + strings.Repeat("a", 20000) + "\r\n\r\n", 431},
		{"absolute form", "GET http://x/./events?ticket=SECRET HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := holdRaw(u.Host, tc.req, 5*time.Second)
			want := fmt.Sprintf("HTTP/1.1 %d ", tc.status)
			if !strings.HasPrefix(a.head, want) || !strings.Contains(a.head, "Content-Type: application/problem+json") {
				t.Fatalf("answer %q, want %d problem", a.head, tc.status)
			}
			if strings.Contains(a.head, "SECRET") {
				t.Fatalf("the answer echoes the request: %q", a.head)
			}
		})
	}
}

// TestTicketFlood has one user ask for tickets as fast as 8 connections
// allow for 2 s: the tickets issued are held to the burst plus the rate,
// every refusal is a 429 problem with Retry-After, other users are not
// held back, and the heap does not grow with the flood.
func TestTicketFlood(t *testing.T) {
	const rate, burst = 20, 10
	e := newEnv(t, func(c *server.Config) { c.TicketRate = rate; c.TicketBurst = burst; c.MaxTicketsPerUser = 1000 })
	tok := token(t, "flooder", tenantA, time.Hour, nil)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	var ok, refused, bad atomic.Int64
	var badMsg atomic.Value
	start := time.Now()
	deadline := start.Add(2 * time.Second)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/tickets", nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					bad.Add(1)
					badMsg.Store(err.Error())
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode == 200:
					ok.Add(1)
				case resp.StatusCode == 429 && resp.Header.Get("Retry-After") != "" &&
					resp.Header.Get("Content-Type") == "application/problem+json" && strings.Contains(string(body), `"code":"rate_limited"`):
					refused.Add(1)
				default:
					bad.Add(1)
					badMsg.Store(fmt.Sprintf("%d %v %s", resp.StatusCode, resp.Header, body))
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if bad.Load() > 0 {
		t.Fatalf("%d unexpected answers, e.g. %v", bad.Load(), badMsg.Load())
	}
	limit := int64(burst + rate*elapsed.Seconds() + 2)
	if ok.Load() > limit || refused.Load() == 0 {
		t.Fatalf("%d tickets issued in %v (%d refused), want at most %d", ok.Load(), elapsed, refused.Load(), limit)
	}
	// Another user of the same tenant is not held back.
	issueTicket(t, e, token(t, "bystander", tenantA, time.Hour, nil))

	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if growth > 8<<20 {
		t.Fatalf("heap grew %d KiB during the flood", growth>>10)
	}
	t.Logf("%d issued, %d refused in %v; heap %+d KiB", ok.Load(), refused.Load(), elapsed.Round(time.Millisecond), growth>>10)
}

// TestTicketOutstandingCap issues a user's whole allowance of outstanding
// tickets: the next is a 429 too_many_tickets with Retry-After; redeeming one
// frees a place.
func TestTicketOutstandingCap(t *testing.T) {
	const capacity = 5
	e := newEnv(t, func(c *server.Config) { c.TicketRate = 1000; c.TicketBurst = 1000; c.MaxTicketsPerUser = capacity })
	tok := token(t, "u1", tenantA, time.Hour, nil)
	var tickets []string
	for range capacity {
		tickets = append(tickets, issueTicket(t, e, tok))
	}
	ask := func() *http.Response {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/tickets", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := ask()
	p := problemOf(t, resp)
	if resp.StatusCode != 429 || p["code"] != "too_many_tickets" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("ticket over the cap: %d %v %v", resp.StatusCode, resp.Header, p)
	}
	s := open(t, e.eventsURL(url.Values{"channel": {chanName("doc", tenantA, "cap")}, "ticket": {tickets[0]}}), nil)
	s.expect("stream-open")
	resp = ask()
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("after a redemption: %d", resp.StatusCode)
	}
}

// TestErrorsBeforeHandlers pins what net/http answers itself, before any
// handler, on a listener that is not a ProblemListener (docs/security.md):
// each is an error status, the connection is closed, and nothing of the
// request is echoed. A Go release that changes this fails here (and
// TestProblemListener, which relies on the form), so that the
// documentation follows.
func TestErrorsBeforeHandlers(t *testing.T) {
	e := newEnv(t, nil)
	u, _ := url.Parse(e.srv.URL)
	cases := []struct {
		name, req string
		status    int
	}{
		{"NUL in a header", "GET /events?ticket=SECRET HTTP/1.1\r\nHost: x\r\nX-A: a\x00SECRET\r\n\r\n", 400},
		{"unknown transfer encoding", "POST /publish?ticket=SECRET HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: SECRET\r\n\r\n", 501},
		{"HTTP version", "GET /healthz?ticket=SECRET HTTP/3.0\r\nHost: x\r\n\r\n", 505},
		{"no Host", "GET /healthz?ticket=SECRET HTTP/1.1\r\n\r\n", 400},
		{"conflicting lengths", "POST /publish?ticket=SECRET HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
		{"unknown expectation", "GET /healthz?ticket=SECRET HTTP/1.1\r\nHost: x\r\nExpect: SECRET\r\n\r\n", 417},
		{"head past the hard ceiling", "GET /healthz?ticket=SECRET HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n", 431},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := holdRaw(u.Host, tc.req, 5*time.Second)
			if !a.closed || !strings.HasPrefix(a.head, fmt.Sprintf("HTTP/1.1 %d ", tc.status)) {
				t.Fatalf("closed %v, answer %q; want %d and a close", a.closed, a.head, tc.status)
			}
			if strings.Contains(a.head, "SECRET") {
				t.Fatalf("the answer echoes the request: %q", a.head)
			}
		})
	}
}

// TestBodyGuardForAnyHandler serves a service's own mux, with a handler that
// never reads bodies, through sluice.NewHTTPServer: a request that declares
// a body and never sends it is answered and closed at once.
func TestBodyGuardForAnyHandler(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/app", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "app") })
	srv := sluice.NewHTTPServer(mux)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	a := holdRaw(ln.Addr().String(), "POST /app HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n", 5*time.Second)
	if !a.closed || a.after > 2*time.Second || !strings.HasPrefix(a.head, "HTTP/1.1 200 ") || !strings.Contains(a.head, "Connection: close") {
		t.Fatalf("closed %v after %v, answer %q", a.closed, a.after, a.head)
	}
}

// TestLargeUnreadBodyAnswered sends 4 MiB to endpoints that refuse before
// reading: the client gets the whole answer, not a reset.
func TestLargeUnreadBodyAnswered(t *testing.T) {
	e := newEnv(t, nil)
	u, _ := url.Parse(e.srv.URL)
	for _, target := range []string{"GET /healthz", "POST /publish"} {
		t.Run(target, func(t *testing.T) {
			c, err := net.Dial("tcp", u.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			const size = 4 << 20
			go func() {
				_, _ = io.WriteString(c, target+" HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n")
				_, _ = c.Write(make([]byte, size))
			}()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil || len(body) == 0 || !resp.Close {
				t.Fatalf("%d %q %v, close %v", resp.StatusCode, body, err, resp.Close)
			}
		})
	}
}

// TestProblemListener serves the gateway through sluice.ProblemListener, as
// the sluice command does: what net/http refuses before any handler is a
// problem with the same status; everything else is untouched, and streams
// are still parked (no goroutine each).
func TestProblemListener(t *testing.T) {
	cfg := server.DefaultConfig()
	cfg.JWTSecret = testSecret
	cfg.PublishKeys = []string{testPublishKey}
	cfg.LogLevel = "error"
	gw, err := server.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Close() })
	srv := sluice.NewHTTPServer(gw.Handler())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(sluice.ProblemListener(ln)) }()
	t.Cleanup(func() { _ = srv.Close() })
	addr := ln.Addr().String()

	cases := []struct {
		name, req string
		status    int
		code      string
	}{
		{"NUL in a header", "GET /events?ticket=SECRET HTTP/1.1\r\nHost: x\r\nX-A: a\x00SECRET\r\n\r\n", 400, "bad_request"},
		{"unknown transfer encoding", "POST /publish?ticket=SECRET HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: SECRET\r\n\r\n", 501, "not_implemented"},
		{"HTTP version", "GET /healthz?ticket=SECRET HTTP/3.0\r\nHost: x\r\n\r\n", 505, "http_version_not_supported"},
		{"no Host", "GET /healthz?ticket=SECRET HTTP/1.1\r\n\r\n", 400, "bad_request"},
		{"conflicting lengths", "POST /publish?ticket=SECRET HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "bad_request"},
		{"head past the hard ceiling", "GET /healthz?ticket=SECRET HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n", 431, "headers_too_large"},
		{"a handler's own problem", "GET /nowhere?ticket=SECRET HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, "not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := holdRaw(addr, tc.req, 5*time.Second)
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(a.head)), nil)
			if err != nil {
				t.Fatalf("answer %q: %v", a.head, err)
			}
			body, _ := io.ReadAll(resp.Body)
			if !a.closed || resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/problem+json" ||
				!strings.Contains(string(body), `"code":"`+tc.code+`"`) {
				t.Fatalf("closed %v, answer %q; want a %d %s problem", a.closed, a.head, tc.status, tc.code)
			}
			if strings.Contains(a.head, "SECRET") {
				t.Fatalf("the answer echoes the request: %q", a.head)
			}
		})
	}

	// Streams park as they do on a plain listener: 50 streams through each
	// cost the same goroutines (none each where streams are parked).
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv2 := sluice.NewHTTPServer(gw.Handler())
	go func() { _ = srv2.Serve(plain) }()
	t.Cleanup(func() { _ = srv2.Close() })
	streams := func(addr, user string) int {
		req := rawStreamRequest(url.Values{"channel": {chanName("doc", tenantA, "pl")}}, token(t, user, tenantA, time.Hour, nil))
		open := gw.OpenStreams()
		before := runtime.NumGoroutine()
		for range 50 {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			_, _ = io.WriteString(c, req)
			readOpening(t, c, 5*time.Second)
		}
		testutil.Eventually(t, 5*time.Second, "50 streams open", func() bool { return gw.OpenStreams() == open+50 })
		time.Sleep(100 * time.Millisecond) // let parking settle
		return runtime.NumGoroutine() - before
	}
	onPlain := streams(plain.Addr().String(), "plain")
	onProblem := streams(addr, "problem")
	if onProblem > onPlain+10 {
		t.Fatalf("50 streams cost %d goroutines through ProblemListener, %d on a plain listener", onProblem, onPlain)
	}
	t.Logf("50 streams: +%d goroutines on a plain listener, +%d through ProblemListener", onPlain, onProblem)
}
