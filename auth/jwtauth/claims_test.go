package jwtauth_test

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/auth/internal/authtest"
	"github.com/sluicehq/sluice/problem"
)

// TestJWTClaimsStrict covers the exact decoding of the claim set: names are
// matched exactly, a claim named twice (exactly, or in another case for a
// claim Sluice reads) refuses the token, and times are JSON numbers.
func TestJWTClaimsStrict(t *testing.T) {
	now := epoch
	past, future := now.Add(-time.Hour).Unix(), now.Add(time.Hour).Unix()
	base := fmt.Sprintf(`"sub":"u1","tenant_id":%q,"exp":%d`, tenantA, future)
	tests := []struct {
		name    string
		leeway  time.Duration
		payload string
		want    string // problem code, "" for success
		user    string
		tenant  string
	}{
		{name: "valid", payload: `{` + base + `}`, user: "u1", tenant: tenantA},
		{name: "unknown claims ignored", payload: `{` + base + `,"x":{"a":[1,2,{"b":null}]},"X":1}`, user: "u1", tenant: tenantA},

		{name: "TENANT_ID is not tenant_id", payload: fmt.Sprintf(`{"sub":"u1","TENANT_ID":%q,"exp":%d}`, tenantA, future), want: problem.CodeInvalidToken},
		{name: "Sub is not sub", payload: fmt.Sprintf(`{"Sub":"u1","tenant_id":%q,"exp":%d}`, tenantA, future), want: problem.CodeInvalidToken},
		{name: "EXP is not exp", payload: fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"EXP":%d}`, tenantA, future), want: problem.CodeInvalidToken},
		{name: "long-s sub is not sub", payload: fmt.Sprintf(`{"\u017Fub":"u1","tenant_id":%q,"exp":%d}`, tenantA, future), want: problem.CodeInvalidToken},

		{name: "exp then EXP", payload: fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"exp":%d,"EXP":%d}`, tenantA, past, future), want: problem.CodeInvalidToken},
		{name: "EXP then exp", payload: fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"EXP":%d,"exp":%d}`, tenantA, past, future), want: problem.CodeInvalidToken},
		{name: "exp twice", payload: fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"exp":%d,"exp":%d}`, tenantA, past, future), want: problem.CodeInvalidToken},
		{name: "tenant twice", payload: `{` + base + fmt.Sprintf(`,"tenant_id":%q}`, tenantB), want: problem.CodeInvalidToken},
		{name: "tenant and TENANT_ID", payload: `{` + base + fmt.Sprintf(`,"TENANT_ID":%q}`, tenantB), want: problem.CodeInvalidToken},
		{name: "sub twice", payload: `{` + base + `,"sub":"admin"}`, want: problem.CodeInvalidToken},
		{name: "sub and long-s sub", payload: `{` + base + `,"\u017Fub":"admin"}`, want: problem.CodeInvalidToken},
		{name: "typ and TYP", payload: `{` + base + `,"typ":"access","TYP":"refresh"}`, want: problem.CodeInvalidToken},
		{name: "escaped duplicate", payload: `{` + base + `,"e\u0078p":1}`, want: problem.CodeInvalidToken},
		{name: "unknown claim twice", payload: `{` + base + `,"x":1,"x":2}`, want: problem.CodeInvalidToken},

		{name: "exp string", payload: fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"exp":"%d"}`, tenantA, future), want: problem.CodeInvalidToken},
		{name: "exp null", payload: fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"exp":null}`, tenantA), want: problem.CodeInvalidToken},
		{name: "exp bool", payload: fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"exp":true}`, tenantA), want: problem.CodeInvalidToken},
		{name: "exp huge", payload: fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"exp":1e300}`, tenantA), want: problem.CodeInvalidToken},
		{name: "exp fraction", payload: fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"exp":%d.5}`, tenantA, future), user: "u1", tenant: tenantA},
		{name: "exp exponent", payload: fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"exp":%de0}`, tenantA, future), user: "u1", tenant: tenantA},
		{name: "exp zero", payload: fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"exp":0}`, tenantA), want: problem.CodeTokenExpired},
		{name: "nbf string", payload: `{` + base + fmt.Sprintf(`,"nbf":"%d"}`, past), want: problem.CodeInvalidToken},
		{name: "iat string", payload: `{` + base + fmt.Sprintf(`,"iat":"%d"}`, past), want: problem.CodeInvalidToken},
		{name: "iat past", payload: `{` + base + fmt.Sprintf(`,"iat":%d}`, past), user: "u1", tenant: tenantA},
		{name: "iat now", payload: `{` + base + fmt.Sprintf(`,"iat":%d}`, now.Unix()), user: "u1", tenant: tenantA},
		{name: "iat future", payload: `{` + base + fmt.Sprintf(`,"iat":%d}`, now.Unix()+1), want: problem.CodeInvalidToken},
		{name: "iat future within leeway", leeway: 30 * time.Second, payload: `{` + base + fmt.Sprintf(`,"iat":%d}`, now.Unix()+30), user: "u1", tenant: tenantA},
		{name: "iat future beyond leeway", leeway: 30 * time.Second, payload: `{` + base + fmt.Sprintf(`,"iat":%d}`, now.Unix()+31), want: problem.CodeInvalidToken},

		{name: "iss number", payload: `{` + base + `,"iss":7}`, want: problem.CodeInvalidToken},
		{name: "aud number", payload: `{` + base + `,"aud":7}`, want: problem.CodeInvalidToken},
		{name: "aud list with number", payload: `{` + base + `,"aud":["a",7]}`, want: problem.CodeInvalidToken},
		{name: "sub null", payload: fmt.Sprintf(`{"sub":null,"tenant_id":%q,"exp":%d}`, tenantA, future), want: problem.CodeInvalidToken},

		{name: "payload null", payload: `null`, want: problem.CodeInvalidToken},
		{name: "payload array", payload: `[` + base + `]`, want: problem.CodeInvalidToken},
		{name: "payload string", payload: `"x"`, want: problem.CodeInvalidToken},
		{name: "payload trailing data", payload: `{` + base + `}{}`, want: problem.CodeInvalidToken},
		{name: "payload trailing space", payload: `{` + base + "}\n", user: "u1", tenant: tenantA},
		{name: "payload invalid", payload: `{` + base, want: problem.CodeInvalidToken},
		{name: "payload invalid UTF-8", payload: `{` + base + ",\"x\":\"\xff\"}", want: problem.CodeInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAuth(t, config{JWTSecret: secret, Leeway: tt.leeway, Now: func() time.Time { return now }})
			tok := hs256Raw(t, tt.payload)
			p, err := a.Authenticate(request("", "Bearer "+tok), auth.Options{})
			if got := code(t, err); got != tt.want {
				t.Fatalf("code %q, want %q (%v)", got, tt.want, err)
			}
			noLeak(t, err, tok)
			if tt.want != "" {
				if p != (auth.Principal{}) {
					t.Fatalf("refused but got principal %v", p)
				}
				return
			}
			if p.User != tt.user || p.Tenant != tt.tenant {
				t.Fatalf("principal %#v", p)
			}
			if !p.Expiry.Equal(time.Unix(future, 0)) {
				t.Fatalf("expiry %v, want %v", p.Expiry, time.Unix(future, 0))
			}
		})
	}
}

// TestJWTDuplicateDetail checks that a duplicate claim is named in the
// refusal, so that an issuer can find its mistake.
func TestJWTDuplicateDetail(t *testing.T) {
	a := newAuth(t, config{JWTSecret: secret, Now: func() time.Time { return epoch }})
	tok := hs256Raw(t, fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"exp":%d,"Exp":1}`, tenantA, epoch.Add(time.Hour).Unix()))
	_, err := a.Authenticate(request("", "Bearer "+tok), auth.Options{})
	p, ok := problem.As(err)
	if !ok || !strings.Contains(p.Detail, "exp") || !strings.Contains(p.Detail, "more than once") {
		t.Fatalf("got %v, want a detail naming exp more than once", err)
	}
}

// FuzzJWTPayload signs arbitrary claim sets and authenticates them: never a
// panic, every refusal a 401 problem that quotes nothing of the token, and
// an accepted token's principal exactly what encoding/json reads under the
// exact claim names, with exp a JSON number in the future.
func FuzzJWTPayload(f *testing.F) {
	now := epoch
	future := now.Add(time.Hour).Unix()
	for _, s := range []string{
		fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"exp":%d}`, tenantA, future),
		fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"exp":%d,"EXP":%d}`, tenantA, now.Unix()-1, future),
		fmt.Sprintf(`{"sub":"u1","TENANT_ID":%q,"exp":%d}`, tenantA, future),
		fmt.Sprintf(`{"user_id":42,"tenant_id":%q,"exp":%d.9,"iat":%d,"nbf":%d}`, tenantA, future, now.Unix(), now.Unix()),
		fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"exp":"%d"}`, tenantA, future),
		fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"exp":%d,"typ":"access","aud":["a","b"],"iss":"x"}`, tenantA, future),
		`null`, `[]`, `{}`,
	} {
		f.Add(s)
	}
	a, err := authtest.New(f.Context(), config{JWTSecret: secret, Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		tok := hs256Raw(t, payload)
		if len(tok) > auth.MaxCredentialLen {
			return
		}
		p, err := a.Authenticate(request("", "Bearer "+tok), auth.Options{})
		if err != nil {
			code(t, err)
			noLeak(t, err, tok)
			return
		}
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(payload))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("accepted a payload encoding/json refuses: %v", err)
		}
		if m["tenant_id"] != p.Tenant {
			t.Fatalf("tenant %q from %s", p.Tenant, payload)
		}
		if sub, _ := m["sub"].(string); sub != "" && sub != p.User {
			t.Fatalf("user %q from %s", p.User, payload)
		}
		exp, ok := m["exp"].(json.Number)
		if !ok {
			t.Fatalf("accepted exp %#v", m["exp"])
		}
		if f, _ := exp.Float64(); !now.Before(time.Unix(int64(f), 0)) || !p.Expiry.Equal(time.Unix(int64(math.Floor(f)), 0)) {
			t.Fatalf("expiry %v from exp %s", p.Expiry, exp)
		}
		for k := range m {
			for _, known := range []string{"exp", "nbf", "iat", "sub", "tenant_id", "user_id", "typ", "token_type"} {
				if k != known && strings.EqualFold(k, known) {
					if _, both := m[known]; both {
						t.Fatalf("accepted %q beside %q", k, known)
					}
				}
			}
		}
	})
}

// TestJWTIatSameSecond checks that iat, counted in whole seconds, is
// compared with the current second: an issuer whose clock is a few
// milliseconds ahead, across a second boundary, is not refused.
func TestJWTIatSameSecond(t *testing.T) {
	now := epoch.Add(900 * time.Millisecond)
	a := newAuth(t, config{JWTSecret: secret, Now: func() time.Time { return now }})
	for _, tt := range []struct {
		iat  int64
		want string
	}{
		{epoch.Unix(), ""},
		{epoch.Unix() + 1, ""}, // the second that begins 100 ms from now
		{epoch.Unix() + 2, problem.CodeInvalidToken},
	} {
		tok := hs256(t, claims(epoch, set("iat", tt.iat)))
		_, err := a.Authenticate(request("", "Bearer "+tok), auth.Options{})
		if got := code(t, err); got != tt.want {
			t.Errorf("iat now%+d: code %q, want %q (%v)", tt.iat-epoch.Unix(), got, tt.want, err)
		}
	}
}
