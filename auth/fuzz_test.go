package auth_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/auth/internal/authtest"
)

// FuzzAuthenticate feeds arbitrary Authorization values and queries. It must
// never panic, every refusal must be a 401 problem, and a principal may only
// come from one of the credentials known to be valid.
func FuzzAuthenticate(f *testing.F) {
	now := epoch
	valid := hs256(f, claims(now))
	validUserID := hs256(f, claims(now, del("sub"), set("user_id", 42)))
	seeds := []struct{ h, q string }{
		{"Bearer " + valid, ""},
		{"", "access_token=" + valid},
		{"", "access_token=" + validUserID + "&channel=a"},
		{"Api-Key " + apiKey1, ""},
		{"", "access_token=" + apiKey1},
		{"", "ticket=" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
		{"Bearer " + hs256(f, claims(now, set("tenant_id", "X"))), ""},
		{"Bearer " + sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(now)), ""},
		{"Basic Zm9vOmJhcg==", "access_token=x&ticket=y"},
		{"\x00", "access_token=%00"},
		{"Bearer " + hs256Raw(f, fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"exp":%d,"EXP":%d}`, tenantA, now.Unix()-1, now.Unix()+60)), ""},
		{"Bearer " + hs256Raw(f, fmt.Sprintf(`{"sub":"u1","TENANT_ID":%q,"exp":%d}`, tenantA, now.Unix()+60)), ""},
		{"Bearer " + hs256Raw(f, fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"exp":"%d"}`, tenantA, now.Unix()+60)), ""},
	}
	for _, s := range seeds {
		f.Add(s.h, s.q, true)
		f.Add(s.h, s.q, false)
	}
	a, err := authtest.New(f.Context(), config{JWTSecret: secret, APIKeysFile: apiKeysFile(f),
		Tickets: &auth.MemoryTickets{}, Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	good := map[string]bool{"Bearer " + valid: true, "Bearer " + validUserID: true,
		"Api-Key " + apiKey1: true, "Api-Key " + apiKey2: true}
	f.Fuzz(func(t *testing.T, header, rawQuery string, query bool) {
		r := httptest.NewRequest(http.MethodGet, "/events", nil)
		r.URL.RawQuery = rawQuery
		if header != "" {
			r.Header["Authorization"] = []string{header}
		}
		p, err := a.Authenticate(r, auth.Options{Query: query})
		if err != nil {
			code(t, err) // must be a 401 problem
			if p != (auth.Principal{}) {
				t.Fatalf("refusal with a principal: %v", p)
			}
			return
		}
		if !good[p.Credential] {
			t.Fatalf("accepted an unknown credential: header %q query %q", header, rawQuery)
		}
		if header == "" {
			vals, _ := url.ParseQuery(rawQuery)
			if !query || len(vals["access_token"]) != 1 || "Bearer "+vals["access_token"][0] != p.Credential {
				t.Fatalf("query credential accepted wrongly: %q (query=%v)", rawQuery, query)
			}
		}
	})
}
