package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/server"
)

// fuzzGateway is a gateway driven in-process through its Handler, with the
// connection limits out of the way so that a fuzzer's thousands of requests
// from one address reach the code behind them.
func fuzzGateway(f *testing.F, mutate func(*server.Config)) *server.Server {
	f.Helper()
	cfg := server.DefaultConfig()
	cfg.JWTSecret = testSecret
	cfg.PublishKeys = []string{testPublishKey}
	cfg.HistorySize = 8
	cfg.ConnRate = 1e12
	cfg.ConnBurst = 1 << 30
	cfg.MaxStreamsPerUser = 1 << 30
	cfg.MaxStreamsPerTenant = 1 << 30
	if mutate != nil {
		mutate(&cfg)
	}
	gw, err := server.New(context.Background(), cfg, server.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = gw.Close() })
	return gw
}

// checkProblem checks that a non-200 reply is a complete problem+json body.
func checkProblem(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("status %d with Content-Type %q: %q", w.Code, ct, w.Body.Bytes())
	}
	var p struct {
		Status int
		Code   string
		Title  string
	}
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Code == "" || p.Title == "" || p.Status != w.Code {
		t.Fatalf("status %d, incomplete problem %q (%v)", w.Code, w.Body.Bytes(), err)
	}
	if w.Code == http.StatusUnauthorized && !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), `Bearer realm="sluice"`) {
		t.Fatalf("401 without its challenge: %q", w.Header().Get("WWW-Authenticate"))
	}
}

// jwtShaped finds what could be a JWT in a request.
var jwtShaped = regexp.MustCompile(`[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`)

// validTenants returns the tenants of the tokens in s that the test secret
// verifies and that have not expired.
func validTenants(s string) map[string]bool {
	held := map[string]bool{}
	for _, cand := range jwtShaped.FindAllString(s, -1) {
		tok, err := jwt.Parse(cand, func(*jwt.Token) (any, error) { return []byte(testSecret), nil },
			jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
		if err != nil || !tok.Valid {
			continue
		}
		if c, ok := tok.Claims.(jwt.MapClaims); ok {
			if tn, ok := c["tenant_id"].(string); ok {
				held[tn] = true
			}
		}
	}
	return held
}

// flushCancels ends the request's context at the stream's first flush, so
// that a stream that opens returns at once.
type flushCancels struct {
	*httptest.ResponseRecorder
	cancel context.CancelFunc
}

func (w flushCancels) Flush() {
	w.ResponseRecorder.Flush()
	w.cancel()
}

// FuzzEventsRequest sends arbitrary query strings and credential headers to
// GET /events: the handler never panics, every refusal is a problem+json
// body with a code, no reply echoes a token, and a stream opens only for a
// valid token of the channels' tenant.
func FuzzEventsRequest(f *testing.F) {
	gw := fuzzGateway(f, nil)
	h := gw.Handler()
	// Fixed times, not now: the fuzzing workers set this function up again,
	// each in its own process, and must mint the very tokens that the seeds
	// carry from the parent (a token minted a second later is another
	// string, which the checks below would not know as valid).
	fixed := func(iat, exp time.Time) map[string]any {
		return map[string]any{"iat": iat.Unix(), "exp": exp.Unix()}
	}
	issued, until := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	tokA := token(f, "u1", tenantA, time.Hour, fixed(issued, until))
	tokB := token(f, "u2", tenantB, time.Hour, fixed(issued, until))
	expired := token(f, "u1", tenantA, time.Hour, fixed(issued, issued.Add(time.Hour)))
	valid := map[string]string{tokA: tenantA, tokB: tenantB}
	chA := chanName("doc", tenantA, "1")
	chB := chanName("doc", tenantB, "1")

	for _, s := range []struct{ q, authz, last, origin string }{
		{"channel=" + chA + "&access_token=" + tokA, "", "", ""},
		{"channel=" + chA, "Bearer " + tokA, "", "https://app.example"},
		{"channel=" + chB, "Bearer " + tokA, "", ""},
		{"channel=" + chA + "&channel=" + chB + "&access_token=" + tokB, "", "", ""},
		{"channel=" + chB + "&channel=" + chB, "bearer  " + tokB, "", ""},
		{"channel=" + chA + "&access_token=" + tokA + "&ticket=abc", "", "", ""},
		{"channel=" + chA + "&ticket=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "", "", ""},
		{"channel=" + chA + "&access_token=" + expired, "", "", ""},
		{"channel=" + chA, "Api-Key sk_0123456789", "", ""},
		{"channel=" + chA + "&lastEventId=x.y.z", "Bearer " + tokA, "", ""},
		{"channel=" + chA, "Bearer " + tokA, "AAAA.BBBB", ""},
		{"channel=scan%3A" + tenantA + "%3A1;access_token=" + tokA, "", "", ""},
		{"channel=a:b:c&channel=&channel=%00", "Bearer x", "\r\n", ""},
		{"", "", "", ""},
		{"%zz&&==;;", "Bearer", "", "null"},
	} {
		f.Add(s.q, s.authz, s.last, s.origin)
	}
	f.Fuzz(func(t *testing.T, rawQuery, authz, lastEventID, origin string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		req := &http.Request{
			Method: http.MethodGet, URL: &url.URL{Path: "/events", RawQuery: rawQuery},
			RequestURI: "/events?" + rawQuery, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{}, Host: "sluice.test", RemoteAddr: "192.0.2.1:1234", Body: http.NoBody,
		}
		for k, v := range map[string]string{"Authorization": authz, "Last-Event-ID": lastEventID, "Origin": origin} {
			if v != "" {
				req.Header.Set(k, v)
			}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(flushCancels{rec, cancel}, req.WithContext(ctx))

		// No reply echoes a token the request carried: this process's, an
		// expired one, or one of an earlier run's inputs.
		for _, tok := range append(jwtShaped.FindAllString(authz+"\n"+rawQuery+"\n"+lastEventID, -1), slices.Collect(maps.Keys(valid))...) {
			if _, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{}); err != nil {
				continue // not a JWT (a cursor, a channel name)
			}
			if bytes.Contains(rec.Body.Bytes(), []byte(tok)) {
				t.Fatalf("a reply echoes a token: %q", rec.Body.Bytes())
			}
		}
		if rec.Code != http.StatusOK {
			checkProblem(t, rec)
			return
		}
		body := rec.Body.String()
		first, err := testutil.NewBlockReader(strings.NewReader(body)).Next()
		if err != nil || first.Retry == "" || first.Event != "stream-open" {
			t.Fatalf("200 without a stream-open block: %q", body)
		}
		// Which tenants did the request hold a valid token of, anywhere?
		// Valid by verification, not by being one of this process's
		// tokens: the fuzzing cache keeps inputs of earlier runs, whose
		// tokens may still be valid.
		vals, _ := url.ParseQuery(rawQuery)
		where := authz + "\n" + rawQuery
		for _, vs := range vals {
			where += "\n" + strings.Join(vs, "\n")
		}
		held := validTenants(where)
		line := first.Data
		var open struct{ Channels []string }
		if err := json.Unmarshal([]byte(line), &open); err != nil || len(open.Channels) == 0 {
			t.Fatalf("stream-open data %q", line)
		}
		for _, c := range open.Channels {
			n, err := channel.Parse(c)
			if err != nil {
				t.Fatalf("stream-open names an invalid channel %q", c)
			}
			if !held[n.Tenant()] {
				t.Fatalf("a stream of tenant %s opened without a valid token of it (query %q, Authorization %q)", n.Tenant(), rawQuery, authz)
			}
		}
		if len(held) > 1 {
			first := must(channel.Parse(open.Channels[0])).Tenant()
			for _, c := range open.Channels {
				if must(channel.Parse(c)).Tenant() != first {
					t.Fatalf("one stream holds channels of two tenants: %v", open.Channels)
				}
			}
		}
	})
}

// FuzzPublishRequest sends arbitrary bodies and Authorization headers to
// POST /publish: the handler never panics, every refusal is a problem+json
// body with a code, and a 200 needs the publisher key and carries one id per
// event sent.
func FuzzPublishRequest(f *testing.F) {
	gw := fuzzGateway(f, func(c *server.Config) { c.MaxEventBytes = 256; c.MaxBodyBytes = 4096 })
	h := gw.Handler()
	ch := chanName("doc", tenantA, "1")
	key := "Bearer " + testPublishKey
	for _, s := range []struct{ body, authz, ctype string }{
		{`{"channel":"` + ch + `","event":"doc.updated","data":{"a":1}}`, key, "application/json"},
		{`{"events":[{"channel":"` + ch + `","event":"doc.updated","data":1},{"channel":"` + ch + `","event":"doc.deleted","data":null}]}`, key, ""},
		{`{"events":[]}`, key, ""},
		{`{"events":null}`, key, ""},
		{`{"channel":"` + ch + `","event":"stream-open","data":1}`, key, ""},
		{`{"channel":"` + ch + `","event":"doc.updated","data":"` + strings.Repeat("x", 300) + `"}`, key, ""},
		{`{"channel":"` + ch + `","event":"doc.updated","data":1,"events":[]}`, key, ""},
		{`{"channel":"` + ch + `","event":"doc.updated","data":1}{}`, key, ""},
		{`{"channel":"x","event":"doc.updated","data":1,"extra":true}`, key, "text/plain"},
		{`{"channel":"` + ch + `","event":"doc.updated","data":1}`, "Bearer wrong-key-0123456789", ""},
		{`{"channel":"` + ch + `","event":"doc.updated","data":1}`, "", ""},
		{`{"channel":"` + ch + `","event":"doc.updated","data":1}`, "bearer " + testPublishKey, ""},
		{`[`, key, ""},
		{``, key, ""},
	} {
		f.Add([]byte(s.body), s.authz, s.ctype)
	}
	f.Fuzz(func(t *testing.T, body []byte, authz, ctype string) {
		req := httptest.NewRequest(http.MethodPost, "/publish", bytes.NewReader(body))
		req.RemoteAddr = "192.0.2.1:1234"
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if bytes.Contains(rec.Body.Bytes(), []byte(testPublishKey)) {
			t.Fatalf("a reply echoes the publisher key: %q", rec.Body.Bytes())
		}
		if rec.Code != http.StatusOK {
			checkProblem(t, rec)
			return
		}
		if !strings.Contains(authz, testPublishKey) {
			t.Fatalf("published with Authorization %q", authz)
		}
		var sent struct {
			Events *[]json.RawMessage `json:"events"`
		}
		n := 1
		if err := json.Unmarshal(body, &sent); err == nil && sent.Events != nil {
			n = len(*sent.Events)
		}
		var reply struct{ IDs []string }
		if err := json.NewDecoder(io.LimitReader(rec.Body, 1<<20)).Decode(&reply); err != nil || len(reply.IDs) != n {
			t.Fatalf("200 reply %q for %d events (%v)", rec.Body.Bytes(), n, err)
		}
	})
}

// TestValidTenants: FuzzEventsRequest's judge of which tenants a request
// held a valid token of can say no.
func TestValidTenants(t *testing.T) {
	other, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "u1", "tenant_id": tenantA, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte("another-secret-0123456789abcdef0123"))
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"valid", "Bearer " + token(t, "u1", tenantA, time.Hour, nil), []string{tenantA}},
		{"two, in a query", "access_token=" + token(t, "u1", tenantA, time.Hour, nil) + "&x=" + token(t, "u2", tenantB, time.Hour, nil), []string{tenantA, tenantB}},
		{"expired", "Bearer " + token(t, "u1", tenantA, -time.Hour, nil), nil},
		{"no exp", "Bearer " + token(t, "u1", tenantA, time.Hour, map[string]any{"exp": nil}), nil},
		{"another key", "Bearer " + other, nil},
		{"not a token", "Bearer a.b.c", nil},
	} {
		got := validTenants(tc.in)
		if len(got) != len(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
		for _, tn := range tc.want {
			if !got[tn] {
				t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			}
		}
	}
}
