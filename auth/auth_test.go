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

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/auth/internal/authtest"
	"github.com/sluicehq/sluice/problem"
)

// TestNewErrors covers configuration mistakes reported at start.
func TestNewErrors(t *testing.T) {
	k := keys()
	rsaPEM := pemFile(t, &k.RSA.PublicKey)
	privDER, _ := x509.MarshalPKCS8PrivateKey(k.RSA)
	privPEM := writeFile(t, "priv.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}))
	tests := []struct {
		name string
		cfg  config
		want string
	}{
		{"nothing", config{}, "SLUICE_JWT_SECRET"},
		{"alg none", config{JWTSecret: secret, Algorithms: []string{"none"}}, `"none"`},
		{"alg unknown", config{JWTSecret: secret, Algorithms: []string{"HS1"}}, "unknown JWT algorithm"},
		{"alg without key", config{JWTSecret: secret, Algorithms: []string{"RS256"}}, "RS256"},
		{"HS alg with rsa key only", config{JWTPublicKeyFile: rsaPEM, Algorithms: []string{"HS256"}}, "HS256"},
		{"ES384 with P-256 key", config{JWTPublicKeyFile: pemFile(t, &k.EC256.PublicKey), Algorithms: []string{"ES384"}}, "ES384"},
		{"algorithms without key", config{APIKeysFile: apiKeysFile(t), Algorithms: []string{"HS256"}}, "SLUICE_JWT_ALGORITHMS"},
		{"missing key file", config{JWTPublicKeyFile: "/nonexistent/key.pem"}, "no such file"},
		{"private key", config{JWTPublicKeyFile: privPEM}, "private key"},
		{"not PEM", config{JWTPublicKeyFile: writeFile(t, "x.pem", []byte("hello"))}, "no PEM block"},
		{"negative leeway", config{JWTSecret: secret, Leeway: -time.Second}, "LEEWAY"},
		{"bad JWKS URL", config{JWKSURL: "not a url"}, "SLUICE_JWKS_URL"},
		{"keys: not JSON", config{APIKeysFile: writeFile(t, "k.json", []byte(`{`))}, "JSON array"},
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
			a, err := authtest.New(context.Background(), tt.cfg)
			if err == nil {
				a.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
	if _, err := authtest.New(context.Background(), config{}); !errors.Is(err, auth.ErrNoVerifier) {
		t.Fatalf("empty config: %v, want ErrNoVerifier", err)
	}
}

func keyFile(t *testing.T, s string) config {
	return config{APIKeysFile: writeFile(t, "keys.json", []byte(s))}
}

func TestHasVerifier(t *testing.T) {
	for _, tt := range []struct {
		cfg  auth.Config
		want bool
	}{
		{auth.Config{}, false},
		{auth.Config{Leeway: time.Second, Tickets: &auth.MemoryTickets{}}, false},
		{auth.Config{Tokens: tokenFunc(nil)}, true},
		{auth.Config{APIKeysFile: "keys.json"}, true},
	} {
		if got := tt.cfg.HasVerifier(); got != tt.want {
			t.Errorf("%+v: HasVerifier %v, want %v", tt.cfg, got, tt.want)
		}
	}
}

// tokenFunc is an auth.TokenVerifier.
type tokenFunc func(ctx context.Context, token string) (auth.Principal, error)

func (f tokenFunc) VerifyToken(ctx context.Context, token string) (auth.Principal, error) {
	return f(ctx, token)
}

// TestCredentialSources covers where credentials are looked for (protocol.md §2).
func TestCredentialSources(t *testing.T) {
	now := epoch
	a := newAuth(t, config{JWTSecret: secret, APIKeysFile: apiKeysFile(t), Tickets: &auth.MemoryTickets{},
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
	a := newAuth(t, config{APIKeysFile: apiKeysFile(t)})
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
	a := newAuth(t, config{JWTSecret: secret, Now: func() time.Time { return epoch }})
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
