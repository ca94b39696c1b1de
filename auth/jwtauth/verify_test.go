package jwtauth_test

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/problem"
)

// TestJWTClaims covers the claim rules of protocol.md §2 with an HS256 secret.
func TestJWTClaims(t *testing.T) {
	now := epoch
	tests := []struct {
		name     string
		cfg      func(*config)
		claims   jwt.MapClaims
		want     string // problem code, "" for success
		wantUser string
	}{
		{name: "valid", claims: claims(now), wantUser: "u1"},
		{name: "no exp", claims: claims(now, del("exp")), want: problem.CodeInvalidToken},
		{name: "expired", claims: claims(now, set("exp", now.Add(-time.Second).Unix())), want: problem.CodeTokenExpired},
		{name: "exp is now", claims: claims(now, set("exp", now.Unix())), want: problem.CodeTokenExpired},
		{name: "expired within leeway", cfg: leeway(30 * time.Second),
			claims: claims(now, set("exp", now.Add(-10*time.Second).Unix())), wantUser: "u1"},
		{name: "expired beyond leeway", cfg: leeway(30 * time.Second),
			claims: claims(now, set("exp", now.Add(-31*time.Second).Unix())), want: problem.CodeTokenExpired},
		{name: "nbf future", claims: claims(now, set("nbf", now.Add(10*time.Second).Unix())), want: problem.CodeInvalidToken},
		{name: "nbf future within leeway", cfg: leeway(30 * time.Second),
			claims: claims(now, set("nbf", now.Add(10*time.Second).Unix())), wantUser: "u1"},
		{name: "nbf past", claims: claims(now, set("nbf", now.Add(-10*time.Second).Unix())), wantUser: "u1"},
		{name: "exp not a number", claims: claims(now, set("exp", "tomorrow")), want: problem.CodeInvalidToken},
		{name: "iat in the future", claims: claims(now, set("iat", now.Add(time.Hour).Unix())), want: problem.CodeInvalidToken},
		{name: "iat in the future within leeway", cfg: leeway(30 * time.Second),
			claims: claims(now, set("iat", now.Add(30*time.Second).Unix())), wantUser: "u1"},
		{name: "iat a string", claims: claims(now, set("iat", "1")), want: problem.CodeInvalidToken},
		{name: "exp a string of digits", claims: claims(now, set("exp", "1999999999")), want: problem.CodeInvalidToken},
		{name: "TENANT_ID only", claims: claims(now, del("tenant_id"), set("TENANT_ID", tenantA)), want: problem.CodeInvalidToken},

		{name: "token_type access", claims: claims(now, set("token_type", "access")), wantUser: "u1"},
		{name: "token_type refresh", claims: claims(now, set("token_type", "refresh")), want: problem.CodeInvalidToken},
		{name: "token_type empty", claims: claims(now, set("token_type", "")), want: problem.CodeInvalidToken},
		{name: "token_type null", claims: claims(now, set("token_type", nil)), want: problem.CodeInvalidToken},
		{name: "token_type Access", claims: claims(now, set("token_type", "Access")), want: problem.CodeInvalidToken},
		{name: "typ access", claims: claims(now, set("typ", "access")), wantUser: "u1"},
		{name: "typ refresh", claims: claims(now, set("typ", "refresh")), want: problem.CodeInvalidToken},
		{name: "typ ok token_type refresh", claims: claims(now, set("typ", "access"), set("token_type", "refresh")), want: problem.CodeInvalidToken},

		{name: "tenant missing", claims: claims(now, del("tenant_id")), want: problem.CodeInvalidToken},
		{name: "tenant uppercase", claims: claims(now, set("tenant_id", strings.ToUpper(tenantA))), want: problem.CodeInvalidToken},
		{name: "tenant braced", claims: claims(now, set("tenant_id", "{"+tenantA+"}")), want: problem.CodeInvalidToken},
		{name: "tenant urn", claims: claims(now, set("tenant_id", "urn:uuid:"+tenantA)), want: problem.CodeInvalidToken},
		{name: "tenant no hyphens", claims: claims(now, set("tenant_id", strings.ReplaceAll(tenantA, "-", ""))), want: problem.CodeInvalidToken},
		{name: "tenant number", claims: claims(now, set("tenant_id", 42)), want: problem.CodeInvalidToken},
		{name: "tenant empty", claims: claims(now, set("tenant_id", "")), want: problem.CodeInvalidToken},

		{name: "sub wins over user_id", claims: claims(now, set("user_id", "other")), wantUser: "u1"},
		{name: "user_id without sub", claims: claims(now, del("sub"), set("user_id", "u7")), wantUser: "u7"},
		{name: "user_id integer", claims: claims(now, del("sub"), set("user_id", 42)), wantUser: "42"},
		{name: "empty sub falls back to user_id", claims: claims(now, set("sub", ""), set("user_id", "u7")), wantUser: "u7"},
		{name: "user_id fraction", claims: claims(now, del("sub"), set("user_id", 4.5)), want: problem.CodeInvalidToken},
		{name: "user_id object", claims: claims(now, del("sub"), set("user_id", map[string]any{})), want: problem.CodeInvalidToken},
		{name: "no user", claims: claims(now, del("sub")), want: problem.CodeInvalidToken},
		{name: "sub not a string", claims: claims(now, set("sub", 7)), want: problem.CodeInvalidToken},

		{name: "issuer ok", cfg: issuer("https://id.example"), claims: claims(now, set("iss", "https://id.example")), wantUser: "u1"},
		{name: "issuer wrong", cfg: issuer("https://id.example"), claims: claims(now, set("iss", "https://evil.example")), want: problem.CodeInvalidToken},
		{name: "issuer missing", cfg: issuer("https://id.example"), claims: claims(now), want: problem.CodeInvalidToken},
		{name: "issuer not configured", claims: claims(now, set("iss", "anyone")), wantUser: "u1"},
		{name: "audience ok", cfg: audience("sluice"), claims: claims(now, set("aud", "sluice")), wantUser: "u1"},
		{name: "audience in list", cfg: audience("sluice"), claims: claims(now, set("aud", []string{"api", "sluice"})), wantUser: "u1"},
		{name: "audience wrong", cfg: audience("sluice"), claims: claims(now, set("aud", "api")), want: problem.CodeInvalidToken},
		{name: "audience missing", cfg: audience("sluice"), claims: claims(now), want: problem.CodeInvalidToken},
		{name: "expired and wrong issuer", cfg: issuer("a"),
			claims: claims(now, set("iss", "b"), set("exp", now.Add(-time.Hour).Unix())), want: problem.CodeInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config{JWTSecret: secret, Now: func() time.Time { return now }}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			a := newAuth(t, cfg)
			tok := hs256(t, tt.claims)
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
			if p.User != tt.wantUser || p.Tenant != tenantA || p.Kind != auth.KindJWT {
				t.Fatalf("principal %#v", p)
			}
			if want := time.Unix(tt.claims["exp"].(int64), 0); !p.Expiry.Equal(want) {
				t.Fatalf("expiry %v, want %v", p.Expiry, want)
			}
			if p.Credential != "Bearer "+tok {
				t.Fatal("credential is not the Authorization value")
			}
		})
	}
}

func leeway(d time.Duration) func(*config) { return func(c *config) { c.Leeway = d } }
func issuer(s string) func(*config)        { return func(c *config) { c.Issuer = s } }
func audience(s string) func(*config)      { return func(c *config) { c.Audience = s } }

// TestAlgorithms covers the allow-list and key types.
func TestAlgorithms(t *testing.T) {
	k := keys()
	now := epoch
	rsaPEM := pemFile(t, &k.RSA.PublicKey)
	rsaPEMBytes := func() []byte {
		der, _ := x509.MarshalPKIXPublicKey(&k.RSA.PublicKey)
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}()
	noneTok := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(now))

	tests := []struct {
		name string
		cfg  config
		tok  string
		ok   bool
	}{
		{"HS256", config{JWTSecret: secret}, hs256(t, claims(now)), true},
		{"HS384", config{JWTSecret: secret}, sign(t, jwt.SigningMethodHS384, secret, claims(now)), true},
		{"HS512", config{JWTSecret: secret}, sign(t, jwt.SigningMethodHS512, secret, claims(now)), true},
		{"HS256 wrong secret", config{JWTSecret: secret}, sign(t, jwt.SigningMethodHS256, []byte("another secret of enough length!"), claims(now)), false},
		{"none", config{JWTSecret: secret}, noneTok, false},
		{"none with rsa key", config{JWTPublicKeyFile: rsaPEM}, noneTok, false},
		{"RS256", config{JWTPublicKeyFile: rsaPEM}, sign(t, jwt.SigningMethodRS256, k.RSA, claims(now)), true},
		{"RS512", config{JWTPublicKeyFile: rsaPEM}, sign(t, jwt.SigningMethodRS512, k.RSA, claims(now)), true},
		{"PS256", config{JWTPublicKeyFile: rsaPEM}, sign(t, jwt.SigningMethodPS256, k.RSA, claims(now)), true},
		{"ES256", config{JWTPublicKeyFile: pemFile(t, &k.EC256.PublicKey)}, sign(t, jwt.SigningMethodES256, k.EC256, claims(now)), true},
		{"ES384", config{JWTPublicKeyFile: pemFile(t, &k.EC384.PublicKey)}, sign(t, jwt.SigningMethodES384, k.EC384, claims(now)), true},
		{"EdDSA", config{JWTPublicKeyFile: pemFile(t, k.Ed.Public())}, sign(t, jwt.SigningMethodEdDSA, k.Ed, claims(now)), true},
		{"two keys in one file", config{JWTPublicKeyFile: pemFile(t, &k.EC256.PublicKey, &k.RSA.PublicKey)},
			sign(t, jwt.SigningMethodRS256, k.RSA, claims(now)), true},
		{"HS256 with RSA public key as secret", config{JWTPublicKeyFile: rsaPEM},
			sign(t, jwt.SigningMethodHS256, rsaPEMBytes, claims(now)), false},
		{"HS256 with RSA public key as secret, both allowed", config{JWTSecret: secret, JWTPublicKeyFile: rsaPEM, Algorithms: []string{"HS256", "RS256"}},
			sign(t, jwt.SigningMethodHS256, rsaPEMBytes, claims(now)), false},
		{"RS256 with only a secret", config{JWTSecret: secret}, sign(t, jwt.SigningMethodRS256, k.RSA, claims(now)), false},
		{"RS256 not in allow-list", config{JWTPublicKeyFile: rsaPEM, Algorithms: []string{"PS256"}},
			sign(t, jwt.SigningMethodRS256, k.RSA, claims(now)), false},
		{"HS384 not in allow-list", config{JWTSecret: secret, Algorithms: []string{"HS256"}},
			sign(t, jwt.SigningMethodHS384, secret, claims(now)), false},
		{"ES384 token, P-256 key", config{JWTPublicKeyFile: pemFile(t, &k.EC256.PublicKey)},
			sign(t, jwt.SigningMethodES384, k.EC384, claims(now)), false},
		{"ES256 by another key", config{JWTPublicKeyFile: pemFile(t, &k.EC256.PublicKey)},
			sign(t, jwt.SigningMethodES256, mustEC(t), claims(now)), false},
		{"JWT without JWT key", config{APIKeysFile: apiKeysFile(t)}, hs256(t, claims(now)), false},
		{"crit header", config{JWTSecret: secret}, critToken(t, claims(now)), false},
		{"garbage", config{JWTSecret: secret}, "a.b.c", false},
		{"two segments", config{JWTSecret: secret}, "eyJhbGciOiJIUzI1NiJ9.e30", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Now = func() time.Time { return now }
			a := newAuth(t, tt.cfg)
			p, err := a.Authenticate(request("", "Bearer "+tt.tok), auth.Options{})
			c := code(t, err)
			if tt.ok != (c == "") {
				t.Fatalf("ok=%v, got %q (%v)", tt.ok, c, err)
			}
			if !tt.ok && c != problem.CodeInvalidToken {
				t.Fatalf("code %q, want invalid_token", c)
			}
			if tt.ok && (p.User != "u1" || p.Tenant != tenantA) {
				t.Fatalf("principal %v", p)
			}
		})
	}
}

func critToken(t *testing.T, c jwt.MapClaims) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	tok.Header["crit"] = []string{"exp"}
	s, err := tok.SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
