package server_test

// The HTTP endpoints other than streams and publishing: CORS preflights on
// every endpoint, POST /tickets, /healthz, /readyz and /metrics, and the
// problems that answer unknown paths and methods.

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/server"
)

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
