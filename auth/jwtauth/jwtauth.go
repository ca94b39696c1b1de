// Package jwtauth verifies JWTs (protocol.md §2): an HMAC secret, public keys
// from a PEM file and a JWK Set fetched from a URL and kept fresh. Its
// Verifier is the auth.TokenVerifier an embedder gives auth.New to accept
// Bearer JWTs and ?access_token=; package auth itself knows no JWT library.
//
//	v, err := jwtauth.New(ctx, jwtauth.Config{Secret: secret})
//	...
//	a, err := auth.New(ctx, auth.Config{Tokens: v}) // a.Close closes v
package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice/auth"
)

// Config configures a Verifier. At least one of Secret, PublicKeyFile and
// JWKSURL must be set. Each field documents the SLUICE_* variable that fills
// it (protocol.md §10).
type Config struct {
	// Secret is the HMAC secret that verifies HS256, HS384 and HS512 tokens
	// (SLUICE_JWT_SECRET). Use at least 32 random bytes.
	Secret []byte

	// PublicKeyFile is the path of a PEM file holding one or more public
	// keys (SLUICE_JWT_PUBLIC_KEY): "PUBLIC KEY" (PKIX), "RSA PUBLIC KEY"
	// (PKCS #1) or "CERTIFICATE" blocks. An RSA key verifies RS256/384/512 and
	// PS256/384/512, an ECDSA key the ES algorithm of its curve (P-256 →
	// ES256, P-384 → ES384, P-521 → ES512), an Ed25519 key EdDSA. Several
	// blocks allow a key rotation. Private keys are refused.
	PublicKeyFile string

	// JWKSURL is a JWK Set endpoint (SLUICE_JWKS_URL). It is fetched once by
	// New, which fails if that fetch fails, then refreshed every JWKSRefresh
	// and, rate limited, when a token names an unknown "kid". Close stops the
	// refresh.
	JWKSURL string

	// JWKSTimeout bounds each fetch of JWKSURL, the first one at start
	// included. Zero means 10s.
	JWKSTimeout time.Duration

	// JWKSRefresh is the interval between two fetches of JWKSURL. Zero means
	// 1h.
	JWKSRefresh time.Duration

	// JWKSClient is the HTTP client that fetches JWKSURL; nil means
	// http.DefaultClient (JWKSTimeout still applies).
	JWKSClient *http.Client

	// Algorithms is the allow-list of JWT "alg" values
	// (SLUICE_JWT_ALGORITHMS). Empty means every algorithm that a configured
	// key can verify: HS256/384/512 for Secret, the algorithms of the keys
	// in PublicKeyFile, and RS*, PS*, ES* and EdDSA for JWKSURL. "none"
	// and unknown names are refused, and so is an algorithm for which no key
	// of its type is configured. A token is only ever verified with a key of
	// its algorithm's type (and curve), never e.g. HS256 with an RSA key.
	Algorithms []string

	// Issuer, when set, must equal the token's "iss" (SLUICE_JWT_ISSUER).
	Issuer string

	// Audience, when set, must be among the token's "aud"
	// (SLUICE_JWT_AUDIENCE).
	Audience string

	// Leeway is the clock-skew allowance on "exp" and "nbf"
	// (SLUICE_JWT_LEEWAY), and on "iat": a token issued more than Leeway
	// after the current second is refused (it would escape revocations).
	// Default 0. Give auth.Config.Leeway the same value.
	Leeway time.Duration

	// Now returns the current time; nil means time.Now. For tests.
	Now func() time.Time
}

// Defaults applied by New to zero fields.
const (
	DefaultJWKSTimeout = 10 * time.Second
	DefaultJWKSRefresh = time.Hour
)

// ErrNoKey is returned by New when cfg configures no key. Its text names the
// variables to set.
var ErrNoKey = errors.New("auth: no key to verify JWTs: set SLUICE_JWT_SECRET, SLUICE_JWT_PUBLIC_KEY or SLUICE_JWKS_URL")

// HasKey reports whether c configures a key: a secret, a public key file or
// a JWKS URL.
func (c Config) HasKey() bool {
	return len(c.Secret) > 0 || c.PublicKeyFile != "" || c.JWKSURL != ""
}

// Verifier verifies JWTs into principals; it implements auth.TokenVerifier.
// It is safe for concurrent use. Close stops the JWKS refresh, if any; the
// Verifier keeps working with the keys it has.
type Verifier struct {
	secret []byte
	static []any // public keys from the PEM file
	jwks   keyfunc.Keyfunc
	algs   []string
	parser *jwt.Parser

	issuer, audience string // checked when not empty
	leeway           time.Duration
	now              func() time.Time
	stop             context.CancelFunc
}

var _ auth.TokenVerifier = (*Verifier)(nil)

// New checks cfg, loads its key file and, when cfg.JWKSURL is set, fetches
// the JWK Set once (bounded by ctx and cfg.JWKSTimeout) and starts its
// refresh, which lasts until Close. Every configuration mistake is reported
// here, with a message naming what to fix; with no key at all New returns
// ErrNoKey, or, when cfg.Algorithms is set, an error saying so.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	switch {
	case !cfg.HasKey() && len(cfg.Algorithms) > 0:
		return nil, errors.New("auth: SLUICE_JWT_ALGORITHMS is set but no JWT key is configured")
	case !cfg.HasKey():
		return nil, ErrNoKey
	case cfg.Leeway < 0:
		return nil, errors.New("auth: SLUICE_JWT_LEEWAY must not be negative")
	case cfg.JWKSTimeout < 0 || cfg.JWKSRefresh < 0:
		return nil, errors.New("auth: durations must not be negative")
	}
	v := &Verifier{
		secret: cfg.Secret,
		issuer: cfg.Issuer, audience: cfg.Audience, leeway: cfg.Leeway, now: cfg.Now,
	}
	if v.now == nil {
		v.now = time.Now
	}
	// The JWKS refresh outlives ctx (it ends with Close), but ctx still
	// bounds the start.
	life, cancel := context.WithCancel(context.WithoutCancel(ctx))
	unhook := context.AfterFunc(ctx, cancel)
	defer unhook()
	v.stop = cancel
	if err := v.load(ctx, life, cfg); err != nil {
		cancel()
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		cancel()
		return nil, fmt.Errorf("auth: %w", err)
	}
	return v, nil
}

// load loads the keys of cfg and builds the parser. refreshCtx ends the JWKS
// refresh.
func (v *Verifier) load(ctx, refreshCtx context.Context, cfg Config) error {
	have := map[keyType]bool{}
	if len(cfg.Secret) > 0 {
		have[keyHMAC] = true
	}
	if cfg.PublicKeyFile != "" {
		keys, err := loadPublicKeys(cfg.PublicKeyFile)
		if err != nil {
			return err
		}
		v.static = keys
		for _, k := range keys {
			have[keyTypeOf(k)] = true
		}
	}
	if cfg.JWKSURL != "" {
		kf, err := newJWKS(ctx, refreshCtx, cfg)
		if err != nil {
			return err
		}
		v.jwks = kf
		// A JWK Set may rotate to any asymmetric key type; symmetric keys in
		// a JWK Set are never used (keyFor filters by type).
		for _, t := range []keyType{keyRSA, keyEC256, keyEC384, keyEC521, keyEd25519} {
			have[t] = true
		}
	}
	if len(cfg.Algorithms) == 0 {
		for t := range have {
			v.algs = append(v.algs, algsFor(t)...)
		}
		slices.Sort(v.algs)
	} else {
		for _, a := range cfg.Algorithms {
			a = strings.TrimSpace(a)
			t, ok := algorithms[a]
			switch {
			case strings.EqualFold(a, "none"):
				return errors.New(`auth: JWT algorithm "none" is never allowed`)
			case !ok:
				return fmt.Errorf("auth: unknown JWT algorithm %q (known: HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA)", a)
			case !have[t]:
				return fmt.Errorf("auth: JWT algorithm %s is allowed but no key of its type is configured", a)
			}
			if !slices.Contains(v.algs, a) {
				v.algs = append(v.algs, a)
			}
		}
	}
	// The parser checks the header, the algorithm and the signature only;
	// check decides on the claims.
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(v.algs),
		jwt.WithStrictDecoding(),
		jwt.WithoutClaimsValidation(),
	)
	return nil
}

// Close stops the JWKS refresh. The Verifier keeps working with the keys it
// has.
func (v *Verifier) Close() error {
	v.stop()
	return nil
}

// Algorithms returns the JWT algorithms accepted.
func (v *Verifier) Algorithms() []string { return slices.Clone(v.algs) }
