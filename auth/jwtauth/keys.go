package jwtauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// keyType is the type of key an algorithm needs.
type keyType int

const (
	keyHMAC keyType = iota + 1
	keyRSA
	keyEC256
	keyEC384
	keyEC521
	keyEd25519
)

// algorithms maps every supported "alg" to the key type that verifies it.
var algorithms = map[string]keyType{
	"HS256": keyHMAC, "HS384": keyHMAC, "HS512": keyHMAC,
	"RS256": keyRSA, "RS384": keyRSA, "RS512": keyRSA,
	"PS256": keyRSA, "PS384": keyRSA, "PS512": keyRSA,
	"ES256": keyEC256, "ES384": keyEC384, "ES512": keyEC521,
	"EdDSA": keyEd25519,
}

// algsFor lists the algorithms of key type t in a stable order.
func algsFor(t keyType) []string {
	var out []string
	for alg, kt := range algorithms {
		if kt == t {
			out = append(out, alg)
		}
	}
	slices.Sort(out)
	return out
}

// keyTypeOf returns the key type of a verification key, or 0.
func keyTypeOf(k any) keyType {
	switch k := k.(type) {
	case []byte:
		return keyHMAC
	case *rsa.PublicKey:
		return keyRSA
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return keyEC256
		case elliptic.P384():
			return keyEC384
		case elliptic.P521():
			return keyEC521
		}
	case ed25519.PublicKey:
		return keyEd25519
	}
	return 0
}

// loadPublicKeys reads every public key of a PEM file.
func loadPublicKeys(path string) ([]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: JWT public key: %w", err)
	}
	var keys []any
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		var key any
		switch block.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				key = cert.PublicKey
			}
		default:
			if strings.Contains(block.Type, "PRIVATE") {
				return nil, fmt.Errorf("auth: JWT public key %s: block %d is a private key; give the public key only", path, n)
			}
			return nil, fmt.Errorf("auth: JWT public key %s: block %d has unsupported PEM type %q", path, n, block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("auth: JWT public key %s: block %d: %w", path, n, err)
		}
		if keyTypeOf(key) == 0 {
			return nil, fmt.Errorf("auth: JWT public key %s: block %d: unsupported key type %T", path, n, key)
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("auth: JWT public key %s: no PEM block found", path)
	}
	return keys, nil
}

// newJWKS fetches the JWK Set once, bounded by JWKSTimeout and by
// refreshCtx (which New cancels if its own ctx ends first), and starts the
// refresh, which lives until refreshCtx ends.
func newJWKS(ctx, refreshCtx context.Context, cfg Config) (keyfunc.Keyfunc, error) {
	u, err := url.Parse(cfg.JWKSURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("auth: SLUICE_JWKS_URL must be an absolute http(s) URL")
	}
	shown := u.Redacted()
	timeout := cfg.JWKSTimeout
	if timeout == 0 {
		timeout = DefaultJWKSTimeout
	}
	refresh := cfg.JWKSRefresh
	if refresh == 0 {
		refresh = DefaultJWKSRefresh
	}
	client := cfg.JWKSClient
	if client == nil {
		client = http.DefaultClient
	}
	fail := false
	kf, err := keyfunc.NewDefaultOverrideCtx(refreshCtx, []string{cfg.JWKSURL}, keyfunc.Override{
		Client:                    client,
		HTTPTimeout:               timeout,
		NoErrorReturnFirstHTTPReq: &fail,
		RefreshInterval:           refresh,
		// A token naming an unknown "kid" triggers a refresh at most every
		// 5 minutes (the library's default); a request never waits long for
		// that limiter.
		RateLimitWaitMax: 100 * time.Millisecond,
		RefreshErrorHandlerFunc: func(string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				slog.Default().WarnContext(ctx, "auth: JWKS refresh failed", "url", shown, "error", err)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS %s: %w", shown, err)
	}
	keys, err := kf.Storage().KeyReadAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS %s: %w", shown, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("auth: JWKS %s holds no usable key", shown)
	}
	return kf, nil
}

// keyFor returns the key(s) that may verify t: only keys of the type (and
// curve) of t's algorithm. The algorithm was already checked against the
// allow-list by the parser.
func (v *Verifier) keyFor(ctx context.Context, t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		// RFC 7515 §4.1.11: critical extensions not understood are refused.
		return nil, errors.New("critical header extensions not supported")
	}
	want, ok := algorithms[t.Method.Alg()]
	if !ok {
		return nil, errors.New("algorithm not supported")
	}
	if want == keyHMAC {
		if len(v.secret) == 0 {
			return nil, errors.New("no HMAC secret")
		}
		return v.secret, nil
	}
	var keys []jwt.VerificationKey
	for _, k := range v.static {
		if keyTypeOf(k) == want {
			keys = append(keys, k)
		}
	}
	if v.jwks != nil {
		got, err := v.jwks.KeyfuncCtx(ctx)(t)
		if err != nil && len(keys) == 0 {
			return nil, err
		}
		if err == nil {
			if set, ok := got.(jwt.VerificationKeySet); ok {
				for _, k := range set.Keys {
					if keyTypeOf(k) == want {
						keys = append(keys, k)
					}
				}
			} else if keyTypeOf(got) == want {
				keys = append(keys, got)
			}
		}
	}
	switch len(keys) {
	case 0:
		return nil, errors.New("no key of the algorithm's type")
	case 1:
		return keys[0], nil
	}
	return jwt.VerificationKeySet{Keys: keys}, nil
}
