package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
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
	"github.com/sluicehq/sluice/problem"
)

const (
	tenantA = "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
	tenantB = "0b6a4f52-6c2e-4e8a-9d71-2f0c8b7e5a13"
)

var (
	secret = []byte("0123456789abcdef0123456789abcdef")
	epoch  = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
)

// keys are generated once per test binary.
var keys = sync.OnceValue(func() (k struct {
	rsa   *rsa.PrivateKey
	ec256 *ecdsa.PrivateKey
	ec384 *ecdsa.PrivateKey
	ed    ed25519.PrivateKey
}) {
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.ec256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		panic(err)
	}
	if k.ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		panic(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		panic(err)
	}
	return k
})

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: epoch} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// claims returns valid claims at time now, changed by the edits.
func claims(now time.Time, edits ...func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub":       "u1",
		"tenant_id": tenantA,
		"iat":       now.Add(-time.Minute).Unix(),
		"exp":       now.Add(time.Hour).Unix(),
	}
	for _, e := range edits {
		e(c)
	}
	return c
}

func set(k string, v any) func(jwt.MapClaims) { return func(c jwt.MapClaims) { c[k] = v } }
func del(k string) func(jwt.MapClaims)        { return func(c jwt.MapClaims) { delete(c, k) } }

func sign(t testing.TB, m jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func hs256(t testing.TB, c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, secret, c) }

// writeFile writes data to a new file in t.TempDir.
func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// pemFile writes the public keys as a PEM file.
func pemFile(t testing.TB, pubs ...any) string {
	t.Helper()
	var b []byte
	for _, pub := range pubs {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})...)
	}
	return writeFile(t, "key.pem", b)
}

const (
	apiKey1 = "sk_live_0000000000000000000000000001"
	apiKey2 = "sk_live_0000000000000000000000000002"
)

// apiKeysFile writes an API key file with apiKey1 (u1, tenantA) and apiKey2
// (svc, tenantB).
func apiKeysFile(t testing.TB) string {
	t.Helper()
	b, _ := json.Marshal([]map[string]string{
		{"hash": auth.HashAPIKey(apiKey1), "user": "u1", "tenant": tenantA},
		{"hash": auth.HashAPIKey(apiKey2), "user": "svc", "tenant": tenantB},
	})
	return writeFile(t, "keys.json", b)
}

func newAuth(t testing.TB, cfg auth.Config) *auth.Authenticator {
	t.Helper()
	a, err := auth.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// request builds a GET /events request; a nil header means no Authorization.
func request(query string, authz ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/events", nil)
	r.URL.RawQuery = query
	for _, v := range authz {
		r.Header.Add("Authorization", v)
	}
	return r
}

// code returns the machine code of a 401 problem, "" for nil, and fails for
// anything else.
func code(t testing.TB, err error) string {
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

// noLeak fails if err's text contains any of the secrets.
func noLeak(t testing.TB, err error, secrets ...string) {
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

// failing is a Revocations and TicketStore that always faults.
type failing struct{}

var errDown = errors.New("store down")

func (failing) RevokedAt(context.Context, string, string) (time.Time, bool, error) {
	return time.Time{}, false, errDown
}
func (failing) PutTicket(context.Context, string, auth.Principal, time.Duration) error {
	return errDown
}
func (failing) TakeTicket(context.Context, string) (auth.Principal, bool, error) {
	return auth.Principal{}, false, errDown
}

func mustEC(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
