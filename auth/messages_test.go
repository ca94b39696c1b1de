package auth_test

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/problem"
)

const pubKey = "pk_test_0123456789abcdef0123456789"

func isPub(k string) bool {
	a, b := sha256.Sum256([]byte(k)), sha256.Sum256([]byte(pubKey))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// TestRefusalsSayWhatToDo pins the refusals a new user meets first: each
// says what to send instead.
func TestRefusalsSayWhatToDo(t *testing.T) {
	a := newAuth(t, config{JWTSecret: secret, APIKeysFile: apiKeysFile(t), Tickets: &auth.MemoryTickets{},
		Now: func() time.Time { return epoch }, IsPublisherKey: isPub})
	good := hs256(t, claims(epoch))
	q := auth.Options{Query: true}
	tickets := func(query string, authz ...string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/tickets", nil)
		r.URL.RawQuery = query
		for _, v := range authz {
			r.Header.Add("Authorization", v)
		}
		return r
	}
	for _, tt := range []struct {
		name     string
		r        *http.Request
		opts     auth.Options
		code     string
		want     []string
		mustNot  []string
		accepted bool
	}{
		{name: "publisher key as bearer", r: request("", "Bearer "+pubKey), code: problem.CodeInvalidToken,
			want: []string{"publisher key", "POST /publish"}},
		{name: "publisher key as query token", r: request("access_token=" + pubKey), opts: q, code: problem.CodeInvalidToken,
			want: []string{"publisher keys go to POST /publish"}},
		{name: "publisher key as api key", r: request("", "Api-Key "+pubKey), code: problem.CodeInvalidToken,
			want: []string{"publisher keys go to POST /publish"}},
		{name: "not a token", r: request("", "Bearer not-a-token"), code: problem.CodeInvalidToken,
			want: []string{"malformed token", "header.payload.signature"}, mustNot: []string{"publisher"}},
		{name: "tickets with a query token", r: tickets("access_token=" + good), code: problem.CodeMissingCredentials,
			want: []string{"POST /tickets", "needs header credentials", "Authorization: Bearer <JWT>"}},
		{name: "tickets with a ticket", r: tickets("ticket=abc"), code: problem.CodeMissingCredentials,
			want: []string{"needs header credentials"}},
		{name: "tickets with nothing", r: tickets(""), code: problem.CodeMissingCredentials,
			want: []string{"no credentials", "Authorization: Bearer <JWT>"}},
		{name: "stream with nothing", r: request(""), opts: q, code: problem.CodeMissingCredentials,
			want: []string{"no credentials", "?ticket="}},
		{name: "tickets with a header", r: tickets("", "Bearer "+good), accepted: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Authenticate(tt.r, tt.opts)
			if tt.accepted {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if got := code(t, err); got != tt.code {
				t.Fatalf("code %q, want %q (%v)", got, tt.code, err)
			}
			noLeak(t, err, pubKey, good)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
			for _, w := range tt.mustNot {
				if strings.Contains(err.Error(), w) {
					t.Errorf("%q has %q", err, w)
				}
			}
		})
	}
}

// TestPrincipalClaims: a hook reads the JWT's claims, through a ticket too;
// what it gets is its own copy; API keys have none.
func TestPrincipalClaims(t *testing.T) {
	a := newAuth(t, config{JWTSecret: secret, APIKeysFile: apiKeysFile(t), Tickets: &auth.MemoryTickets{},
		Now: func() time.Time { return epoch }})
	tok := hs256(t, claims(epoch, set("roles", []string{"admin", "viewer"}), set("role", "owner"),
		set("org", map[string]any{"id": 7}), set("big", int64(1)<<60)))
	p, err := a.Authenticate(request("", "Bearer "+tok), auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ticket, _, err := a.IssueTicket(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	viaTicket, err := a.Authenticate(request("ticket="+ticket), auth.Options{Query: true})
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]auth.Principal{"jwt": p, "ticket": viaTicket} {
		t.Run(name, func(t *testing.T) {
			if got := p.ClaimStrings("roles"); !reflect.DeepEqual(got, []string{"admin", "viewer"}) {
				t.Errorf("roles %v", got)
			}
			if got := p.ClaimStrings("role"); !reflect.DeepEqual(got, []string{"owner"}) {
				t.Errorf("role as list %v", got)
			}
			if s, ok := p.ClaimString("role"); !ok || s != "owner" {
				t.Errorf("role %q %v", s, ok)
			}
			if _, ok := p.ClaimString("roles"); ok {
				t.Error("an array read as a string")
			}
			if v, ok := p.Claim("big"); !ok || v != json.Number("1152921504606846976") {
				t.Errorf("big %#v", v)
			}
			if _, ok := p.Claim("nope"); ok {
				t.Error("absent claim present")
			}
			if sub, _ := p.ClaimString("sub"); sub != "u1" {
				t.Errorf("sub %q", sub)
			}
			// Read-only: changing what was returned changes nothing.
			org, _ := p.Claim("org")
			org.(map[string]any)["id"] = "x"
			all := p.Claims()
			all["role"] = "admin"
			if again, _ := p.Claim("org"); again.(map[string]any)["id"] != json.Number("7") {
				t.Errorf("claim changed by a caller: %v", again)
			}
			if r, _ := p.ClaimString("role"); r != "owner" {
				t.Errorf("claims changed by a caller: %v", r)
			}
		})
	}
	k, err := a.Authenticate(request("", "Api-Key "+apiKey1), auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := k.Claim("sub"); ok || k.Claims() != nil || k.ClaimStrings("roles") != nil {
		t.Error("an API key has claims")
	}
}
