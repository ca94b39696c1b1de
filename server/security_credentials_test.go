package server_test

// Security, forged and replayed credentials: forged and tampered JWTs
// (algorithm confusion, claim-name tricks), tickets replayed or used late.
// docs/security.md maps each threat to the test that proves its defence.

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice/server"
)

// rsaKeyFile writes a fresh RSA public key as PEM and returns its path and
// the private key.
func rsaKeyFile(t *testing.T) (string, []byte, *rsa.PrivateKey) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	path := filepath.Join(t.TempDir(), "pub.pem")
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, pemBytes, k
}

// TestSecurityForgedTokens presents forged and tampered credentials on the
// stream endpoint: every one is 401, and a token of one tenant never reads
// another tenant's channels (403).
func TestSecurityForgedTokens(t *testing.T) {
	chA := chanName("doc", tenantA, "f")
	chB := chanName("doc", tenantB, "f")
	qA := url.Values{"channel": {chA}}

	t.Run("hmac", func(t *testing.T) {
		e := newEnv(t, nil)
		good := token(t, "u1", tenantA, time.Hour, nil)
		parts := strings.Split(good, ".")
		// The payload swapped for one naming tenant B, the signature kept.
		swapped := strings.Replace(string(must(base64.RawURLEncoding.DecodeString(parts[1]))), tenantA, tenantB, 1)
		tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(swapped)) + "." + parts[2]
		cases := []struct{ name, tok string }{
			{"alg none", sign(t, jwt.SigningMethodNone, claims("u1", tenantA), jwt.UnsafeAllowNoneSignatureType)},
			{"alg none, signature kept", strings.Replace(good, parts[0], base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)), 1)},
			{"wrong secret", sign(t, jwt.SigningMethodHS256, claims("u1", tenantA), []byte("another-secret-0123456789abcdef012345"))},
			{"HS512 with the wrong secret", sign(t, jwt.SigningMethodHS512, claims("u1", tenantA), []byte("x"))},
			{"tenant swapped in the payload", tampered},
			{"signature stripped", parts[0] + "." + parts[1] + "."},
			{"refresh token", token(t, "u1", tenantA, time.Hour, map[string]any{"token_type": "refresh"})},
			{"non-canonical tenant", token(t, "u1", strings.ToUpper(tenantA), time.Hour, nil)},
			{"no exp", token(t, "u1", tenantA, time.Hour, map[string]any{"exp": nil})},
			{"not yet valid", token(t, "u1", tenantA, time.Hour, map[string]any{"nbf": time.Now().Add(time.Hour).Unix()})},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				refused(t, e.eventsURL(qA), bearer(tc.tok), 401, "")
			})
		}
		t.Run("query token, same forgeries", func(t *testing.T) {
			for _, tc := range cases {
				q := url.Values{"channel": {chA}, "access_token": {tc.tok}}
				if s, resp := tryOpen(t, e.eventsURL(q), nil); s != nil || resp.StatusCode != 401 {
					t.Fatalf("%s: a forged query token opened a stream", tc.name)
				}
			}
		})
		t.Run("token of A asks channels of B", func(t *testing.T) {
			refused(t, e.eventsURL(url.Values{"channel": {chB}}), bearer(good), 403, "foreign_tenant")
			refused(t, e.eventsURL(url.Values{"channel": {chA, chB}}), bearer(good), 403, "foreign_tenant")
			q := url.Values{"channel": {chB}, "ticket": {issueTicket(t, e, good)}}
			refused(t, e.eventsURL(q), nil, 403, "foreign_tenant")
		})
		// Control: the untampered token opens the stream.
		open(t, e.eventsURL(qA), bearer(good)).expect("stream-open")
	})

	t.Run("public key", func(t *testing.T) {
		path, pub, priv := rsaKeyFile(t)
		e := newEnv(t, func(c *server.Config) { c.JWTSecret = ""; c.JWTPublicKey = path })
		for name, tok := range map[string]string{
			// The classic confusion: the public key used as an HMAC secret.
			"HS256 signed with the public key": sign(t, jwt.SigningMethodHS256, claims("u1", tenantA), pub),
			"HS256 with the configured secret": token(t, "u1", tenantA, time.Hour, nil),
			"alg none":                         sign(t, jwt.SigningMethodNone, claims("u1", tenantA), jwt.UnsafeAllowNoneSignatureType),
			"RS256 of another key": func() string {
				other, _ := rsa.GenerateKey(rand.Reader, 2048)
				return sign(t, jwt.SigningMethodRS256, claims("u1", tenantA), other)
			}(),
		} {
			t.Run(name, func(t *testing.T) {
				refused(t, e.eventsURL(qA), bearer(tok), 401, "invalid_token")
			})
		}
		open(t, e.eventsURL(qA), bearer(sign(t, jwt.SigningMethodRS256, claims("u1", tenantA), priv))).expect("stream-open")
	})
}

// TestSecurityTicketReplay redeems a ticket twice: the second use is 401,
// whatever the channels asked for.
func TestSecurityTicketReplay(t *testing.T) {
	e := newEnv(t, nil)
	tok := token(t, "u1", tenantA, time.Hour, nil)
	q := url.Values{"channel": {chanName("doc", tenantA, "t")}}
	tk := issueTicket(t, e, tok)
	q.Set("ticket", tk)
	s := open(t, e.eventsURL(q), nil)
	s.expect("stream-open")
	refused(t, e.eventsURL(q), nil, 401, "invalid_token")
	// Redeemed by a refused request (foreign channel), it is still spent.
	tk2 := issueTicket(t, e, tok)
	refused(t, e.eventsURL(url.Values{"channel": {chanName("doc", tenantB, "t")}, "ticket": {tk2}}), nil, 403, "foreign_tenant")
	refused(t, e.eventsURL(url.Values{"channel": {chanName("doc", tenantA, "t")}, "ticket": {tk2}}), nil, 401, "invalid_token")
	// A ticket is not a header credential.
	refused(t, e.eventsURL(url.Values{"channel": {chanName("doc", tenantA, "t")}}), bearer(issueTicket(t, e, tok)), 401, "invalid_token")
	// Forged tickets of the right shape.
	for range 20 {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		fake := base64.RawURLEncoding.EncodeToString(b)
		refused(t, e.eventsURL(url.Values{"channel": {chanName("doc", tenantA, "t")}, "ticket": {fake}}), nil, 401, "invalid_token")
	}
}

// TestSecurityTicketUsedLate redeems a ticket after its lifetime. The ticket
// TTL itself (30 s) is not configurable through server.Config, so this test
// uses a credential that expires in about two seconds: a ticket never
// outlives the credential it was issued for. The 30 s store lifetime is
// tested in auth (TestTicketExpiry).
func TestSecurityTicketUsedLate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	exp := time.Now().Add(1500 * time.Millisecond).Truncate(time.Second).Add(time.Second)
	tok := token(t, "u1", tenantA, 0, map[string]any{"exp": exp.Unix()})
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/tickets", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	st, reply := doJSON(t, req)
	if st != 200 || reply["expires_in"].(float64) > 3 {
		t.Fatalf("%d %v: the ticket must not outlive the credential", st, reply)
	}
	q := url.Values{"channel": {chanName("doc", tenantA, "late")}, "ticket": {reply["ticket"].(string)}}
	time.Sleep(time.Until(exp) + 100*time.Millisecond)
	if s, resp := tryOpen(t, e.eventsURL(q), nil); s != nil || resp.StatusCode != 401 {
		t.Fatal("a ticket used after its lifetime opened a stream")
	}
}

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
