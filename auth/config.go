package auth

import (
	"errors"
	"net/http"
	"time"
)

// Config configures an Authenticator. Its zero value configures nothing; New
// refuses it with ErrNoVerifier. Each field documents the SLUICE_* variable
// that fills it (protocol.md §10).
type Config struct {
	// JWTSecret is the HMAC secret that verifies HS256, HS384 and HS512 tokens
	// (SLUICE_JWT_SECRET). Use at least 32 random bytes.
	JWTSecret []byte

	// JWTPublicKeyFile is the path of a PEM file holding one or more public
	// keys (SLUICE_JWT_PUBLIC_KEY): "PUBLIC KEY" (PKIX), "RSA PUBLIC KEY"
	// (PKCS #1) or "CERTIFICATE" blocks. An RSA key verifies RS256/384/512 and
	// PS256/384/512, an ECDSA key the ES algorithm of its curve (P-256 →
	// ES256, P-384 → ES384, P-521 → ES512), an Ed25519 key EdDSA. Several
	// blocks allow a key rotation. Private keys are refused.
	JWTPublicKeyFile string

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
	// key can verify: HS256/384/512 for JWTSecret, the algorithms of the keys
	// in JWTPublicKeyFile, and RS*, PS*, ES* and EdDSA for JWKSURL. "none"
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
	// (SLUICE_JWT_LEEWAY), on "iat" (a token issued more than Leeway after
	// the current second is refused: it would escape revocations), and on
	// the expiry a ticket inherits. Default 0.
	Leeway time.Duration

	// APIKeysFile is the path of a JSON array of API keys
	// (SLUICE_API_KEYS_FILE):
	//
	//	[{"hash": "sha256:<hex of the key>", "user": "…", "tenant": "<uuid>"}]
	//
	// Only the SHA-256 of each key is stored. Every entry is checked by New:
	// a malformed hash, an empty user, a non-canonical tenant, a duplicate
	// hash or an unknown field fails the start with an error naming the entry.
	APIKeysFile string

	// Tickets stores stream tickets (protocol.md §2). Nil means tickets are not
	// supported: IssueTicket fails with ErrNoTicketStore and a presented
	// ticket is refused with 401.
	Tickets TicketStore

	// Revocations tells which credentials were revoked (protocol.md §6). Nil means
	// none ever are.
	Revocations Revocations

	// TicketTTL is the lifetime of a stream ticket. Zero means 30s.
	TicketTTL time.Duration

	// Now returns the current time; nil means time.Now. For tests.
	Now func() time.Time

	// IsPublisherKey, when set, reports whether a refused credential is one
	// of the server's publisher keys (compare in constant time), so that the
	// refusal says where publisher keys go instead of "malformed token". It
	// is asked only about credentials already refused.
	IsPublisherKey func(credential string) bool
}

// Defaults applied by New to zero fields.
const (
	DefaultTicketTTL   = 30 * time.Second
	DefaultJWKSTimeout = 10 * time.Second
	DefaultJWKSRefresh = time.Hour
)

// ErrNoVerifier is returned by New when cfg has no way to verify any
// credential. Its text names the variables to set.
var ErrNoVerifier = errors.New("auth: no key to verify JWTs and no API key file: " +
	"set SLUICE_JWT_SECRET, SLUICE_JWT_PUBLIC_KEY, SLUICE_JWKS_URL or SLUICE_API_KEYS_FILE")

// HasVerifier reports whether c configures at least one way to verify a
// credential: a JWT secret, a public key file, a JWKS URL or an API key file.
// A server refuses to start without one (protocol.md §10).
func (c Config) HasVerifier() bool {
	return c.hasJWT() || c.APIKeysFile != ""
}

func (c Config) hasJWT() bool {
	return len(c.JWTSecret) > 0 || c.JWTPublicKeyFile != "" || c.JWKSURL != ""
}
