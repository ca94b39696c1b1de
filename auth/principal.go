// Package auth authenticates requests into a Principal (SPEC §2): Bearer JWTs,
// Api-Key headers, the ?access_token= fallback of the stream endpoint, and
// single-use stream tickets.
package auth

import (
	"fmt"
	"log/slog"
	"time"
)

// Kind is the kind of credential a Principal was authenticated with.
type Kind string

// Credential kinds.
const (
	KindJWT    Kind = "jwt"
	KindAPIKey Kind = "api-key"
	KindTicket Kind = "ticket"
)

// Principal is an authenticated caller.
type Principal struct {
	User   string    // user id: JWT "sub", else "user_id"; the key's user for API keys
	Tenant string    // active tenant, a canonical UUID (channel.CheckTenant)
	Kind   Kind      // credential kind
	Expiry time.Time // zero for credentials that never expire (API keys)
	// IssuedAt is the credential's issue time (JWT "iat", ticket issue time);
	// zero when unknown. It matters only against revocations.
	IssuedAt time.Time
	// Credential is the Authorization header value that authenticated the
	// principal, normalised to "Bearer <jwt>" or "Api-Key <key>" (a query
	// access_token becomes "Bearer <jwt>"; a ticket carries the credential it
	// was issued for). It exists only to be forwarded to a backend's own
	// authorization (tenant.HTTP) and is never logged or printed: LogValue,
	// String and GoString leave it out.
	Credential string
}

// Expires reports whether the principal's credential expires.
func (p Principal) Expires() bool { return !p.Expiry.IsZero() }

// LogValue implements slog.LogValuer: user, tenant and kind, never a secret.
func (p Principal) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("user", p.User),
		slog.String("tenant", p.Tenant),
		slog.String("kind", string(p.Kind)),
	)
}

// String returns "kind:user@tenant", never the credential, so that printing a
// Principal with %v cannot leak it.
func (p Principal) String() string {
	return string(p.Kind) + ":" + p.User + "@" + p.Tenant
}

// GoString implements fmt.GoStringer like String, so %#v leaks nothing either.
func (p Principal) GoString() string {
	return fmt.Sprintf("auth.Principal{User:%q, Tenant:%q, Kind:%q, Expiry:%s, IssuedAt:%s, Credential:REDACTED}",
		p.User, p.Tenant, p.Kind, p.Expiry.Format(time.RFC3339), p.IssuedAt.Format(time.RFC3339))
}
