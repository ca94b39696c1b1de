package jwtauth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/auth/jwtauth"
)

var b64 = base64.RawURLEncoding.EncodeToString

func rsaJWK(kid string, k *rsa.PublicKey) map[string]any {
	return map[string]any{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
		"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

func edJWK(kid string, k ed25519.PublicKey) map[string]any {
	return map[string]any{"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(k)}
}

// jwksServer serves a JWK Set that can be replaced, and counts fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	keys    []map[string]any
	fetches atomic.Int32
}

func newJWKSServer(t *testing.T, keys ...map[string]any) *jwksServer {
	s := &jwksServer{keys: keys}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": s.keys})
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(keys ...map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = keys
}

func signKID(t *testing.T, m jwt.SigningMethod, key any, c jwt.MapClaims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJWKS(t *testing.T) {
	k := keys()
	octSecret := []byte("a symmetric key published in JWKS")
	srv := newJWKSServer(t, rsaJWK("r1", &k.RSA.PublicKey), edJWK("e1", k.Ed.Public().(ed25519.PublicKey)),
		map[string]any{"kty": "oct", "kid": "o1", "alg": "HS256", "k": b64(octSecret)})
	now := epoch
	v, err := jwtauth.New(t.Context(), jwtauth.Config{JWKSURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if algs := strings.Join(v.Algorithms(), ","); strings.Contains(algs, "HS") || !strings.Contains(algs, "RS256") {
		t.Fatalf("default algorithms for JWKS: %s", algs)
	}
	a := newAuth(t, config{JWKSURL: srv.URL, Now: func() time.Time { return now }})
	tests := []struct {
		name string
		tok  string
		ok   bool
	}{
		{"RS256 by kid", signKID(t, jwt.SigningMethodRS256, k.RSA, claims(now), "r1"), true},
		{"RS256 without kid", signKID(t, jwt.SigningMethodRS256, k.RSA, claims(now), ""), true},
		{"PS256 with RS256 JWK", signKID(t, jwt.SigningMethodPS256, k.RSA, claims(now), "r1"), false},
		{"EdDSA by kid", signKID(t, jwt.SigningMethodEdDSA, k.Ed, claims(now), "e1"), true},
		{"RS256 naming the Ed25519 kid", signKID(t, jwt.SigningMethodRS256, k.RSA, claims(now), "e1"), false},
		{"HS256 with the published symmetric key", signKID(t, jwt.SigningMethodHS256, octSecret, claims(now), "o1"), false},
		{"unknown kid", signKID(t, jwt.SigningMethodRS256, k.RSA, claims(now), "nope"), false},
		{"expired", signKID(t, jwt.SigningMethodRS256, k.RSA, claims(now, set("exp", now.Add(-time.Hour).Unix())), "r1"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Authenticate(request("", "Bearer "+tt.tok), auth.Options{})
			if (err == nil) != tt.ok {
				t.Fatalf("ok=%v: %v", tt.ok, err)
			}
			if err != nil {
				code(t, err)
			}
		})
	}
}

func TestJWKSSymmetricKeyEvenWhenHSAllowed(t *testing.T) {
	k := keys()
	octSecret := []byte("a symmetric key published in JWKS")
	srv := newJWKSServer(t, rsaJWK("r1", &k.RSA.PublicKey),
		map[string]any{"kty": "oct", "kid": "o1", "alg": "HS256", "k": b64(octSecret)})
	a := newAuth(t, config{JWKSURL: srv.URL, JWTSecret: secret, Algorithms: []string{"HS256", "RS256"},
		Now: func() time.Time { return epoch }})
	tok := signKID(t, jwt.SigningMethodHS256, octSecret, claims(epoch), "o1")
	if _, err := a.Authenticate(request("", "Bearer "+tok), auth.Options{}); err == nil {
		t.Fatal("HS256 verified with a key from the JWK Set")
	}
}

func TestJWKSRefresh(t *testing.T) {
	k := keys()
	other := mustEC(t)
	srv := newJWKSServer(t, rsaJWK("r1", &k.RSA.PublicKey))
	a := newAuth(t, config{JWKSURL: srv.URL, JWKSRefresh: 20 * time.Millisecond, Now: func() time.Time { return epoch }})
	tok := signKID(t, jwt.SigningMethodES256, other, claims(epoch), "n1")
	pt, err := other.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	srv.set(map[string]any{"kty": "EC", "crv": "P-256", "kid": "n1", "alg": "ES256",
		"x": b64(pt[1:33]), "y": b64(pt[33:])})
	checkFor(t, 5*time.Second, func() error {
		_, err := a.Authenticate(request("", "Bearer "+tok), auth.Options{})
		return err
	})
}

// checkFor polls f until it returns nil or the deadline passes.
func checkFor(t *testing.T, total time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %v: %v", total, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestJWKSStart(t *testing.T) {
	t.Run("unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "down", http.StatusBadGateway)
		}))
		defer srv.Close()
		if _, err := jwtauth.New(context.Background(), jwtauth.Config{JWKSURL: srv.URL}); err == nil {
			t.Fatal("New succeeded with a failing JWKS endpoint")
		}
	})
	t.Run("empty set", func(t *testing.T) {
		srv := newJWKSServer(t)
		if _, err := jwtauth.New(context.Background(), jwtauth.Config{JWKSURL: srv.URL}); err == nil || !strings.Contains(err.Error(), "no usable key") {
			t.Fatalf("empty JWK Set: %v", err)
		}
	})
	hang := func(t *testing.T) *httptest.Server {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		t.Cleanup(func() { close(release); srv.Close() })
		return srv
	}
	t.Run("timeout", func(t *testing.T) {
		srv := hang(t)
		start := time.Now()
		_, err := jwtauth.New(context.Background(), jwtauth.Config{JWKSURL: srv.URL, JWKSTimeout: 100 * time.Millisecond})
		if err == nil {
			t.Fatal("New succeeded with a hanging JWKS endpoint")
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("New took %v", d)
		}
	})
	t.Run("context", func(t *testing.T) {
		srv := hang(t)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		if _, err := jwtauth.New(ctx, jwtauth.Config{JWKSURL: srv.URL}); err == nil {
			t.Fatal("New succeeded with a hanging JWKS endpoint")
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("New took %v", d)
		}
	})
}
