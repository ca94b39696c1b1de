package limits

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/problem"
)

const (
	tenantA = "3f1c2a9e-8d4b-4c1e-9a7f-0b5e6d7c8a91"
	tenantB = "7a0e4b1c-2d3f-4e5a-8b6c-9d0e1f2a3b4c"
)

func principal(tenant, user string) auth.Principal {
	return auth.Principal{User: user, Tenant: tenant, Kind: auth.KindJWT}
}

func request(remote string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/events", nil)
	r.RemoteAddr = remote
	return r
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClocked(cfg Config) (*Limiter, *clock) {
	l := New(cfg)
	c := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	l.now = c.now
	return l, c
}

// refusal checks that err is a 429 refusal with code.
func refusal(t *testing.T, err error, code string) *Refusal {
	t.Helper()
	var r *Refusal
	if !errors.As(err, &r) {
		t.Fatalf("error %v is not a *Refusal", err)
	}
	p, ok := problem.As(err)
	if !ok || p.Status != http.StatusTooManyRequests || p.Code != code || p.Detail == "" {
		t.Fatalf("problem %+v, want 429 %s with a detail", p, code)
	}
	return r
}

func TestAdmitStreamCaps(t *testing.T) {
	type step struct {
		tenant, user string
		code         string // "" admitted, else the refusal code
		release      int    // before this step, release the n-th admitted stream (1-based; 0 none)
	}
	cases := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"no limits", Config{}, []step{
			{tenantA, "u", "", 0}, {tenantA, "u", "", 0}, {tenantA, "u", "", 0},
		}},
		{"per user", Config{MaxStreamsPerUser: 2}, []step{
			{tenantA, "u", "", 0}, {tenantA, "u", "", 0},
			{tenantA, "u", problem.CodeTooManyStreams, 0},
			{tenantA, "v", "", 0}, // another user
			{tenantB, "u", "", 0}, // the same user id in another tenant
			{tenantA, "u", "", 1}, // a slot freed
			{tenantA, "u", problem.CodeTooManyStreams, 0},
		}},
		{"per tenant", Config{MaxStreamsPerTenant: 3}, []step{
			{tenantA, "u", "", 0}, {tenantA, "v", "", 0}, {tenantA, "w", "", 0},
			{tenantA, "x", problem.CodeTooManyStreams, 0},
			{tenantB, "x", "", 0},
			{tenantA, "x", "", 2},
		}},
		{"tenant refusal gives the user slot back", Config{MaxStreamsPerUser: 1, MaxStreamsPerTenant: 1}, []step{
			{tenantA, "u", "", 0},
			{tenantA, "v", problem.CodeTooManyStreams, 0},
			{tenantA, "v", problem.CodeTooManyStreams, 0},
			{tenantA, "v", "", 1}, // v holds no slot from its refusals
		}},
		{"user ids are not confused across tenants", Config{MaxStreamsPerUser: 1}, []step{
			{tenantA, "u", "", 0},
			{tenantB, "u", "", 0},
			{tenantA, "u", problem.CodeTooManyStreams, 0},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := New(tc.cfg)
			var admitted []func()
			for i, st := range tc.steps {
				if st.release > 0 {
					admitted[st.release-1]()
				}
				rel, err := l.Admit(request("192.0.2.1:1000"), principal(st.tenant, st.user))
				if st.code == "" {
					if err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
					admitted = append(admitted, rel)
					continue
				}
				if rel != nil {
					t.Fatalf("step %d: a refusal returned a release", i)
				}
				if r := refusal(t, err, st.code); r.RetryAfter() != 0 {
					t.Fatalf("step %d: Retry-After %v on a stream cap", i, r.RetryAfter())
				}
			}
			for _, rel := range admitted {
				rel()
			}
			for _, st := range tc.steps {
				if u, tn := l.Open(st.tenant, st.user); u != 0 || tn != 0 {
					t.Fatalf("%s/%s: %d user and %d tenant streams counted after every release", st.tenant, st.user, u, tn)
				}
			}
		})
	}
}

func TestReleaseIdempotent(t *testing.T) {
	l := New(Config{MaxStreamsPerUser: 2, MaxStreamsPerTenant: 2})
	p := principal(tenantA, "u")
	r1, _ := l.Admit(request("192.0.2.1:1"), p)
	r2, _ := l.Admit(request("192.0.2.1:1"), p)
	for range 5 {
		r1()
	}
	if u, tn := l.Open(tenantA, "u"); u != 1 || tn != 1 {
		t.Fatalf("after releasing one stream five times: %d user, %d tenant streams, want 1 and 1", u, tn)
	}
	r2()
	if u, tn := l.Open(tenantA, "u"); u != 0 || tn != 0 {
		t.Fatalf("%d, %d open after releasing both", u, tn)
	}
	if len(l.users.shard(l.seed, tenantA+"\x00u").m) != 0 {
		t.Fatal("a zero count keeps its map entry")
	}
}

func TestConnRate(t *testing.T) {
	l, clk := newClocked(Config{ConnRate: 2, ConnBurst: 3})
	p := principal(tenantA, "u")
	admit := func(addr string) error {
		rel, err := l.Admit(request(addr), p)
		if err == nil {
			rel()
		}
		return err
	}
	for i := range 3 {
		if err := admit("192.0.2.1:1000"); err != nil {
			t.Fatalf("burst open %d: %v", i, err)
		}
	}
	err := admit("192.0.2.1:1001") // another port, the same address
	r := refusal(t, err, problem.CodeRateLimited)
	if got := r.RetryAfter(); got != 500*time.Millisecond {
		t.Fatalf("RetryAfter %v, want 500ms (one token at 2/s)", got)
	}
	if d, ok := problem.RetryAfter(fmt.Errorf("wrapped: %w", err)); !ok || d != 500*time.Millisecond {
		t.Fatalf("RetryAfter(wrapped) = %v, %v", d, ok)
	}
	if !strings.Contains(r.Detail, "retry in 1 s") {
		t.Fatalf("detail %q does not say when to retry", r.Detail)
	}
	if err := admit("192.0.2.2:1000"); err != nil {
		t.Fatalf("another address is limited too: %v", err)
	}
	clk.add(499 * time.Millisecond)
	refusal(t, admit("192.0.2.1:1000"), problem.CodeRateLimited)
	clk.add(2 * time.Millisecond)
	if err := admit("192.0.2.1:1000"); err != nil {
		t.Fatalf("a token refilled after 500ms: %v", err)
	}
	clk.add(time.Hour) // refills to the burst, not beyond
	for i := range 3 {
		if err := admit("192.0.2.1:1000"); err != nil {
			t.Fatalf("refilled burst open %d: %v", i, err)
		}
	}
	refusal(t, admit("192.0.2.1:1000"), problem.CodeRateLimited)
}

func TestConnRateRefusalHoldsNoSlot(t *testing.T) {
	l := New(Config{ConnRate: 1, ConnBurst: 1, MaxStreamsPerUser: 1})
	p := principal(tenantA, "u")
	if _, err := l.Admit(request("192.0.2.1:1"), p); err != nil {
		t.Fatal(err)
	}
	refusal(t, func() error { _, err := l.Admit(request("192.0.2.1:1"), p); return err }(), problem.CodeRateLimited)
	if u, _ := l.Open(tenantA, "u"); u != 1 {
		t.Fatalf("%d streams counted, want 1", u)
	}
}

func TestRemoteIP(t *testing.T) {
	cases := []struct{ remote, want string }{
		{"192.0.2.1:5000", "192.0.2.1"},
		{"[::ffff:192.0.2.1]:5000", "192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:443", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:80", "fe80::/64"},
		{"192.0.2.1", "192.0.2.1"},
		{"@", "@"},
		{"", ""},
	}
	for _, tc := range cases {
		if got := RemoteIP(request(tc.remote)); got != tc.want {
			t.Errorf("RemoteIP(%q) = %q, want %q", tc.remote, got, tc.want)
		}
	}
	// X-Forwarded-For is not trusted by default.
	r := request("192.0.2.1:5000")
	r.Header.Set("X-Forwarded-For", "198.51.100.7")
	if got := RemoteIP(r); got != "192.0.2.1" {
		t.Fatalf("RemoteIP trusted X-Forwarded-For: %q", got)
	}
}

func TestConnRateIPv6ByPrefix(t *testing.T) {
	l := New(Config{ConnRate: 1, ConnBurst: 2})
	p := principal(tenantA, "u")
	for i, addr := range []string{"[2001:db8::1]:1", "[2001:db8::2]:1", "[2001:db8::3]:1"} {
		_, err := l.Admit(request(addr), p)
		if i < 2 && err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		if i == 2 {
			refusal(t, err, problem.CodeRateLimited)
		}
	}
	if _, err := l.Admit(request("[2001:db8:0:1::1]:1"), p); err != nil {
		t.Fatalf("another /64: %v", err)
	}
}

func TestClientAddrHook(t *testing.T) {
	l := New(Config{ConnRate: 1, ConnBurst: 1, ClientAddr: func(r *http.Request) string {
		return r.Header.Get("X-Forwarded-For")
	}})
	p := principal(tenantA, "u")
	for i, xff := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.1"} {
		r := request("192.0.2.1:1")
		r.Header.Set("X-Forwarded-For", xff)
		_, err := l.Admit(r, p)
		if i < 2 && err != nil {
			t.Fatalf("%s: %v", xff, err)
		}
		if i == 2 {
			refusal(t, err, problem.CodeRateLimited)
		}
	}
}

// TestRateTableBounded floods the limiter from far more addresses than it
// tracks and checks that the table stays within its bound, and that an
// address that keeps opening streams stays limited throughout (it is among
// the most recently seen, so never the one evicted).
func TestRateTableBounded(t *testing.T) {
	const maxAddrs = 256
	l, clk := newClocked(Config{ConnRate: 0.01, ConnBurst: 1, MaxAddrs: maxAddrs})
	p := principal(tenantA, "u")
	if _, err := l.Admit(request("198.51.100.99:1"), p); err != nil {
		t.Fatal(err)
	}
	for i := range 50_000 {
		addr := fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255)
		if _, err := l.Admit(request(addr), p); err != nil {
			t.Fatalf("first open from %s: %v", addr, err)
		}
		{
			if _, err := l.Admit(request("198.51.100.99:1"), p); err == nil {
				t.Fatalf("after %d other addresses the flooding address got a fresh bucket", i)
			}
		}
		clk.add(time.Microsecond)
	}
	if n := l.rate.size(); n > maxAddrs {
		t.Fatalf("%d addresses tracked, bound %d", n, maxAddrs)
	}
	// Idle buckets go first: once every bucket has refilled, new addresses
	// replace them.
	clk.add(time.Hour)
	if _, err := l.Admit(request("203.0.113.1:1"), p); err != nil {
		t.Fatal(err)
	}
	if n := l.rate.size(); n > maxAddrs {
		t.Fatalf("%d addresses tracked, bound %d", n, maxAddrs)
	}
}

// TestAdmitConcurrent opens and releases streams from many goroutines at once
// (run it with -race): the caps hold at every moment and every count returns
// to zero.
func TestAdmitConcurrent(t *testing.T) {
	const perUser, perTenant = 3, 10
	l := New(Config{MaxStreamsPerUser: perUser, MaxStreamsPerTenant: perTenant, ConnRate: 1e6, ConnBurst: 1e6})
	tenants := []string{tenantA, tenantB}
	var open [2][8]atomic.Int32
	var tenantOpen [2]atomic.Int32
	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 500 {
				ti, ui := (g+i)%2, (g*7+i)%8
				rel, err := l.Admit(request(fmt.Sprintf("192.0.2.%d:1", g)), principal(tenants[ti], fmt.Sprint("u", ui)))
				if err != nil {
					if p, ok := problem.As(err); !ok || p.Code != problem.CodeTooManyStreams {
						t.Errorf("unexpected refusal %v", err)
						return
					}
					refused.Add(1)
					continue
				}
				admitted.Add(1)
				if n := open[ti][ui].Add(1); n > perUser {
					t.Errorf("%d streams of one user open, cap %d", n, perUser)
				}
				if n := tenantOpen[ti].Add(1); n > perTenant {
					t.Errorf("%d streams of one tenant open, cap %d", n, perTenant)
				}
				if i%3 == 0 {
					time.Sleep(time.Microsecond)
				}
				open[ti][ui].Add(-1)
				tenantOpen[ti].Add(-1)
				rel()
				if i%5 == 0 {
					rel() // idempotent, even concurrently with others' admits
				}
			}
		})
	}
	wg.Wait()
	for _, tn := range tenants {
		for u := range 8 {
			if us, ts := l.Open(tn, fmt.Sprint("u", u)); us != 0 || ts != 0 {
				t.Fatalf("%s u%d: %d/%d still counted", tn, u, us, ts)
			}
		}
	}
	t.Logf("%d admitted, %d refused", admitted.Load(), refused.Load())
}

func TestMiddleware(t *testing.T) {
	l := New(Config{MaxHeaderBytes: 100, MaxURLBytes: 50})
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	cases := []struct {
		name   string
		target string
		header map[string]string
		status int
		code   string
	}{
		{"small", "/events?channel=x", map[string]string{"A": "b"}, 204, ""},
		{"target at the limit", "/" + strings.Repeat("a", 49), nil, 204, ""},
		{"target over the limit", "/" + strings.Repeat("a", 50), nil, 414, problem.CodeURITooLong},
		{"query counts", "/events?" + strings.Repeat("q", 50), nil, 414, problem.CodeURITooLong},
		// Host "example.com" (4+11) is counted: 15 + len(name)+len(value).
		{"headers at the limit", "/", map[string]string{"X-Pad": strings.Repeat("v", 100-15-5)}, 204, ""},
		{"headers over the limit", "/", map[string]string{"X-Pad": strings.Repeat("v", 100-15-5+1)}, 431, problem.CodeHeadersTooLarge},
		{"many small headers add up", "/", map[string]string{"A1": "0123456789", "A2": "0123456789", "A3": "0123456789", "A4": "0123456789", "A5": "0123456789", "A6": "0123456789", "A7": "0123456789", "A8": "0123456789"}, 431, problem.CodeHeadersTooLarge},
		{"long target wins over big headers", "/" + strings.Repeat("a", 60), map[string]string{"X-Pad": strings.Repeat("v", 200)}, 414, problem.CodeURITooLong},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tc.target, nil) // Host example.com
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d", w.Code, tc.status)
			}
			if tc.code == "" {
				return
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("Content-Type %q", ct)
			}
			var p problem.Problem
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Code != tc.code || p.Status != tc.status || p.Title == "" {
				t.Fatalf("body %s (%v)", w.Body, err)
			}
		})
	}
}

func TestMiddlewareOffWithoutLimits(t *testing.T) {
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	h := New(Config{}).Middleware(next)
	if fmt.Sprintf("%p", h) != fmt.Sprintf("%p", next) {
		t.Fatal("Middleware wraps the handler when no size limit is set")
	}
	// Without RequestURI (a request built for a client), the URL is measured.
	l := New(Config{MaxURLBytes: 10})
	r, _ := http.NewRequest(http.MethodGet, "http://example.com/"+strings.Repeat("a", 20), nil)
	w := httptest.NewRecorder()
	l.Middleware(next).ServeHTTP(w, r)
	if w.Code != http.StatusRequestURITooLong {
		t.Fatalf("status %d, want 414", w.Code)
	}
}

func TestNoLimitsAdmitsEverything(t *testing.T) {
	l := New(Config{MaxStreamsPerUser: -1, ConnRate: -3})
	for range 1000 {
		rel, err := l.Admit(request("192.0.2.1:1"), principal(tenantA, "u"))
		if err != nil {
			t.Fatal(err)
		}
		rel()
	}
}

func BenchmarkAdmit(b *testing.B) {
	l := New(Config{MaxStreamsPerUser: 64, MaxStreamsPerTenant: 1 << 30, ConnRate: 1e12, ConnBurst: 1 << 30})
	reqs := make([]*http.Request, 256)
	ps := make([]auth.Principal, 1024)
	for i := range reqs {
		reqs[i] = request(fmt.Sprintf("192.0.2.%d:1", i))
	}
	for i := range ps {
		ps[i] = principal(tenantA, fmt.Sprint(i))
	}
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		i := int(n.Add(1)) * 7919
		for pb.Next() {
			i++
			rel, err := l.Admit(reqs[i&255], ps[i&1023])
			if err != nil {
				b.Fatal(err)
			}
			rel()
		}
	})
}
