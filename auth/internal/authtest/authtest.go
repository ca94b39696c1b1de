// Package authtest holds what the tests of package auth and of package
// auth/jwtauth share: credentials, keys, a clock, and Config, which builds an
// Authenticator with a JWT verifier from one flat configuration (as the
// server does from its SLUICE_* variables).
package authtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/auth/jwtauth"
	"github.com/sluicehq/sluice/problem"
)

// Config is auth.Config and jwtauth.Config in one: the JWT fields configure
// a verifier, the others the Authenticator; Leeway and Now go to both.
type Config struct {
	JWTSecret        []byte
	JWTPublicKeyFile string
	JWKSURL          string
	JWKSTimeout      time.Duration
	JWKSRefresh      time.Duration
	Algorithms       []string
	Issuer           string
	Audience         string
	Leeway           time.Duration
	APIKeysFile      string
	Tickets          auth.TicketStore
	Revocations      auth.Revocations
	TicketTTL        time.Duration
	Now              func() time.Time
	IsPublisherKey   func(credential string) bool
}

// New builds the Authenticator of c: a jwtauth.Verifier when c has a JWT key
// or algorithms (whose mistakes jwtauth.New reports), then auth.New.
func New(ctx context.Context, c Config) (*auth.Authenticator, error) {
	ac := auth.Config{
		APIKeysFile: c.APIKeysFile, Tickets: c.Tickets, Revocations: c.Revocations,
		TicketTTL: c.TicketTTL, Leeway: c.Leeway, Now: c.Now, IsPublisherKey: c.IsPublisherKey,
	}
	jc := jwtauth.Config{
		Secret: c.JWTSecret, PublicKeyFile: c.JWTPublicKeyFile,
		JWKSURL: c.JWKSURL, JWKSTimeout: c.JWKSTimeout, JWKSRefresh: c.JWKSRefresh,
		Algorithms: c.Algorithms, Issuer: c.Issuer, Audience: c.Audience, Leeway: c.Leeway, Now: c.Now,
	}
	if jc.HasKey() || len(jc.Algorithms) > 0 {
		v, err := jwtauth.New(ctx, jc)
		if err != nil {
			return nil, err
		}
		ac.Tokens = v
	}
	return auth.New(ctx, ac)
}

// Tenants of the tests' credentials.
const (
	TenantA = "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
	TenantB = "0b6a4f52-6c2e-4e8a-9d71-2f0c8b7e5a13"
)

var (
	// Secret is the HMAC secret of the tests' tokens.
	Secret = []byte("0123456789abcdef0123456789abcdef")
	// Epoch is the tests' current time.
	Epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
)

// KeySet holds private keys of every asymmetric type a verifier accepts.
type KeySet struct {
	RSA   *rsa.PrivateKey
	EC256 *ecdsa.PrivateKey
	EC384 *ecdsa.PrivateKey
	Ed    ed25519.PrivateKey
}

// Keys returns keys generated once per test binary.
var Keys = sync.OnceValue(func() (k KeySet) {
	var err error
	if k.RSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.EC256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		panic(err)
	}
	if k.EC384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		panic(err)
	}
	if _, k.Ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		panic(err)
	}
	return k
})

// Clock is a settable time source.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock set to Epoch.
func NewClock() *Clock { return &Clock{t: Epoch} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Claims returns valid claims at time now, changed by the edits.
func Claims(now time.Time, edits ...func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub":       "u1",
		"tenant_id": TenantA,
		"iat":       now.Add(-time.Minute).Unix(),
		"exp":       now.Add(time.Hour).Unix(),
	}
	for _, e := range edits {
		e(c)
	}
	return c
}

// Set returns an edit of Claims that sets claim k to v.
func Set(k string, v any) func(jwt.MapClaims) { return func(c jwt.MapClaims) { c[k] = v } }

// Del returns an edit of Claims that deletes claim k.
func Del(k string) func(jwt.MapClaims) { return func(c jwt.MapClaims) { delete(c, k) } }

// Sign signs c with key by method m.
func Sign(t testing.TB, m jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// HS256 signs c with Secret.
func HS256(t testing.TB, c jwt.MapClaims) string { return Sign(t, jwt.SigningMethodHS256, Secret, c) }

// HS256Raw signs payload with Secret, a JSON text used byte for byte (so
// that it may hold what no encoder writes: duplicate names, odd number
// forms).
func HS256Raw(t testing.TB, payload string) string {
	t.Helper()
	seg := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	signing := seg(`{"alg":"HS256","typ":"JWT"}`) + "." + seg(payload)
	sig, err := jwt.SigningMethodHS256.Sign(signing, Secret)
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + seg(string(sig))
}

// WriteFile writes data to a new file in t.TempDir.
func WriteFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// PEMFile writes the public keys as a PEM file.
func PEMFile(t testing.TB, pubs ...any) string {
	t.Helper()
	var b []byte
	for _, pub := range pubs {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})...)
	}
	return WriteFile(t, "key.pem", b)
}

// API keys of APIKeysFile.
const (
	APIKey1 = "sk_live_0000000000000000000000000001"
	APIKey2 = "sk_live_0000000000000000000000000002"
)

// APIKeysFile writes an API key file with APIKey1 (u1, TenantA) and APIKey2
// (svc, TenantB).
func APIKeysFile(t testing.TB) string {
	t.Helper()
	b, _ := json.Marshal([]map[string]string{
		{"hash": auth.HashAPIKey(APIKey1), "user": "u1", "tenant": TenantA},
		{"hash": auth.HashAPIKey(APIKey2), "user": "svc", "tenant": TenantB},
	})
	return WriteFile(t, "keys.json", b)
}

// NewAuth returns the Authenticator of cfg (New), closed at the end of the
// test.
func NewAuth(t testing.TB, cfg Config) *auth.Authenticator {
	t.Helper()
	a, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// Request builds a GET /events request; a nil header means no Authorization.
func Request(query string, authz ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/events", nil)
	r.URL.RawQuery = query
	for _, v := range authz {
		r.Header.Add("Authorization", v)
	}
	return r
}

// Code returns the machine code of a 401 problem, "" for nil, and fails for
// anything else.
func Code(t testing.TB, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	p, ok := problem.As(err)
	if !ok {
		t.Fatalf("error is not a problem: %v", err)
	}
	if p.Status != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401: %v", p.Status, err)
	}
	return p.Code
}

// NoLeak fails if err's text contains any of the secrets.
func NoLeak(t testing.TB, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		if len(s) >= 8 && strings.Contains(err.Error(), s) {
			t.Fatalf("error %q leaks a credential", err)
		}
	}
}

// Failing is a Revocations and TicketStore that always faults.
type Failing struct{}

// ErrDown is the fault of Failing.
var ErrDown = errors.New("store down")

// RevokedAt implements auth.Revocations.
func (Failing) RevokedAt(context.Context, string, string) (time.Time, bool, error) {
	return time.Time{}, false, ErrDown
}

// PutTicket implements auth.TicketStore.
func (Failing) PutTicket(context.Context, string, auth.Principal, time.Duration) error {
	return ErrDown
}

// TakeTicket implements auth.TicketStore.
func (Failing) TakeTicket(context.Context, string) (auth.Principal, bool, error) {
	return auth.Principal{}, false, ErrDown
}

// MustEC returns a new P-256 key.
func MustEC(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
