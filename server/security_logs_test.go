package server_test

// Security, credentials in logs: no token, ticket or key reaches the log
// or a reply. docs/security.md maps each threat to the test that proves its
// defence.

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/internal/syncbuf"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/server"
)

// TestSecurityTokensNeverLogged runs the gateway with a JSON logger at debug
// level, sends credentials of every kind, good and bad, in headers and in
// query strings to every endpoint, and checks that no token, ticket or key
// appears in the log or in any response body.
func TestSecurityTokensNeverLogged(t *testing.T) {
	logs := &syncbuf.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnv(t, func(c *server.Config) { c.LogLevel = "debug" }, server.WithLogger(logger))
	ch := chanName("doc", tenantA, "log")
	good := token(t, "u1", tenantA, time.Hour, nil)
	otherSecret := sign(t, jwt.SigningMethodHS256, claims("u1", tenantA), []byte("another-secret-0123456789abcdef012345"))
	expired := token(t, "u1", tenantA, -time.Minute, nil)
	badPublisher := "wrong-publisher-key-abcdef0123456789"
	apiKey := "sk_live_0123456789abcdefghijklmnop"
	ticket := issueTicket(t, e, good)
	unused := issueTicket(t, e, good)
	fakeTicket := "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAQ"
	secrets := []string{good, otherSecret, expired, testPublishKey, badPublisher, apiKey, ticket, unused, fakeTicket, testSecret}
	for _, tok := range []string{good, otherSecret, expired} {
		parts := strings.Split(tok, ".")
		secrets = append(secrets, parts[1], parts[2]) // no fragment either
	}

	var bodies strings.Builder
	do := func(method, target string, h http.Header, body string) int {
		req, _ := http.NewRequest(method, e.srv.URL+target, strings.NewReader(body))
		for k, v := range h {
			req.Header[k] = v
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		resp, err := http.DefaultClient.Do(req.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body) // a stream ends at the timeout
		bodies.Write(b)
		for k, vs := range resp.Header {
			bodies.WriteString(k + ": " + strings.Join(vs, ",") + "\n")
		}
		return resp.StatusCode
	}
	qs := func(kv ...string) string {
		v := url.Values{"channel": {ch}}
		for i := 0; i < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	hdr := func(v string) http.Header { return http.Header{"Authorization": {v}} }
	pub := `{"channel":"` + ch + `","event":"doc.updated","data":1}`
	cases := []struct {
		method, target string
		h              http.Header
		body           string
		status         int
	}{
		{"GET", "/events?" + qs("access_token", good), nil, "", 200},
		{"GET", "/events?" + qs("access_token", otherSecret), nil, "", 401},
		{"GET", "/events?" + qs("access_token", expired), nil, "", 401},
		{"GET", "/events?" + qs("access_token", good, "ticket", unused), nil, "", 401},
		{"GET", "/events?" + qs("ticket", ticket), nil, "", 200},
		{"GET", "/events?" + qs("ticket", ticket), nil, "", 401},
		{"GET", "/events?" + qs("ticket", fakeTicket), nil, "", 401},
		{"GET", "/events?" + qs("access_token", apiKey), nil, "", 401},
		{"GET", "/events?" + qs(), hdr("Bearer " + good), "", 200},
		{"GET", "/events?" + qs(), hdr("Bearer " + otherSecret), "", 401},
		{"GET", "/events?" + qs(), hdr("Bearer " + expired), "", 401},
		{"GET", "/events?" + qs(), hdr("Api-Key " + apiKey), "", 401},
		{"GET", "/events?" + qs(), hdr(good), "", 401},
		{"GET", "/events?" + qs("access_token", good), hdr("Bearer " + otherSecret), "", 401},
		{"GET", "/events?channel=" + chanName("doc", tenantB, "x") + "&access_token=" + good, nil, "", 403},
		{"GET", "/events?channel=bad&access_token=" + good, nil, "", 400},
		{"GET", "/events?" + qs("ACCESS_TOKEN", good), nil, "", 401},
		{"POST", "/tickets", hdr("Bearer " + good), "", 200},
		{"POST", "/tickets", hdr("Bearer " + otherSecret), "", 401},
		{"POST", "/tickets?access_token=" + good, nil, "", 401},
		{"POST", "/tickets?ticket=" + unused, nil, "", 401},
		{"POST", "/publish", hdr("Bearer " + testPublishKey), pub, 200},
		{"POST", "/publish?access_token=" + good, hdr("Bearer " + badPublisher), pub, 401},
		{"POST", "/publish", hdr("Bearer " + good), pub, 401},
		{"POST", "/publish", hdr(testPublishKey), pub, 401},
		{"POST", "/revoke", hdr("Bearer " + badPublisher), `{"tenant":"` + tenantB + `"}`, 401},
		{"GET", "/nowhere?access_token=" + good + "&ticket=" + unused, nil, "", 404},
		{"GET", "/healthz?access_token=" + good, nil, "", 200},
		{"DELETE", "/events?access_token=" + good, nil, "", 405},
	}
	for i, tc := range cases {
		if st := do(tc.method, tc.target, tc.h, tc.body); st != tc.status {
			t.Fatalf("case %d %s %s: status %d, want %d", i, tc.method, redactURL(e.srv.URL+tc.target), st, tc.status)
		}
	}
	testutil.Eventually(t, 2*time.Second, "streams closed", func() bool { return e.gw.OpenStreams() == 0 })
	log := logs.String()
	if !strings.Contains(log, `"stream open"`) || !strings.Contains(log, auth.Redacted) {
		t.Fatalf("the debug log lacks stream or request lines:\n%s", log)
	}
	for i, s := range secrets {
		if strings.Contains(log, s) {
			t.Errorf("secret %d (%.8s…) in the log", i, s)
		}
		if strings.Contains(bodies.String(), s) {
			t.Errorf("secret %d (%.8s…) in a response", i, s)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", log)
	}
}
