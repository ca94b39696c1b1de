package routes_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	sse "github.com/tmaxmax/go-sse"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/routes"
	"github.com/sluicehq/sluice/server"
)

const (
	secret     = "routes-test-secret-0123456789abcdef"
	publishKey = "routes-test-publisher-key"
	tenantA    = "3f1c2a9e-8d4b-4c1e-9a7f-0b5e6d7c8a91"
)

// backend is a fake resource API: GET /api/v1/scans/{id} answers by id and
// records the Authorization header of every request.
type backend struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen map[string][]string // id → Authorization headers, in order
}

func newBackend(t *testing.T) *backend {
	b := &backend{seen: map[string][]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/scans/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		b.mu.Lock()
		b.seen[id] = append(b.seen[id], r.Header.Get("Authorization"))
		b.mu.Unlock()
		switch {
		case strings.HasPrefix(id, "ok"):
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, `{"id":"`+id+`"}`)
		case id == "forbidden":
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, `{"status":403,"detail":"viewers only"}`)
		case id == "unauth":
			w.WriteHeader(http.StatusUnauthorized)
		case id == "moved":
			http.Redirect(w, r, "/api/v1/scans/ok", http.StatusFound)
		case id == "broken":
			w.WriteHeader(http.StatusInternalServerError)
		case id == "slow":
			select {
			case <-r.Context().Done():
			case <-time.After(3 * time.Second):
			}
		default:
			http.NotFound(w, r)
		}
	})
	b.srv = httptest.NewServer(mux)
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) calls(id string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.seen[id]...)
}

// gateway starts a real gateway whose SLUICE_ROUTES_FILE holds doc.
func gateway(t *testing.T, doc string) (*server.Server, *httptest.Server) {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.JWTSecret = secret
	cfg.PublishKeys = []string{publishKey}
	cfg.LogLevel = "error"
	cfg.RoutesFile = writeFile(t, doc)
	gw, err := server.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = sluice.NewHTTPServer(gw.Handler())
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
		srv.Close()
		_ = gw.Close()
	})
	return gw, srv
}

func writeFile(t *testing.T, doc string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "routes.json")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func token(t *testing.T, user, tenant string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": user, "tenant_id": tenant, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// get opens url with an optional bearer token. On 200 it returns the
// stream's events; otherwise the decoded problem body.
func get(t *testing.T, url, tok string) (int, <-chan sse.Event, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("GET %s: %d with Content-Type %q, want a problem", url, resp.StatusCode, ct)
		}
		var p map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
			t.Fatalf("problem body: %v", err)
		}
		return resp.StatusCode, nil, p
	}
	evs := make(chan sse.Event, 64)
	go func() {
		defer close(evs)
		for ev, err := range sse.Read(resp.Body, nil) {
			if err != nil {
				return
			}
			evs <- ev
		}
	}()
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	return resp.StatusCode, evs, nil
}

func next(t *testing.T, evs <-chan sse.Event, typ string) sse.Event {
	t.Helper()
	select {
	case ev, ok := <-evs:
		if !ok {
			t.Fatal("stream ended")
		}
		if ev.Type != typ {
			t.Fatalf("event %q (%s), want %q", ev.Type, ev.Data, typ)
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s event within 5s", typ)
	}
	return sse.Event{}
}

func publish(t *testing.T, base, ch, typ string, data any) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"channel": ch, "event": typ, "data": data})
	req, _ := http.NewRequest(http.MethodPost, base+"/publish", strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+publishKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %d", resp.StatusCode)
	}
}

func routesDoc(backendURL string) string {
	return `{"routes": [
  {"path": "/api/v1/scans/{id}/events",
   "channels": ["scan-progress:{tenant}:{id}"],
   "authorizer": {"type": "http", "url": "` + backendURL + `/api/v1/scans/{id}", "cache": "5s", "timeout": "300ms"}},
  {"path": "/api/v1/docs/{doc}/events",
   "channels": ["doc:{tenant}:{doc}", "doc-comments:{tenant}:{doc}"],
   "authorizer": {"type": "none"}}
]}`
}

func TestHTTPAuthorizerAllows(t *testing.T) {
	be := newBackend(t)
	_, srv := gateway(t, routesDoc(be.srv.URL))
	tok := token(t, "u1", tenantA)

	st, evs, p := get(t, srv.URL+"/api/v1/scans/ok1/events", tok)
	if st != http.StatusOK {
		t.Fatalf("status %d %v", st, p)
	}
	open := next(t, evs, "stream-open")
	want := "scan-progress:" + tenantA + ":ok1"
	if !strings.Contains(open.Data, `"`+want+`"`) {
		t.Fatalf("stream-open %s, want channel %s", open.Data, want)
	}
	if got := be.calls("ok1"); len(got) != 1 || got[0] != "Bearer "+tok {
		t.Fatalf("backend saw Authorization %q, want the caller's own", got)
	}
	publish(t, srv.URL, want, "scan.progress", map[string]int{"percent": 10})
	if ev := next(t, evs, "scan.progress"); ev.Data != `{"percent":10}` {
		t.Fatalf("data %s", ev.Data)
	}

	// A query token reaches the backend as "Bearer <jwt>".
	st, evs, _ = get(t, srv.URL+"/api/v1/scans/ok2/events?access_token="+tok, "")
	if st != http.StatusOK {
		t.Fatalf("query token: status %d", st)
	}
	next(t, evs, "stream-open")
	if got := be.calls("ok2"); len(got) != 1 || got[0] != "Bearer "+tok {
		t.Fatalf("backend saw Authorization %q for a query token", got)
	}
}

func TestHTTPAuthorizerRefuses(t *testing.T) {
	be := newBackend(t)
	_, srv := gateway(t, routesDoc(be.srv.URL))
	tok := token(t, "u1", tenantA)
	for _, tc := range []struct {
		id, code, detail string
		status           int
	}{
		{"forbidden", "forbidden", "viewers only", 403},
		{"missing", "not_found", "", 404},
		{"unauth", "backend_unauthorized", "", 401},
		{"moved", "upstream_error", "", 502},
		{"broken", "upstream_error", "", 502},
		{"slow", "upstream_error", "", 502},
	} {
		t.Run(tc.id, func(t *testing.T) {
			st, _, p := get(t, srv.URL+"/api/v1/scans/"+tc.id+"/events", tok)
			if st != tc.status || p["code"] != tc.code || p["status"] != float64(tc.status) {
				t.Fatalf("got %d %v, want %d %s", st, p, tc.status, tc.code)
			}
			if tc.detail != "" && p["detail"] != tc.detail {
				t.Fatalf("detail %v, want the backend's %q", p["detail"], tc.detail)
			}
			if got := be.calls(tc.id); len(got) == 0 || got[0] != "Bearer "+tok {
				t.Fatalf("backend saw %q", got)
			}
		})
	}
	if got := be.calls("ok"); len(got) != 0 {
		t.Fatalf("the redirect was followed: %q", got)
	}
}

func TestHTTPAuthorizerCache(t *testing.T) {
	be := newBackend(t)
	_, srv := gateway(t, routesDoc(be.srv.URL))
	alice, bob := token(t, "alice", tenantA), token(t, "bob", tenantA)

	for range 3 {
		st, evs, _ := get(t, srv.URL+"/api/v1/scans/ok/events", alice)
		if st != http.StatusOK {
			t.Fatalf("status %d", st)
		}
		next(t, evs, "stream-open")
	}
	if n := len(be.calls("ok")); n != 1 {
		t.Fatalf("backend asked %d times for one credential, want 1 (cached)", n)
	}
	// Another credential is asked for again.
	if st, _, _ := get(t, srv.URL+"/api/v1/scans/ok/events", bob); st != http.StatusOK {
		t.Fatalf("status %d", st)
	}
	if got := be.calls("ok"); len(got) != 2 || got[1] != "Bearer "+bob {
		t.Fatalf("backend saw %q", got)
	}
	// Refusals are cached too (briefly); faults are not.
	for range 2 {
		if st, _, _ := get(t, srv.URL+"/api/v1/scans/forbidden/events", alice); st != http.StatusForbidden {
			t.Fatalf("status %d", st)
		}
		if st, _, _ := get(t, srv.URL+"/api/v1/scans/broken/events", alice); st != http.StatusBadGateway {
			t.Fatalf("status %d", st)
		}
	}
	if n := len(be.calls("forbidden")); n != 1 {
		t.Fatalf("refusal asked %d times, want 1", n)
	}
	if n := len(be.calls("broken")); n != 2 {
		t.Fatalf("fault asked %d times, want 2 (never cached)", n)
	}
}

func TestNoneAuthorizerAndPathValues(t *testing.T) {
	be := newBackend(t)
	_, srv := gateway(t, routesDoc(be.srv.URL))
	tok := token(t, "u1", tenantA)

	st, evs, _ := get(t, srv.URL+"/api/v1/docs/readme.md/events", tok)
	if st != http.StatusOK {
		t.Fatalf("status %d", st)
	}
	open := next(t, evs, "stream-open")
	for _, ch := range []string{"doc:" + tenantA + ":readme.md", "doc-comments:" + tenantA + ":readme.md"} {
		if !strings.Contains(open.Data, ch) {
			t.Fatalf("stream-open %s lacks %s", open.Data, ch)
		}
	}

	for _, tc := range []struct {
		path   string
		status int
		code   string
	}{
		{"/api/v1/docs/a%20b/events", 400, "malformed_channel"},
		{"/api/v1/scans/a%3Ab/events", 400, "malformed_channel"},
		{"/api/v1/scans/" + strings.Repeat("x", 129) + "/events", 400, "malformed_channel"},
	} {
		st, _, p := get(t, srv.URL+tc.path, tok)
		if st != tc.status || p["code"] != tc.code {
			t.Errorf("%s: %d %v, want %d %s", tc.path, st, p, tc.status, tc.code)
		}
	}
	// Authentication comes first: no credential, no backend request.
	if st, _, p := get(t, srv.URL+"/api/v1/scans/ok9/events", ""); st != http.StatusUnauthorized {
		t.Fatalf("anonymous: %d %v", st, p)
	}
	if got := be.calls("ok9"); len(got) != 0 {
		t.Fatalf("backend asked for an anonymous request: %q", got)
	}
}

func TestGatewayRefusesBadRoutesFile(t *testing.T) {
	cfg := server.DefaultConfig()
	cfg.JWTSecret = secret
	cfg.LogLevel = "error"
	cfg.RoutesFile = writeFile(t, `{"routes":[{"path":"/x/{id}","channels":["x:{tenant}:{nope}"],"authorizer":{"type":"none"}}]}`)
	_, err := server.New(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "SLUICE_ROUTES_FILE") || !strings.Contains(err.Error(), "{nope}") {
		t.Fatalf("err = %v", err)
	}
}

func TestLoadRefuses(t *testing.T) {
	route := func(path, ch, authz string) string {
		return `{"routes":[{"path":"` + path + `","channels":["` + ch + `"],"authorizer":` + authz + `}]}`
	}
	none := `{"type":"none"}`
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"not json", `{`, "unexpected EOF"},
		{"no routes", `{"routes":[]}`, "no routes"},
		{"unknown field", `{"routes":[{"path":"/a/{id}","channel":["x:{tenant}:{id}"],"authorizer":{"type":"none"}}]}`, `unknown field "channel"`},
		{"unknown placeholder", route("/a/{id}", "x:{tenant}:{other}", none), "unknown placeholder {other}"},
		{"literal tenant", route("/a/{id}", "x:"+tenantA+":{id}", none), "exactly {tenant}"},
		{"tenant wildcard", route("/t/{tenant}/events", "x:{tenant}:y", none), "{tenant} is reserved"},
		{"two segments", route("/a/{id}", "x:{id}", none), "three"},
		{"bad prefix", route("/a/{id}", "X:{tenant}:{id}", none), "prefix"},
		{"placeholder prefix", route("/a/{id}", "{id}:{tenant}:{id}", none), "literal"},
		{"bad resource literal", route("/a/{id}", "x:{tenant}:a/{id}", none), "resource"},
		{"unbalanced", route("/a/{id}", "x:{tenant}:{id", none), "unbalanced"},
		{"relative path", route("a/{id}", "x:{tenant}:{id}", none), "start with /"},
		{"trailing slash", route("/a/{id}/", "x:{tenant}:{id}", none), "end with /"},
		{"rest wildcard", route("/a/{id...}", "x:{tenant}:y", none), "Go identifier"},
		{"partial wildcard", route("/a/x{id}", "x:{tenant}:{id}", none), "whole segment"},
		{"no channels", `{"routes":[{"path":"/a","channels":[],"authorizer":{"type":"none"}}]}`, "at least one channel"},
		{"no authorizer", `{"routes":[{"path":"/a","channels":["x:{tenant}:y"]}]}`, `"authorizer" is required`},
		{"unknown authorizer", route("/a/{id}", "x:{tenant}:{id}", `{"type":"jwt"}`), `type "jwt" is unknown`},
		{"http without url", route("/a/{id}", "x:{tenant}:{id}", `{"type":"http"}`), `needs a "url"`},
		{"http bad scheme", route("/a/{id}", "x:{tenant}:{id}", `{"type":"http","url":"ftp://b/{id}"}`), "http://"},
		{"http templated host", route("/a/{id}", "x:{tenant}:{id}", `{"type":"http","url":"http://{id}.b/x"}`), "host must be literal"},
		{"http unknown placeholder", route("/a/{id}", "x:{tenant}:{id}", `{"type":"http","url":"http://b/{x}"}`), "unknown placeholder {x}"},
		{"http bad cache", route("/a/{id}", "x:{tenant}:{id}", `{"type":"http","url":"http://b/{id}","cache":"soon"}`), `"cache"`},
		{"http bad timeout", route("/a/{id}", "x:{tenant}:{id}", `{"type":"http","url":"http://b/{id}","timeout":"0s"}`), `"timeout"`},
		{"none with url", route("/a/{id}", "x:{tenant}:{id}", `{"type":"none","url":"http://b"}`), "takes no url"},
		{"duplicate path", `{"routes":[
			{"path":"/a/{id}","channels":["x:{tenant}:{id}"],"authorizer":{"type":"none"}},
			{"path":"/a/{other}","channels":["x:{tenant}:{other}"],"authorizer":{"type":"none"}}]}`, "route /a/{other}: pattern"},
		{"shadows events", route("/events", "x:{tenant}:y", none), "shadows the gateway endpoint /events"},
		{"shadows sluice.js", route("/sluice.js", "x:{tenant}:y", none), "shadows the gateway endpoint /sluice.js"},
		{"shadows readyz", route("/readyz", "x:{tenant}:y", none), "shadows the gateway endpoint /readyz"},
		{"shadows metrics", route("/metrics", "x:{tenant}:y", none), "shadows the gateway endpoint /metrics"},
		{"conflicts with publish", route("/{id}", "x:{tenant}:{id}", none), "route /{id}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := routes.Load(writeFile(t, tc.doc), routes.Options{})
			if err == nil {
				t.Fatal("Load accepted the file")
			}
			if !errors.Is(err, routes.ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
	if _, err := routes.Load(filepath.Join(t.TempDir(), "absent.json"), routes.Options{}); err == nil {
		t.Fatal("Load of an absent file succeeded")
	}
}

func TestLoadPatterns(t *testing.T) {
	rs, err := routes.Load(writeFile(t, routesDoc("http://backend.internal:8000")), routes.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Pattern != "GET /api/v1/scans/{id}/events" || rs[1].Pattern != "GET /api/v1/docs/{doc}/events" {
		t.Fatalf("routes %+v", rs)
	}
}

// TestGuideRoutesFile loads the routes file docs/guide.md shows and serves
// its second route through a gateway.
func TestGuideRoutesFile(t *testing.T) {
	raw, err := os.ReadFile("testdata/routes.json")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := routes.Load("testdata/routes.json", routes.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Pattern != "GET /api/v1/scans/{id}/events" || rs[1].Pattern != "GET /api/v1/projects/{project}/docs/{doc}/events" {
		t.Fatalf("routes %+v", rs)
	}
	_, srv := gateway(t, string(raw))
	st, evs, p := get(t, srv.URL+"/api/v1/projects/p1/docs/readme/events", token(t, "u1", tenantA))
	if st != http.StatusOK {
		t.Fatalf("status %d %v", st, p)
	}
	open := next(t, evs, "stream-open")
	for _, ch := range []string{"doc:" + tenantA + ":p1.readme", "project:" + tenantA + ":p1"} {
		if !strings.Contains(open.Data, ch) {
			t.Fatalf("stream-open %s lacks %s", open.Data, ch)
		}
	}
	publish(t, srv.URL, "project:"+tenantA+":p1", "project.renamed", map[string]string{"name": "P1"})
	next(t, evs, "project.renamed")
}
