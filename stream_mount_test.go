package sluice_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/auth/jwtauth"
	"github.com/sluicehq/sluice/broker/redis"
	"github.com/sluicehq/sluice/channel"
)

// TestStreamOnOwnMux mounts Gateway.Stream on a service's own mux, outside
// the gateway's Handler: the endpoint still speaks the whole protocol of
// GET /events around the stream (CORS, the request size limits, problem+json
// refusals), as protocol.md §1 promises of such endpoints.
func TestStreamOnOwnMux(t *testing.T) {
	ctx := context.Background()
	secret := []byte("mount-test-secret-0123456789abcdef")
	verifier, err := jwtauth.New(ctx, jwtauth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	const origin = "https://app.example"
	gw, err := sluice.New(ctx, sluice.Options{Auth: auth.Config{Tokens: verifier}, AllowOrigins: []string{origin}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Close() })
	const tenant = "3f1c2a9e-8d4b-4c1e-9a7f-0b5e6d7c8a91"
	mux := http.NewServeMux()
	mux.Handle("/scans/{id}/events", gw.Stream(func(r *http.Request, p auth.Principal) ([]channel.Name, error) {
		return []channel.Name{channel.MustMake("scan-progress", p.Tenant, r.PathValue("id"))}, nil
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "alice", "tenant_id": tenant, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(secret)

	do := func(method, target string, h http.Header) *http.Response {
		t.Helper()
		ctx, cancel := context.WithCancel(ctx)
		t.Cleanup(cancel)
		req, _ := http.NewRequestWithContext(ctx, method, srv.URL+target, nil)
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = resp.Body.Close() })
		return resp
	}

	// A browser's stream from an allowed origin is granted.
	resp := do(http.MethodGet, "/scans/42/events?access_token="+tok, http.Header{"Origin": {origin}})
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != origin {
		t.Errorf("stream from %s: %d, Access-Control-Allow-Origin %q", origin, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	// Its preflight is answered.
	resp = do(http.MethodOptions, "/scans/42/events", http.Header{"Origin": {origin}, "Access-Control-Request-Method": {"GET"}})
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != origin {
		t.Errorf("preflight: %d, Access-Control-Allow-Origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	// An over-long request target is refused with a problem, as on /events.
	resp = do(http.MethodGet, "/scans/42/events?x="+strings.Repeat("a", 9000), nil)
	if resp.StatusCode != http.StatusRequestURITooLong || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("over-long target: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// TestNilBrokerPointer: a typed nil broker (a *redis.Broker left nil when no
// URL was configured) is an error of New, not a crash and not a silent
// in-memory broker.
func TestNilBrokerPointer(t *testing.T) {
	var rb *redis.Broker
	_, err := sluice.New(context.Background(), sluice.Options{Broker: rb})
	if err == nil || !strings.Contains(err.Error(), "nil *redis.Broker") {
		t.Fatalf("New with a nil *redis.Broker: %v", err)
	}
}
