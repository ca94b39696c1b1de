package auth

import (
	"errors"
	"time"
)

// Config configures an Authenticator. Its zero value configures nothing; New
// refuses it with ErrNoVerifier. Each field documents the SLUICE_* variable
// that fills it (protocol.md §10).
type Config struct {
	// Tokens verifies bearer tokens: "Authorization: Bearer <token>" and,
	// on the stream endpoint, ?access_token= (a *jwtauth.Verifier for JWTs).
	// Nil means they are not accepted. The Authenticator owns it: Close
	// closes it (if it is an io.Closer), and so does New when it fails.
	Tokens TokenVerifier

	// Leeway is the clock-skew allowance on a credential's expiry
	// (SLUICE_JWT_LEEWAY): a principal is valid until its Expiry plus Leeway,
	// and so is a ticket issued for it. Default 0. A jwtauth.Verifier has
	// its own, for the token's claims: give both the same value.
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

// DefaultTicketTTL is the lifetime of a stream ticket when
// Config.TicketTTL is zero.
const DefaultTicketTTL = 30 * time.Second

// ErrNoVerifier is returned by New when cfg has no way to verify any
// credential. Its text names the variables to set.
var ErrNoVerifier = errors.New("auth: no key to verify JWTs and no API key file: " +
	"set SLUICE_JWT_SECRET, SLUICE_JWT_PUBLIC_KEY, SLUICE_JWKS_URL or SLUICE_API_KEYS_FILE")

// HasVerifier reports whether c configures at least one way to verify a
// credential: a token verifier or an API key file. A server refuses to start
// without one (protocol.md §10).
func (c Config) HasVerifier() bool {
	return c.Tokens != nil || c.APIKeysFile != ""
}
