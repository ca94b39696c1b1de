package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/problem"
	"github.com/sluicehq/sluice/server"
)

func TestPublishValidation(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.MaxEventBytes = 16 })
	ch := chanName("scan-progress", tenantA, "1")
	ev := func(data string) string {
		return `{"channel":"` + ch + `","event":"scan.progress","data":` + data + `}`
	}
	batch := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = ev(strconv.Itoa(i))
		}
		return `{"events":[` + strings.Join(parts, ",") + `]}`
	}
	cases := []struct {
		name   string
		key    string
		body   string
		status int
		code   string
		ids    int
	}{
		{"single", testPublishKey, ev(`{"pct":1}`), 200, "", 1},
		{"null data", testPublishKey, ev(`null`), 200, "", 1},
		{"exactly the limit", testPublishKey, ev(`"` + strings.Repeat("x", 14) + `"`), 200, "", 1},
		{"limit counts compact bytes", testPublishKey, ev(`[ 1, 2, 3, 4, 5, 6, 7 ]`), 200, "", 1},
		{"over the limit", testPublishKey, ev(`"` + strings.Repeat("x", 15) + `"`), 413, "event_too_large", 0},
		{"batch", testPublishKey, batch(3), 200, "", 3},
		{"batch of 1000", testPublishKey, batch(1000), 200, "", 1000},
		{"batch of 1001", testPublishKey, batch(1001), 413, "batch_too_large", 0},
		{"empty batch", testPublishKey, `{"events":[]}`, 400, "empty_batch", 0},
		{"null batch", testPublishKey, `{"events":null}`, 400, "empty_batch", 0},
		{"one bad event refuses the batch", testPublishKey, `{"events":[` + ev("1") + `,{"channel":"x","event":"a.b","data":1}]}`, 400, "malformed_channel", 0},
		{"reserved name", testPublishKey, `{"channel":"` + ch + `","event":"stream-open","data":1}`, 400, "invalid_event", 0},
		{"name without verb", testPublishKey, `{"channel":"` + ch + `","event":"scan","data":1}`, 400, "invalid_event", 0},
		{"missing data", testPublishKey, `{"channel":"` + ch + `","event":"scan.progress"}`, 400, "invalid_event", 0},
		{"not JSON", testPublishKey, `{"channel":`, 400, "invalid_json", 0},
		{"unknown field", testPublishKey, `{"channel":"` + ch + `","event":"a.b","data":1,"x":1}`, 400, "invalid_json", 0},
		{"no key", "", ev("1"), 401, "missing_credentials", 0},
		{"wrong key", "not-the-publisher-key", ev("1"), 401, "invalid_token", 0},
		{"user token is not a publisher key", token(t, "u", tenantA, time.Hour, nil), ev("1"), 401, "invalid_token", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/publish", strings.NewReader(tc.body))
			if tc.key != "" {
				req.Header.Set("Authorization", "Bearer "+tc.key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status != 200 {
				if p := problemOf(t, resp); p["code"] != tc.code {
					t.Fatalf("code %v, want %s", p["code"], tc.code)
				}
				if tc.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Bearer realm="sluice"`) {
					t.Fatal("401 without WWW-Authenticate")
				}
				return
			}
			defer resp.Body.Close()
			var reply struct{ IDs []string }
			_ = json.NewDecoder(resp.Body).Decode(&reply)
			if len(reply.IDs) != tc.ids {
				t.Fatalf("%d ids, want %d", len(reply.IDs), tc.ids)
			}
		})
	}
}

func TestPublishedInOrderAndNothingOfARefusedBatch(t *testing.T) {
	e := newEnv(t, nil)
	ch := chanName("doc", tenantA, "order")
	s := open(t, e.eventsURL(url.Values{"channel": {ch}}), bearer(token(t, "u", tenantA, time.Hour, nil)))
	s.expect("stream-open")
	st, _ := e.publish(map[string]any{"events": []any{
		map[string]any{"channel": ch, "event": "doc.updated", "data": "refused"},
		map[string]any{"channel": ch, "event": "BAD", "data": 1},
	}})
	if st != 400 {
		t.Fatal(st)
	}
	for i := range 5 {
		e.mustPublish(ch, "doc.updated", i)
	}
	for i := range 5 {
		if ev := s.expect("doc.updated"); ev.Data != strconv.Itoa(i) {
			t.Fatalf("event %d: %s", i, ev.Data)
		}
	}
}

func TestCORS(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.AllowOrigins = []string{"https://app.example"} })
	for _, path := range []string{"/events", "/publish", "/tickets", "/healthz"} {
		req, _ := http.NewRequest(http.MethodOptions, e.srv.URL+path, nil)
		req.Header.Set("Origin", "https://app.example")
		req.Header.Set("Access-Control-Request-Method", "GET")
		req.Header.Set("Access-Control-Request-Headers", "authorization, last-event-id")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		if resp.StatusCode != 204 || h.Get("Access-Control-Allow-Origin") != "https://app.example" ||
			h.Get("Access-Control-Allow-Credentials") != "true" || !strings.Contains(h.Get("Vary"), "Origin") {
			t.Fatalf("%s preflight: %d %v", path, resp.StatusCode, h)
		}
		for _, want := range []string{"Authorization", "Last-Event-ID", "Content-Type", "Cache-Control"} {
			if !strings.Contains(h.Get("Access-Control-Allow-Headers"), want) {
				t.Fatalf("%s: allowed headers %q lack %s", path, h.Get("Access-Control-Allow-Headers"), want)
			}
		}
		for _, want := range []string{"GET", "POST"} {
			if !strings.Contains(h.Get("Access-Control-Allow-Methods"), want) {
				t.Fatalf("%s: allowed methods %q", path, h.Get("Access-Control-Allow-Methods"))
			}
		}
	}
	// Another origin gets no grant; an actual request from the allowed one is granted.
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/healthz", nil)
	req.Header.Set("Origin", "https://evil.example")
	resp, _ := http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("foreign origin granted")
	}
	ch := chanName("doc", tenantA, "cors")
	h := bearer(token(t, "u", tenantA, time.Hour, nil))
	h.Set("Origin", "https://app.example")
	s := open(t, e.eventsURL(url.Values{"channel": {ch}}), h)
	if s.resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatal("stream not granted to the allowed origin")
	}

	all := newEnv(t, func(c *server.Config) { c.AllowOrigins = []string{"*"} })
	req, _ = http.NewRequest(http.MethodGet, all.srv.URL+"/healthz", nil)
	req.Header.Set("Origin", "https://any.example")
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://any.example" {
		t.Fatal("* must echo the origin")
	}
}

func TestTicketsThroughHTTP(t *testing.T) {
	e := newEnv(t, nil)
	tok := token(t, "u1", tenantA, time.Hour, nil)
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/tickets", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	st, reply := doJSON(t, req)
	if st != 200 || reply["expires_in"] != float64(30) || reply["ticket"] == "" {
		t.Fatalf("%d %v", st, reply)
	}
	ticket := reply["ticket"].(string)
	q := url.Values{"channel": {chanName("doc", tenantA, "t")}, "ticket": {ticket}}
	s := open(t, e.eventsURL(q), nil)
	s.expect("stream-open")
	if s2, resp := tryOpen(t, e.eventsURL(q), nil); s2 != nil || resp.StatusCode != 401 {
		t.Fatal("a ticket must be accepted once")
	}
	// Tickets are asked for with header credentials only.
	req, _ = http.NewRequest(http.MethodPost, e.srv.URL+"/tickets?access_token="+tok, nil)
	if st, _ := doJSON(t, req); st != 401 {
		t.Fatalf("ticket for a query token: %d", st)
	}
}

func TestHealthAndErrorsAreProblems(t *testing.T) {
	e := newEnv(t, nil)
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200} {
		resp, err := http.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	resp, _ := http.Get(e.srv.URL + "/nope")
	if resp.StatusCode != 404 || problemOf(t, resp)["code"] != "not_found" {
		t.Fatal("404 is not a problem")
	}
	resp, _ = http.Post(e.srv.URL+"/events", "application/json", nil)
	if resp.StatusCode != 405 || problemOf(t, resp)["code"] != "method_not_allowed" {
		t.Fatal("405 is not a problem")
	}
	resp, _ = http.Get(e.srv.URL + "/metrics")
	body := new(bytes.Buffer)
	_, _ = body.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(body.String(), "go_goroutines") {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
}

func TestDrain(t *testing.T) {
	e := newEnv(t, func(c *server.Config) {
		c.Retry = time.Second
		c.DrainSpread = 3 * time.Second
	})
	ch := chanName("doc", tenantA, "drain")
	q := url.Values{"channel": {ch}}
	tok := token(t, "u1", tenantA, time.Hour, nil)
	s := open(t, e.eventsURL(q), bearer(tok))
	s.expect("stream-open")
	e.mustPublish(ch, "doc.updated", "before")

	done := make(chan error, 1)
	go func() { done <- e.gw.Shutdown(context.Background()) }()
	s.expect("doc.updated")
	ev := s.expect("stream-error")
	if ev.Data != `{"condition":"shutting-down","text":"the server is shutting down; reconnect"}` {
		t.Fatalf("data %s", ev.Data)
	}
	s.ended(2 * time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	resp, _ := http.Get(e.srv.URL + "/readyz")
	if resp.StatusCode != 503 || problemOf(t, resp)["code"] != "draining" {
		t.Fatalf("readyz during the drain: %d", resp.StatusCode)
	}
	// A new stream during the drain: 200, a spread retry, shutting-down.
	resp2, raw := rawPrefix(t, e.eventsURL(q), bearer(tok), "shutting-down")
	if resp2.StatusCode != 200 || !strings.HasPrefix(raw, "retry: ") {
		t.Fatalf("%d %q", resp2.StatusCode, raw)
	}
	ms, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(strings.SplitN(raw, "\n", 2)[0], "retry: ")))
	if ms < 1000 || ms > 3000 {
		t.Fatalf("retry %d ms outside [SLUICE_RETRY, SLUICE_DRAIN_SPREAD]", ms)
	}
}

// TestLibraryStream mounts a feature endpoint whose channels hook looks the
// resource up and applies its own rules; the gateway does the rest.
func TestLibraryStream(t *testing.T) {
	scans := map[string]string{"42": tenantA} // scan id → tenant
	e := newEnv(t, nil, server.WithRoutes(func(gw *sluice.Gateway, mux *http.ServeMux) {
		mux.Handle("GET /api/v1/scans/{id}/events", gw.Stream(
			func(r *http.Request, p auth.Principal) ([]channel.Name, error) {
				id := r.PathValue("id")
				if scans[id] != p.Tenant {
					return nil, problem.New(http.StatusNotFound, problem.CodeNotFound, "no such scan")
				}
				if p.User == "guest" {
					return nil, problem.New(http.StatusForbidden, problem.CodeForbidden, "guests may not watch scans")
				}
				if id == "broken" {
					return nil, errors.New("store down")
				}
				return []channel.Name{channel.MustMake("scan-progress", p.Tenant, id)}, nil
			}))
	}))
	gw := e.gw
	u := e.srv.URL + "/api/v1/scans/42/events"
	s := open(t, u, bearer(token(t, "u1", tenantA, time.Hour, nil)))
	s.expect("stream-open")
	if _, err := gw.Publish(context.Background(), sluice.Event{Channel: channel.MustMake("scan-progress", tenantA, "42").String(), Type: "scan.progress", Data: map[string]int{"pct": 50}}); err != nil {
		t.Fatal(err)
	}
	if ev := s.expect("scan.progress"); ev.Data != `{"pct":50}` {
		t.Fatal(ev.Data)
	}
	for _, tc := range []struct {
		tok    string
		status int
	}{
		{token(t, "u1", tenantB, time.Hour, nil), 404},
		{token(t, "guest", tenantA, time.Hour, nil), 403},
		{"", 401},
	} {
		h := http.Header{}
		if tc.tok != "" {
			h = bearer(tc.tok)
		}
		if s, resp := tryOpen(t, u, h); s != nil || resp.StatusCode != tc.status {
			t.Fatalf("want %d, got %d", tc.status, resp.StatusCode)
		}
	}
	// Other methods get a problem too.
	resp, _ := http.Post(u, "application/json", nil)
	if resp.StatusCode != 405 && resp.StatusCode != 404 {
		t.Fatalf("POST to a stream route: %d", resp.StatusCode)
	}
	problemOf(t, resp)
	// A route conflicting with the gateway's own is an error of New.
	cfg := server.DefaultConfig()
	cfg.JWTSecret = testSecret
	_, err := server.New(context.Background(), cfg, server.WithRoutes(func(g *sluice.Gateway, mux *http.ServeMux) {
		mux.Handle("/events", http.NotFoundHandler())
	}))
	if err == nil {
		t.Fatal("a conflicting route was accepted")
	}
	// The in-process publish validates like POST /publish.
	if _, err := gw.Publish(context.Background(), sluice.Event{Channel: channel.MustMake("scan-progress", tenantA, "42").String(), Type: "stream-open", Data: 1}); err == nil {
		t.Fatal("reserved name accepted in-process")
	}
}
