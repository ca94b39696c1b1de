package auth_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/url"
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
		cfg      func(*auth.Config)
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
			cfg := auth.Config{JWTSecret: secret, Now: func() time.Time { return now }}
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

func leeway(d time.Duration) func(*auth.Config) { return func(c *auth.Config) { c.Leeway = d } }
func issuer(s string) func(*auth.Config)        { return func(c *auth.Config) { c.Issuer = s } }
func audience(s string) func(*auth.Config)      { return func(c *auth.Config) { c.Audience = s } }

// TestAlgorithms covers the allow-list and key types.
func TestAlgorithms(t *testing.T) {
	k := keys()
	now := epoch
	rsaPEM := pemFile(t, &k.rsa.PublicKey)
	rsaPEMBytes := func() []byte {
		der, _ := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}()
	noneTok := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(now))

	tests := []struct {
		name string
		cfg  auth.Config
		tok  string
		ok   bool
	}{
		{"HS256", auth.Config{JWTSecret: secret}, hs256(t, claims(now)), true},
		{"HS384", auth.Config{JWTSecret: secret}, sign(t, jwt.SigningMethodHS384, secret, claims(now)), true},
		{"HS512", auth.Config{JWTSecret: secret}, sign(t, jwt.SigningMethodHS512, secret, claims(now)), true},
		{"HS256 wrong secret", auth.Config{JWTSecret: secret}, sign(t, jwt.SigningMethodHS256, []byte("another secret of enough length!"), claims(now)), false},
		{"none", auth.Config{JWTSecret: secret}, noneTok, false},
		{"none with rsa key", auth.Config{JWTPublicKeyFile: rsaPEM}, noneTok, false},
		{"RS256", auth.Config{JWTPublicKeyFile: rsaPEM}, sign(t, jwt.SigningMethodRS256, k.rsa, claims(now)), true},
		{"RS512", auth.Config{JWTPublicKeyFile: rsaPEM}, sign(t, jwt.SigningMethodRS512, k.rsa, claims(now)), true},
		{"PS256", auth.Config{JWTPublicKeyFile: rsaPEM}, sign(t, jwt.SigningMethodPS256, k.rsa, claims(now)), true},
		{"ES256", auth.Config{JWTPublicKeyFile: pemFile(t, &k.ec256.PublicKey)}, sign(t, jwt.SigningMethodES256, k.ec256, claims(now)), true},
		{"ES384", auth.Config{JWTPublicKeyFile: pemFile(t, &k.ec384.PublicKey)}, sign(t, jwt.SigningMethodES384, k.ec384, claims(now)), true},
		{"EdDSA", auth.Config{JWTPublicKeyFile: pemFile(t, k.ed.Public())}, sign(t, jwt.SigningMethodEdDSA, k.ed, claims(now)), true},
		{"two keys in one file", auth.Config{JWTPublicKeyFile: pemFile(t, &k.ec256.PublicKey, &k.rsa.PublicKey)},
			sign(t, jwt.SigningMethodRS256, k.rsa, claims(now)), true},
		{"HS256 with RSA public key as secret", auth.Config{JWTPublicKeyFile: rsaPEM},
			sign(t, jwt.SigningMethodHS256, rsaPEMBytes, claims(now)), false},
		{"HS256 with RSA public key as secret, both allowed", auth.Config{JWTSecret: secret, JWTPublicKeyFile: rsaPEM, Algorithms: []string{"HS256", "RS256"}},
			sign(t, jwt.SigningMethodHS256, rsaPEMBytes, claims(now)), false},
		{"RS256 with only a secret", auth.Config{JWTSecret: secret}, sign(t, jwt.SigningMethodRS256, k.rsa, claims(now)), false},
		{"RS256 not in allow-list", auth.Config{JWTPublicKeyFile: rsaPEM, Algorithms: []string{"PS256"}},
			sign(t, jwt.SigningMethodRS256, k.rsa, claims(now)), false},
		{"HS384 not in allow-list", auth.Config{JWTSecret: secret, Algorithms: []string{"HS256"}},
			sign(t, jwt.SigningMethodHS384, secret, claims(now)), false},
		{"ES384 token, P-256 key", auth.Config{JWTPublicKeyFile: pemFile(t, &k.ec256.PublicKey)},
			sign(t, jwt.SigningMethodES384, k.ec384, claims(now)), false},
		{"ES256 by another key", auth.Config{JWTPublicKeyFile: pemFile(t, &k.ec256.PublicKey)},
			sign(t, jwt.SigningMethodES256, mustEC(t), claims(now)), false},
		{"JWT without JWT key", auth.Config{APIKeysFile: apiKeysFile(t)}, hs256(t, claims(now)), false},
		{"crit header", auth.Config{JWTSecret: secret}, critToken(t, claims(now)), false},
		{"garbage", auth.Config{JWTSecret: secret}, "a.b.c", false},
		{"two segments", auth.Config{JWTSecret: secret}, "eyJhbGciOiJIUzI1NiJ9.e30", false},
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

// TestNewErrors covers configuration mistakes reported at start.
func TestNewErrors(t *testing.T) {
	k := keys()
	rsaPEM := pemFile(t, &k.rsa.PublicKey)
	privDER, _ := x509.MarshalPKCS8PrivateKey(k.rsa)
	privPEM := writeFile(t, "priv.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}))
	tests := []struct {
		name string
		cfg  auth.Config
		want string
	}{
		{"nothing", auth.Config{}, "SLUICE_JWT_SECRET"},
		{"alg none", auth.Config{JWTSecret: secret, Algorithms: []string{"none"}}, `"none"`},
		{"alg unknown", auth.Config{JWTSecret: secret, Algorithms: []string{"HS1"}}, "unknown JWT algorithm"},
		{"alg without key", auth.Config{JWTSecret: secret, Algorithms: []string{"RS256"}}, "RS256"},
		{"HS alg with rsa key only", auth.Config{JWTPublicKeyFile: rsaPEM, Algorithms: []string{"HS256"}}, "HS256"},
		{"ES384 with P-256 key", auth.Config{JWTPublicKeyFile: pemFile(t, &k.ec256.PublicKey), Algorithms: []string{"ES384"}}, "ES384"},
		{"algorithms without key", auth.Config{APIKeysFile: apiKeysFile(t), Algorithms: []string{"HS256"}}, "SLUICE_JWT_ALGORITHMS"},
		{"missing key file", auth.Config{JWTPublicKeyFile: "/nonexistent/key.pem"}, "no such file"},
		{"private key", auth.Config{JWTPublicKeyFile: privPEM}, "private key"},
		{"not PEM", auth.Config{JWTPublicKeyFile: writeFile(t, "x.pem", []byte("hello"))}, "no PEM block"},
		{"negative leeway", auth.Config{JWTSecret: secret, Leeway: -time.Second}, "LEEWAY"},
		{"bad JWKS URL", auth.Config{JWKSURL: "not a url"}, "SLUICE_JWKS_URL"},
		{"keys: not JSON", auth.Config{APIKeysFile: writeFile(t, "k.json", []byte(`{`))}, "JSON array"},
		{"keys: bad hash prefix", keyFile(t, `[{"hash":"md5:00","user":"u","tenant":"`+tenantA+`"}]`), "entry 1"},
		{"keys: short hash", keyFile(t, `[{"hash":"`+auth.HashAPIKey("a")+`","user":"u","tenant":"`+tenantA+`"},{"hash":"sha256:abcd","user":"u","tenant":"`+tenantA+`"}]`), "entry 2"},
		{"keys: hash not hex", keyFile(t, `[{"hash":"sha256:`+strings.Repeat("zz", 32)+`","user":"u","tenant":"`+tenantA+`"}]`), "entry 1"},
		{"keys: uppercase tenant", keyFile(t, `[{"hash":"`+auth.HashAPIKey("a")+`","user":"u","tenant":"`+strings.ToUpper(tenantA)+`"}]`), "entry 1"},
		{"keys: no user", keyFile(t, `[{"hash":"`+auth.HashAPIKey("a")+`","user":"","tenant":"`+tenantA+`"}]`), "entry 1"},
		{"keys: duplicate", keyFile(t, `[{"hash":"`+auth.HashAPIKey("a")+`","user":"u","tenant":"`+tenantA+`"},{"hash":"`+auth.HashAPIKey("a")+`","user":"v","tenant":"`+tenantA+`"}]`), "entry 2"},
		{"keys: unknown field", keyFile(t, `[{"hash":"`+auth.HashAPIKey("a")+`","user":"u","tenant_id":"`+tenantA+`"}]`), "tenant_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := auth.New(context.Background(), tt.cfg)
			if err == nil {
				a.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
	if _, err := auth.New(context.Background(), auth.Config{}); !errors.Is(err, auth.ErrNoVerifier) {
		t.Fatalf("empty config: %v, want ErrNoVerifier", err)
	}
}

func keyFile(t *testing.T, s string) auth.Config {
	return auth.Config{APIKeysFile: writeFile(t, "keys.json", []byte(s))}
}

func TestHasVerifier(t *testing.T) {
	for _, tt := range []struct {
		cfg  auth.Config
		want bool
	}{
		{auth.Config{}, false},
		{auth.Config{Issuer: "x", Leeway: time.Second}, false},
		{auth.Config{JWTSecret: secret}, true},
		{auth.Config{JWTPublicKeyFile: "k.pem"}, true},
		{auth.Config{JWKSURL: "https://id.example/jwks"}, true},
		{auth.Config{APIKeysFile: "keys.json"}, true},
	} {
		if got := tt.cfg.HasVerifier(); got != tt.want {
			t.Errorf("%+v: HasVerifier %v, want %v", tt.cfg, got, tt.want)
		}
	}
}

// TestCredentialSources covers where credentials are looked for (protocol.md §2).
func TestCredentialSources(t *testing.T) {
	now := epoch
	a := newAuth(t, auth.Config{JWTSecret: secret, APIKeysFile: apiKeysFile(t), Tickets: &auth.MemoryTickets{},
		Now: func() time.Time { return now }})
	good := hs256(t, claims(now))
	bad := hs256(t, claims(now, del("tenant_id")))
	q := auth.Options{Query: true}
	tests := []struct {
		name  string
		query string
		authz []string
		opts  auth.Options
		want  string
		kind  auth.Kind
	}{
		{name: "nothing", want: problem.CodeMissingCredentials},
		{name: "nothing, query allowed", opts: q, want: problem.CodeMissingCredentials},
		{name: "unrelated query", query: "channel=a:b:c", opts: q, want: problem.CodeMissingCredentials},
		{name: "bearer", authz: []string{"Bearer " + good}, kind: auth.KindJWT},
		{name: "bearer lowercase scheme", authz: []string{"bearer " + good}, kind: auth.KindJWT},
		{name: "bearer extra spaces", authz: []string{"Bearer   " + good + " "}, kind: auth.KindJWT},
		{name: "bearer empty", authz: []string{"Bearer "}, want: problem.CodeInvalidToken},
		{name: "bearer alone", authz: []string{"Bearer"}, want: problem.CodeInvalidToken},
		{name: "empty header", authz: []string{""}, want: problem.CodeInvalidToken},
		{name: "bearer with space inside", authz: []string{"Bearer " + good + " x"}, want: problem.CodeInvalidToken},
		{name: "basic", authz: []string{"Basic dTE6cGFzcw=="}, want: problem.CodeInvalidToken},
		{name: "unknown scheme", authz: []string{"Token " + good}, want: problem.CodeInvalidToken},
		{name: "two headers", authz: []string{"Bearer " + good, "Bearer " + good}, want: problem.CodeAmbiguousCredentials},
		{name: "api key", authz: []string{"Api-Key " + apiKey1}, kind: auth.KindAPIKey},
		{name: "api key lowercase scheme", authz: []string{"api-key " + apiKey1}, kind: auth.KindAPIKey},
		{name: "api key unknown", authz: []string{"Api-Key sk_live_nope"}, want: problem.CodeInvalidToken},
		{name: "api key as bearer", authz: []string{"Bearer " + apiKey1}, want: problem.CodeInvalidToken},
		{name: "jwt as api key", authz: []string{"Api-Key " + good}, want: problem.CodeInvalidToken},
		{name: "query token", query: "access_token=" + good, opts: q, kind: auth.KindJWT},
		{name: "query token with other params", query: "channel=x&access_token=" + good + "&lastEventId=1", opts: q, kind: auth.KindJWT},
		{name: "query token escaped key", query: "access%5Ftoken=" + good, opts: q, kind: auth.KindJWT},
		{name: "query token not allowed", query: "access_token=" + good, want: problem.CodeMissingCredentials},
		{name: "query token empty", query: "access_token=", opts: q, want: problem.CodeInvalidToken},
		{name: "query token key only", query: "access_token", opts: q, want: problem.CodeInvalidToken},
		{name: "query token bad escape", query: "access_token=%zz", opts: q, want: problem.CodeInvalidToken},
		{name: "query token invalid", query: "access_token=" + bad, opts: q, want: problem.CodeInvalidToken},
		{name: "api key in query", query: "access_token=" + apiKey1, opts: q, want: problem.CodeInvalidToken},
		{name: "repeated query token", query: "access_token=" + good + "&access_token=" + good, opts: q, want: problem.CodeAmbiguousCredentials},
		{name: "query token and ticket", query: "access_token=" + good + "&ticket=x", opts: q, want: problem.CodeAmbiguousCredentials},
		{name: "repeated ticket", query: "ticket=x&ticket=y", opts: q, want: problem.CodeAmbiguousCredentials},
		{name: "unknown ticket", query: "ticket=" + strings.Repeat("A", 43), opts: q, want: problem.CodeInvalidToken},
		{name: "malformed ticket", query: "ticket=abc", opts: q, want: problem.CodeInvalidToken},
		{name: "bad header, good query token", query: "access_token=" + good, authz: []string{"Bearer " + bad}, opts: q, want: problem.CodeInvalidToken},
		{name: "unknown scheme, good query token", query: "access_token=" + good, authz: []string{"Basic x"}, opts: q, want: problem.CodeInvalidToken},
		{name: "good header, bad query token", query: "access_token=" + bad + "&ticket=zz", authz: []string{"Bearer " + good}, opts: q, kind: auth.KindJWT},
		{name: "too long", authz: []string{"Bearer " + strings.Repeat("a", auth.MaxCredentialLen+1)}, want: problem.CodeInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := a.Authenticate(request(tt.query, tt.authz...), tt.opts)
			if got := code(t, err); got != tt.want {
				t.Fatalf("code %q, want %q (%v)", got, tt.want, err)
			}
			noLeak(t, err, good, bad, apiKey1)
			if tt.want == "" && p.Kind != tt.kind {
				t.Fatalf("kind %q, want %q", p.Kind, tt.kind)
			}
		})
	}
}

func TestAPIKeyPrincipal(t *testing.T) {
	a := newAuth(t, auth.Config{APIKeysFile: apiKeysFile(t)})
	p, err := a.Authenticate(request("", "Api-Key "+apiKey2), auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := auth.Principal{User: "svc", Tenant: tenantB, Kind: auth.KindAPIKey, Credential: "Api-Key " + apiKey2}
	if p != want {
		t.Fatalf("got %#v, want %#v", p, want)
	}
	if p.Expires() {
		t.Fatal("an API key expires")
	}
	// A JWT is refused by an authenticator without JWT keys.
	_, err = a.Authenticate(request("", "Bearer "+hs256(t, claims(epoch))), auth.Options{})
	if code(t, err) != problem.CodeInvalidToken {
		t.Fatalf("JWT accepted without JWT key: %v", err)
	}
}

func TestQueryTokenPrincipal(t *testing.T) {
	a := newAuth(t, auth.Config{JWTSecret: secret, Now: func() time.Time { return epoch }})
	tok := hs256(t, claims(epoch))
	p, err := a.Authenticate(request("access_token="+url.QueryEscape(tok)), auth.Options{Query: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.Credential != "Bearer "+tok || p.Kind != auth.KindJWT {
		t.Fatalf("principal %#v", p)
	}
	if !p.IssuedAt.Equal(epoch.Add(-time.Minute)) {
		t.Fatalf("issued at %v", p.IssuedAt)
	}
}

func TestPrincipalNeverPrintsCredential(t *testing.T) {
	p := auth.Principal{User: "u1", Tenant: tenantA, Kind: auth.KindJWT, Credential: "Bearer secret-token-value"}
	for _, s := range []string{p.String(), p.GoString(), p.LogValue().String()} {
		if strings.Contains(s, "secret-token-value") {
			t.Fatalf("%q shows the credential", s)
		}
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
