package server_test

// A feature stream endpoint mounted with server.WithRoutes: its channels
// hook decides what a request may read, the gateway does the rest.

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/broker/redis"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/problem"
	"github.com/sluicehq/sluice/server"
)

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

// TestWithNilBroker: a nil *redis.Broker given to WithBroker is an error of
// New, whatever else is wrong (an early error used to close it: a crash).
func TestWithNilBroker(t *testing.T) {
	var rb *redis.Broker
	for _, membership := range []string{"token", "file:/nonexistent/members.json"} {
		cfg := server.DefaultConfig()
		cfg.JWTSecret = testSecret
		cfg.Membership = membership
		_, err := server.New(context.Background(), cfg, server.WithBroker(rb))
		if err == nil || !strings.Contains(err.Error(), "nil *redis.Broker") {
			t.Errorf("membership %s, WithBroker(nil *redis.Broker): %v", membership, err)
		}
	}
}
