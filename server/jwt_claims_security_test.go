package server_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// rawToken signs payload, a JSON text used byte for byte, with the test
// secret: it may hold what no JWT library writes (a claim named twice).
func rawToken(t testing.TB, payload string) string {
	t.Helper()
	seg := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	signing := seg(`{"alg":"HS256","typ":"JWT"}`) + "." + seg(payload)
	sig, err := jwt.SigningMethodHS256.Sign(signing, []byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + seg(string(sig))
}

// TestSecurityJWTClaimsStrict sends correctly signed tokens whose claim set
// a lenient decoder would misread: a claim named twice (the last winning),
// a claim name in another case taken for the real one, a time as a string,
// an iat in the future that would escape revocations. Each is refused with
// 401 invalid_token in the header and in the query, and gets no ticket.
func TestSecurityJWTClaimsStrict(t *testing.T) {
	e := newEnv(t, nil)
	ch := chanName("doc", tenantA, "claims")
	now := time.Now().Unix()
	past, future := now-60, now+3600
	cases := []struct{ name, payload string }{
		{"exp past then EXP future", fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"exp":%d,"EXP":%d}`, tenantA, past, future)},
		{"exp twice, last in the future", fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"exp":%d,"exp":%d}`, tenantA, past, future)},
		{"tenant_id twice", fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"exp":%d,"tenant_id":%q}`, tenantA, future, tenantB)},
		{"TENANT_ID for tenant_id", fmt.Sprintf(`{"sub":"u1","TENANT_ID":%q,"exp":%d}`, tenantA, future)},
		{"Sub for sub", fmt.Sprintf(`{"Sub":"u1","tenant_id":%q,"exp":%d}`, tenantA, future)},
		{"exp a string", fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"exp":"%d"}`, tenantA, future)},
		{"nbf a string", fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"exp":%d,"nbf":"%d"}`, tenantA, future, past)},
		{"iat a string", fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"exp":%d,"iat":"%d"}`, tenantA, future, past)},
		{"iat in the future", fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"exp":%d,"iat":%d}`, tenantA, future, now+3600)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := rawToken(t, tc.payload)
			refused(t, e.eventsURL(url.Values{"channel": {ch}}), bearer(tok), 401, "invalid_token")
			refused(t, e.eventsURL(url.Values{"channel": {ch}, "access_token": {tok}}), nil, 401, "invalid_token")
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/tickets", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			if st, _ := doJSON(t, req); st != 401 {
				t.Fatalf("POST /tickets: %d, want 401", st)
			}
		})
	}
	// Control: the same claims, each named once, open the stream.
	good := rawToken(t, fmt.Sprintf(`{"sub":"u1","tenant_id":%q,"exp":%d,"iat":%d}`, tenantA, future, now))
	open(t, e.eventsURL(url.Values{"channel": {ch}}), bearer(good)).expect("stream-open")
}
