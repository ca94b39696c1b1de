package tenant_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/problem"
	"github.com/sluicehq/sluice/tenant"
)

// backend answers membership by the status in status[tenant], recording the
// Authorization header and path it saw.
type backend struct {
	*httptest.Server
	mu     sync.Mutex
	status map[string]int
	auths  []string
	paths  []string
	hits   atomic.Int32
}

func newBackend(t *testing.T, status map[string]int) *backend {
	b := &backend{status: status}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		parts := strings.Split(r.URL.EscapedPath(), "/") // /tenants/<t>/members/<u>
		seen := r.URL.EscapedPath()
		if r.URL.RawQuery != "" {
			seen += "?" + r.URL.RawQuery
		}
		b.mu.Lock()
		b.auths = append(b.auths, r.Header.Get("Authorization"))
		b.paths = append(b.paths, seen)
		code, ok := b.status[parts[2]]
		b.mu.Unlock()
		if !ok {
			code = http.StatusNotFound
		}
		if code == 0 { // hang until the client gives up
			<-r.Context().Done()
			return
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) seen() (auths, paths []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.auths...), append([]string(nil), b.paths...)
}

func (b *backend) url() string { return b.URL + "/tenants/{tenant}/members/{user}" }

func TestHTTP(t *testing.T) {
	statuses := map[string]int{
		"t200": 200, "t204": 204, "t401": 401, "t403": 403, "t404": 404,
		"t500": 500, "t503": 503, "t429": 429, "t302": 302, "t400": 400, "thang": 0,
	}
	b := newBackend(t, statuses)
	h, err := tenant.NewHTTP(tenant.HTTPConfig{URL: b.url(), Timeout: 200 * time.Millisecond, CacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		tenant string
		member bool
		fault  bool
	}{
		{"t200", true, false}, {"t204", true, false},
		{"t401", false, false}, {"t403", false, false}, {"t404", false, false}, {"unknown", false, false},
		{"t500", false, true}, {"t503", false, true}, {"t429", false, true}, {"t302", false, true}, {"t400", false, true},
		{"thang", false, true},
	} {
		t.Run(tt.tenant, func(t *testing.T) {
			got, err := h.IsMember(context.Background(), alice, tt.tenant)
			if (err != nil) != tt.fault || got != tt.member {
				t.Fatalf("got %v, %v; want member=%v fault=%v", got, err, tt.member, tt.fault)
			}
			if err != nil && strings.Contains(err.Error(), "alice-token") {
				t.Fatalf("fault leaks the credential: %v", err)
			}
		})
	}
	auths, _ := b.seen()
	if len(auths) != 12 {
		t.Fatalf("backend saw %d requests", len(auths))
	}
	for _, a := range auths {
		if a != alice.Credential {
			t.Fatalf("backend saw Authorization %q, want the caller's own", a)
		}
	}
}

func TestHTTPEscapesPlaceholders(t *testing.T) {
	b := newBackend(t, map[string]int{tenantA: 200})
	h, err := tenant.NewHTTP(tenant.HTTPConfig{URL: b.url()})
	if err != nil {
		t.Fatal(err)
	}
	p := auth.Principal{User: "a/b c?d", Tenant: tenantA, Credential: "Api-Key k"}
	if ok, err := h.IsMember(context.Background(), p, tenantA); !ok || err != nil {
		t.Fatalf("%v %v", ok, err)
	}
	if _, paths := b.seen(); paths[0] != "/tenants/"+tenantA+"/members/a%2Fb%20c%3Fd" {
		t.Fatalf("path %q", paths[0])
	}
}

func TestHTTPCache(t *testing.T) {
	b := newBackend(t, map[string]int{tenantA: 200, tenantB: 403})
	h, err := tenant.NewHTTP(tenant.HTTPConfig{URL: b.url(), CacheTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	bob := auth.Principal{User: "bob", Tenant: tenantA, Credential: "Bearer bob-token"}
	for range 3 {
		if ok, _ := h.IsMember(ctx, alice, tenantA); !ok {
			t.Fatal("alice not a member")
		}
		if ok, _ := h.IsMember(ctx, alice, tenantB); ok {
			t.Fatal("alice a member of B")
		}
	}
	if n := b.hits.Load(); n != 2 {
		t.Fatalf("%d backend calls, want 2 (positive and negative answers cached)", n)
	}
	h.IsMember(ctx, bob, tenantA)
	if n := b.hits.Load(); n != 3 {
		t.Fatalf("another credential shares the cache: %d calls", n)
	}

	// Faults are not cached.
	b.mu.Lock()
	b.status["t500"] = 500
	b.mu.Unlock()
	for range 2 {
		if _, err := h.IsMember(ctx, alice, "t500"); err == nil {
			t.Fatal("500 not a fault")
		}
	}
	if n := b.hits.Load(); n != 5 {
		t.Fatalf("faults cached: %d calls", n)
	}
}

func TestHTTPGateFailsClosed(t *testing.T) {
	b := newBackend(t, map[string]int{tenantA: 502})
	h, _ := tenant.NewHTTP(tenant.HTTPConfig{URL: b.url()})
	err := tenant.Gate{Membership: h}.Check(context.Background(), alice, chans(tenantA))
	if !errors.Is(err, tenant.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	if _, ok := problem.As(err); ok {
		t.Fatal("fault turned into a problem")
	}
	b.Close()
	if _, err := h.IsMember(context.Background(), alice, tenantB); err == nil {
		t.Fatal("unreachable backend answered")
	}
}

func TestNewHTTPErrors(t *testing.T) {
	for _, u := range []string{"", "app.example/x", "ftp://app.example/{tenant}", "http://"} {
		if _, err := tenant.NewHTTP(tenant.HTTPConfig{URL: u}); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}

// TestHTTPPathValues checks that a user or tenant id never changes the shape
// of the membership URL: dot segments and empty values are not members
// (without a request), anything else outside the unreserved characters is
// percent-encoded, in the path and in the query alike.
func TestHTTPPathValues(t *testing.T) {
	b := newBackend(t, map[string]int{tenantA: 200, ".": 200, "..": 200, "": 200})
	h, err := tenant.NewHTTP(tenant.HTTPConfig{URL: b.url() + "?u={user}", CacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		user, tenant string
		member       bool
		path         string // escaped path (and query) the backend must see; "" for no request
	}{
		{"alice", tenantA, true, "/tenants/" + tenantA + "/members/alice?u=alice"},
		{".", tenantA, false, ""},
		{"..", tenantA, false, ""},
		{"", tenantA, false, ""},
		{"alice", ".", false, ""},
		{"alice", "..", false, ""},
		{"alice", "", false, ""},
		{"...", tenantA, true, "/tenants/" + tenantA + "/members/...?u=..."},
		{"./..", tenantA, true, "/tenants/" + tenantA + "/members/.%2F..?u=.%2F.."},
		{"a&admin=1", tenantA, true, "/tenants/" + tenantA + "/members/a%26admin%3D1?u=a%26admin%3D1"},
		{"%2e%2e", tenantA, true, "/tenants/" + tenantA + "/members/%252e%252e?u=%252e%252e"},
		{"a#b;c", tenantA, true, "/tenants/" + tenantA + "/members/a%23b%3Bc?u=a%23b%3Bc"},
		{"é", tenantA, true, "/tenants/" + tenantA + "/members/%C3%A9?u=%C3%A9"},
	} {
		t.Run(tt.user+"@"+tt.tenant, func(t *testing.T) {
			before := b.hits.Load()
			p := auth.Principal{User: tt.user, Tenant: tt.tenant, Credential: "Bearer x"}
			got, err := h.IsMember(context.Background(), p, tt.tenant)
			if err != nil || got != tt.member {
				t.Fatalf("got %v, %v; want member=%v", got, err, tt.member)
			}
			if tt.path == "" {
				if b.hits.Load() != before {
					t.Fatal("a request was sent")
				}
				return
			}
			_, paths := b.seen()
			if got := paths[len(paths)-1]; got != tt.path {
				t.Fatalf("backend saw %q, want %q", got, tt.path)
			}
		})
	}
}
