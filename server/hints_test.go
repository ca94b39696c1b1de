package server_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/internal/syncbuf"
	"github.com/sluicehq/sluice/server"
)

// TestErrorsSayWhatToDo pins, over HTTP, the refusals a new user meets
// first: each says what to send instead (issue: errors that do not say what
// to do).
func TestErrorsSayWhatToDo(t *testing.T) {
	e := newEnv(t, nil)
	good := token(t, "u1", tenantA, time.Hour, nil)
	chA := chanName("demo", tenantA, "welcome")
	req := func(method, path string, authz string, body string) *http.Request {
		r, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
		if authz != "" {
			r.Header.Set("Authorization", authz)
		}
		if body != "" {
			r.Header.Set("Content-Type", "application/json")
		}
		return r
	}
	pub := func(body string) *http.Request {
		return req(http.MethodPost, "/publish", "Bearer "+testPublishKey, body)
	}
	for _, tt := range []struct {
		name    string
		r       *http.Request
		status  int
		code    string
		want    []string
		mustNot []string
	}{
		{"channel without segments", req("GET", "/events?channel=welcome", "Bearer "+good, ""), 400, "malformed_channel",
			[]string{"<prefix>:<tenant uuid>:<resource>"}, []string{"channel: channel:"}},
		{"channel with a bad tenant", req("GET", "/events?channel=demo:ACME:welcome", "Bearer "+good, ""), 400, "malformed_channel",
			[]string{"tenant id (second segment)", "8-4-4-4-12"}, []string{"channel: channel:"}},
		{"publish to a bad channel", pub(`{"channel":"demo:nope:1","event":"demo.said","data":1}`), 400, "malformed_channel",
			[]string{"tenant id (second segment)", "<prefix>:<tenant uuid>:<resource>"}, []string{"channel: channel:"}},
		{"publish a batch to a bad channel", pub(`{"events":[{"channel":"` + chA + `","event":"demo.said","data":1},{"channel":"x","event":"demo.said","data":1}]}`), 400, "malformed_channel",
			[]string{"events[1]: channel: a channel name is"}, []string{"channel: channel:"}},
		{"unknown event type", pub(`{"channel":"` + chA + `","event":"Said","data":1}`), 400, "invalid_event",
			[]string{`event "Said"`, "resource.verb", "separated by dots", "lowercase letter", "e.g. scan.progress"}, []string{"^[a-z]"}},
		{"reserved event type", pub(`{"channel":"` + chA + `","event":"stream-open","data":1}`), 400, "invalid_event",
			[]string{"reserved for the server", "resource.verb"}, nil},
		{"publisher key as a user token", req("GET", "/events?channel="+url.QueryEscape(chA), "Bearer "+testPublishKey, ""), 401, "invalid_token",
			[]string{"publisher keys go to POST /publish"}, []string{testPublishKey}},
		{"publisher key as a ticket credential", req("POST", "/tickets", "Bearer "+testPublishKey, ""), 401, "invalid_token",
			[]string{"publisher keys go to POST /publish"}, nil},
		{"not a token", req("GET", "/events?channel="+url.QueryEscape(chA), "Bearer not-a-token", ""), 401, "invalid_token",
			[]string{"malformed token"}, []string{"publisher"}},
		{"revoke with a bad tenant", req("POST", "/revoke", "Bearer "+testPublishKey, `{"tenant":"ACME"}`), 400, "bad_request",
			[]string{`{"tenant": "<uuid>"`, "8-4-4-4-12"}, []string{"channel"}},
		{"tickets with a query token", req("POST", "/tickets?access_token="+good, "", ""), 401, "missing_credentials",
			[]string{"POST /tickets", "needs header credentials"}, []string{good}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, p := doJSON(t, tt.r)
			if st != tt.status || p["code"] != tt.code {
				t.Fatalf("%d %v, want %d %s", st, p, tt.status, tt.code)
			}
			detail, _ := p["detail"].(string)
			for _, w := range tt.want {
				if !strings.Contains(detail, w) {
					t.Errorf("detail %q lacks %q", detail, w)
				}
			}
			for _, w := range tt.mustNot {
				if strings.Contains(detail, w) {
					t.Errorf("detail %q has %q", detail, w)
				}
			}
		})
	}
}

// TestHookChannelErrorIs400: a channels hook that returns channel.Make's
// error, wrapped or not, gets 400 malformed_channel, not 500.
func TestHookChannelErrorIs400(t *testing.T) {
	hook := func(r *http.Request, p auth.Principal) ([]channel.Name, error) {
		n, err := channel.Make("scan-progress", p.Tenant, r.PathValue("id"))
		if err != nil {
			if r.URL.Query().Has("wrap") {
				return nil, &wrapped{err}
			}
			return nil, err
		}
		return []channel.Name{n}, nil
	}
	e := newEnv(t, nil, server.WithRoutes(func(g *sluice.Gateway, mux *http.ServeMux) {
		mux.Handle("GET /scans/{id}/events", g.Stream(hook))
	}))
	good := token(t, "u1", tenantA, time.Hour, nil)
	for _, q := range []string{"", "?wrap=1"} {
		r, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/scans/a%20b/events"+q, nil)
		r.Header.Set("Authorization", "Bearer "+good)
		st, p := doJSON(t, r)
		if st != 400 || p["code"] != "malformed_channel" || !strings.Contains(p["detail"].(string), "resource id (third segment)") {
			t.Fatalf("%q: %d %v", q, st, p)
		}
	}
	s := open(t, e.srv.URL+"/scans/42/events", bearer(good))
	s.expect("stream-open")
	s.close()
}

type wrapped struct{ err error }

func (w *wrapped) Error() string { return "looking up the scan: " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }

// TestIgnoredSettingsWarn: a setting that the chosen broker ignores is
// logged at start as a warning naming it and what to do.
func TestIgnoredSettingsWarn(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  func(*server.Config)
		want []string
	}{
		{"redis url with memory", func(c *server.Config) { c.RedisURL = "redis://127.0.0.1:1/0" }, []string{"SLUICE_REDIS_URL is set but SLUICE_BROKER is memory", "set SLUICE_BROKER=redis"}},
		{"redis prefix with memory", func(c *server.Config) { c.RedisPrefix = "app:" }, []string{"SLUICE_REDIS_PREFIX is set"}},
		{"nothing ignored", func(*server.Config) {}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := server.DefaultConfig()
			cfg.JWTSecret = testSecret
			tt.cfg(&cfg)
			var buf syncbuf.Buffer
			g, err := server.New(context.Background(), cfg, server.WithLogger(slog.New(slog.NewTextHandler(&buf, nil))))
			if err != nil {
				t.Fatal(err)
			}
			_ = g.Close()
			log := buf.String()
			if tt.want == nil && strings.Contains(log, "is ignored") {
				t.Fatalf("warned: %s", log)
			}
			for _, w := range tt.want {
				if !strings.Contains(log, w) || !strings.Contains(log, "level=WARN") {
					t.Errorf("log %q lacks a warning with %q", log, w)
				}
			}
		})
	}
}
