package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	sse "github.com/tmaxmax/go-sse"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/syncbuf"
)

const (
	secret  = "scans-test-secret-0123456789abcdef"
	tenantA = "3f1c2a9e-8d4b-4c1e-9a7f-0b5e6d7c8a91"
	tenantB = "7a0e4b1c-2d3f-4e5a-8b6c-9d0e1f2a3b4c"
)

func start(t *testing.T) string {
	t.Helper()
	a, err := newApp(context.Background(), []byte(secret), 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = sluice.NewHTTPServer(a.Handler())
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = a.gw.Shutdown(ctx)
		srv.Close()
		_ = a.Close()
	})
	return srv.URL
}

func token(t *testing.T, user, tenant, role string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": user, "tenant_id": tenant, "role": role, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func do(t *testing.T, method, url, tok string, body any) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func create(t *testing.T, base, tok string) Scan {
	t.Helper()
	resp, body := do(t, http.MethodPost, base+"/api/v1/scans", tok, map[string]string{"target": "example.com"})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	var sc Scan
	if err := json.Unmarshal(body, &sc); err != nil {
		t.Fatal(err)
	}
	return sc
}

// problemOf asserts a problem reply with status and code.
func problemOf(t *testing.T, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	var p struct {
		Status int    `json:"status"`
		Code   string `json:"code"`
	}
	_ = json.Unmarshal(body, &p)
	if resp.StatusCode != status || p.Status != status || p.Code != code ||
		resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("got %d %s, want a %d %s problem", resp.StatusCode, body, status, code)
	}
}

func TestScanStreamsToCompletion(t *testing.T) {
	base := start(t)
	editor, viewer := token(t, "erin", tenantA, "editor"), token(t, "vic", tenantA, "viewer")
	sc := create(t, base, editor)
	if sc.Tenant != tenantA || sc.Status != "queued" {
		t.Fatalf("created %+v", sc)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/scans/"+sc.ID+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+viewer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var types []string
	last := -1
	for ev, err := range sse.Read(resp.Body, nil) {
		if err != nil {
			t.Fatalf("stream: %v (events so far %v)", err, types)
		}
		types = append(types, ev.Type)
		var data struct {
			ID      string `json:"id"`
			Percent int    `json:"percent"`
			Result  string `json:"result"`
		}
		_ = json.Unmarshal([]byte(ev.Data), &data)
		switch ev.Type {
		case "stream-open":
			if !strings.Contains(ev.Data, "scan-progress:"+tenantA+":"+sc.ID) {
				t.Fatalf("stream-open %s", ev.Data)
			}
			continue
		case "scan.progress":
			if data.ID != sc.ID || data.Percent <= last {
				t.Fatalf("progress %s after %d", ev.Data, last)
			}
			last = data.Percent
			continue
		case "scan.completed":
			if data.Result != "clean" || last != 100 {
				t.Fatalf("completed %s after %d%%", ev.Data, last)
			}
		default:
			t.Fatalf("unexpected event %s %s", ev.Type, ev.Data)
		}
		break
	}
	if types[len(types)-1] != "scan.completed" {
		t.Fatalf("events %v", types)
	}
	// The source of truth agrees.
	resp2, body := do(t, http.MethodGet, base+"/api/v1/scans/"+sc.ID, viewer, nil)
	if resp2.StatusCode != http.StatusOK || !strings.Contains(string(body), `"status":"completed"`) {
		t.Fatalf("GET scan: %d %s", resp2.StatusCode, body)
	}
}

func TestOtherTenantGets404(t *testing.T) {
	base := start(t)
	sc := create(t, base, token(t, "erin", tenantA, "editor"))
	outsider := token(t, "mallory", tenantB, "admin")
	for _, path := range []string{"/api/v1/scans/" + sc.ID + "/events", "/api/v1/scans/" + sc.ID, "/api/v1/scans/nope/events"} {
		resp, body := do(t, http.MethodGet, base+path, outsider, nil)
		problemOf(t, resp, body, http.StatusNotFound, "not_found")
	}
	// The generic endpoint refuses the channel by the tenant gate.
	resp, body := do(t, http.MethodGet, base+"/events?channel=scan-progress:"+tenantA+":"+sc.ID, outsider, nil)
	problemOf(t, resp, body, http.StatusForbidden, "foreign_tenant")
}

func TestGuestGets403(t *testing.T) {
	base := start(t)
	sc := create(t, base, token(t, "erin", tenantA, "editor"))
	guest := token(t, "gus", tenantA, "guest")
	for _, path := range []string{"/api/v1/scans/" + sc.ID + "/events", "/api/v1/scans/" + sc.ID} {
		resp, body := do(t, http.MethodGet, base+path, guest, nil)
		problemOf(t, resp, body, http.StatusForbidden, "forbidden")
	}
	resp, body := do(t, http.MethodPost, base+"/api/v1/scans", guest, map[string]string{"target": "x"})
	problemOf(t, resp, body, http.StatusForbidden, "forbidden")
	// A token without a role reads nothing either.
	resp, body = do(t, http.MethodGet, base+"/api/v1/scans/"+sc.ID+"/events", token(t, "nobody", tenantA, ""), nil)
	problemOf(t, resp, body, http.StatusForbidden, "forbidden")
}

func TestAuthentication(t *testing.T) {
	base := start(t)
	resp, body := do(t, http.MethodGet, base+"/api/v1/scans/x/events", "not-a-jwt", nil)
	problemOf(t, resp, body, http.StatusUnauthorized, "invalid_token")
	resp, body = do(t, http.MethodPost, base+"/api/v1/scans", "not-a-jwt", map[string]string{"target": "x"})
	problemOf(t, resp, body, http.StatusUnauthorized, "invalid_token")
}

func TestRunServesAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Setenv("SLUICE_JWT_SECRET", secret)
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, "127.0.0.1:0", out) }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "/api/v1/scans") {
		if time.Now().After(deadline) {
			t.Fatalf("no banner: %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	base := strings.Fields(strings.TrimPrefix(out.String(), "scans API on "))[0]
	sc := create(t, base, token(t, "erin", tenantA, "editor"))
	if sc.ID == "" {
		t.Fatal("no id")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop")
	}
}

// syncBuffer collects the server's output, written and read concurrently.
type syncBuffer = syncbuf.Buffer
