package server_test

// Refusals of a stream request: status, problem code and WWW-Authenticate
// for each, in the order the checks run.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/sluicehq/sluice/server"
)

func TestStreamErrors(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.MaxChannels = 3 })
	good := token(t, "u1", tenantA, time.Hour, nil)
	chA := chanName("scan-progress", tenantA, "1")
	chB := chanName("scan-progress", tenantB, "1")
	many := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, chanName("p", tenantA, fmt.Sprint(i)))
		}
		return out
	}
	cases := []struct {
		name    string
		query   url.Values
		header  http.Header
		status  int
		code    string
		invalid bool // WWW-Authenticate carries error="invalid_token"
	}{
		{"no credentials", url.Values{"channel": {chA}}, nil, 401, "missing_credentials", false},
		{"bad token", url.Values{"channel": {chA}}, bearer("nope"), 401, "invalid_token", true},
		{"expired token", url.Values{"channel": {chA}}, bearer(token(t, "u1", tenantA, -time.Minute, nil)), 401, "token_expired", true},
		{"auth before syntax", url.Values{"channel": {"bad"}}, nil, 401, "missing_credentials", false},
		{"bad header beats good query", url.Values{"channel": {chA}, "access_token": {good}}, bearer("nope"), 401, "invalid_token", true},
		{"bad query token", url.Values{"channel": {chA}, "access_token": {"nope"}}, nil, 401, "invalid_token", true},
		{"two query credentials", url.Values{"channel": {chA}, "access_token": {good}, "ticket": {"x"}}, nil, 401, "ambiguous_credentials", true},
		{"no channel", url.Values{}, bearer(good), 400, "no_channel", false},
		{"malformed channel", url.Values{"channel": {"scan:NOT-A-UUID:1"}}, bearer(good), 400, "malformed_channel", false},
		{"syntax before authorization", url.Values{"channel": {chB, "x"}}, bearer(good), 400, "malformed_channel", false},
		{"too many channels", url.Values{"channel": many(4)}, bearer(good), 400, "too_many_channels", false},
		{"foreign tenant", url.Values{"channel": {chB}}, bearer(good), 403, "foreign_tenant", false},
		{"one foreign channel refuses all", url.Values{"channel": {chA, chB}}, bearer(good), 403, "foreign_tenant", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, resp := tryOpen(t, e.eventsURL(tc.query), tc.header)
			if s != nil {
				t.Fatalf("stream opened, want %d", tc.status)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			p := problemOf(t, resp)
			if p["code"] != tc.code {
				t.Fatalf("code %v, want %s", p["code"], tc.code)
			}
			wa := resp.Header.Get("WWW-Authenticate")
			switch {
			case tc.status != 401 && wa != "":
				t.Fatalf("WWW-Authenticate on %d", tc.status)
			case tc.status == 401 && !tc.invalid && wa != `Bearer realm="sluice"`:
				t.Fatalf("WWW-Authenticate %q", wa)
			case tc.status == 401 && tc.invalid && wa != `Bearer realm="sluice", error="invalid_token"`:
				t.Fatalf("WWW-Authenticate %q", wa)
			}
		})
	}
	t.Run("duplicates collapse before counting", func(t *testing.T) {
		q := url.Values{"channel": append(many(3), many(3)...)}
		s := open(t, e.eventsURL(q), bearer(good))
		var d struct{ Channels []string }
		_ = json.Unmarshal([]byte(s.expect("stream-open").Data), &d)
		if len(d.Channels) != 3 {
			t.Fatalf("channels %v", d.Channels)
		}
	})
	t.Run("query token opens a stream", func(t *testing.T) {
		s := open(t, e.eventsURL(url.Values{"channel": {chA}, "access_token": {good}}), nil)
		s.expect("stream-open")
	})
}
