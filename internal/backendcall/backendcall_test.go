package backendcall_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/backendcall"
)

func TestAsk(t *testing.T) {
	var auth, accept string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth, accept = r.Header.Get("Authorization"), r.Header.Get("Accept")
		switch r.URL.Path {
		case "/hang":
			<-r.Context().Done()
			return
		case "/big":
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(strings.Repeat("x", 3*backendcall.MaxBody)))
			return
		}
		var code int
		for _, c := range []int{200, 204, 302, 401, 403, 404, 429, 500} {
			if r.URL.Path == "/"+strconv.Itoa(c) {
				code = c
			}
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte(`{"detail":"d"}`))
	}))
	defer srv.Close()
	noRedirect := *srv.Client()
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c := backendcall.Client{HTTP: &noRedirect, Timeout: 200 * time.Millisecond}
	ctx := context.Background()

	for _, tt := range []struct {
		status  int
		allowed bool
	}{{200, true}, {204, true}, {401, false}, {403, false}, {404, false}} {
		a, err := c.Ask(ctx, srv.URL+"/"+strconv.Itoa(tt.status), "Bearer secret-token")
		if err != nil || a.Status != tt.status || a.Allowed() != tt.allowed {
			t.Errorf("%d: got %+v, %v", tt.status, a, err)
		}
	}
	if auth != "Bearer secret-token" || accept != "application/json" {
		t.Fatalf("backend saw Authorization %q, Accept %q", auth, accept)
	}
	for _, s := range []int{302, 429, 500} {
		_, err := c.Ask(ctx, srv.URL+"/"+strconv.Itoa(s), "Bearer secret-token")
		if se, ok := errors.AsType[*backendcall.StatusError](err); !ok || se.Status != s {
			t.Errorf("%d: got %v, want a StatusError", s, err)
		}
	}
	if _, err := c.Ask(ctx, srv.URL+"/200", ""); err != nil || auth != "" {
		t.Fatalf("no credential: Authorization %q, %v", auth, err)
	}
	if a, err := c.Ask(ctx, srv.URL+"/big", ""); err != nil || len(a.Body) != backendcall.MaxBody {
		t.Fatalf("body of %d bytes kept (%v), want %d", len(a.Body), err, backendcall.MaxBody)
	}
	_, err := c.Ask(ctx, srv.URL+"/hang?key=secretkey", "")
	if !errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "secretkey") {
		t.Fatalf("hanging backend: %v, want a deadline error without the URL", err)
	}
	if _, err := c.Ask(ctx, "http://[::1", ""); !errors.Is(err, backendcall.ErrRequest) {
		t.Fatalf("bad URL: %v", err)
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"aZ09-._~": "aZ09-._~", "a/b c?d": "a%2Fb%20c%3Fd", "a&b=c#d;e%": "a%26b%3Dc%23d%3Be%25", "é": "%C3%A9",
	} {
		if got := backendcall.Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
	for v, want := range map[string]bool{"": false, ".": false, "..": false, "...": true, "a": true} {
		if backendcall.SegmentSafe(v) != want {
			t.Errorf("SegmentSafe(%q) != %v", v, want)
		}
	}
}
