// Package auth authenticates requests into a Principal (protocol.md §2): Bearer
// tokens, Api-Key headers, the ?access_token= fallback of the stream
// endpoint, and single-use stream tickets. Tokens are verified by a
// TokenVerifier (package auth/jwtauth verifies JWTs, so that package auth
// itself pulls in no JWT library); tickets are kept by a TicketStore and
// revocations answered by a Revocations, each with an in-memory
// implementation here.
package auth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/sluicehq/sluice/auth/internal/claims"
)

// Kind is the kind of credential a Principal was authenticated with.
type Kind string

// Credential kinds.
const (
	KindJWT    Kind = "jwt"
	KindAPIKey Kind = "api-key"
	KindTicket Kind = "ticket"
)

// Principal is an authenticated caller. Beyond the user and the tenant, a
// JWT's other claims (e.g. a role) are read with Claim, ClaimString,
// ClaimStrings and Claims.
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
	// String and GoString leave it out. An open stream keeps it only while
	// its membership source may read it (stream.CredentialBlind); the
	// channels hook always gets it.
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

// Claims of the JWT behind a principal.
//
// A hook that needs more than the user and the tenant, e.g. the caller's
// role, reads the claims of the JWT the principal was authenticated with:
// directly, through ?access_token=, or through a ticket issued for it (a
// ticket carries the credential it was issued for). The signature and the
// rules of protocol.md §2 were checked by Authenticate; the claims are read-only:
// every call decodes them afresh from the credential, so a caller may change
// what it gets without affecting anyone else. API keys carry no claims.
// Values decode as encoding/json decodes into an any, except that numbers
// are json.Number (no precision lost): string, json.Number, bool, nil,
// []any, map[string]any.

// Claim returns the value of the named claim (names match exactly) and
// whether the principal's JWT holds it. It is false for an API key.
func (p Principal) Claim(name string) (any, bool) {
	c := p.rawClaims()
	raw, ok := c[name]
	if !ok {
		return nil, false
	}
	v, err := decodeValue(raw)
	if err != nil {
		return nil, false
	}
	return v, true
}

// ClaimString returns the named claim when it is a JSON string.
func (p Principal) ClaimString(name string) (string, bool) {
	v, ok := p.Claim(name)
	s, isString := v.(string)
	return s, ok && isString
}

// ClaimStrings returns the named claim as a list of strings: a JSON string
// gives a list of one, an array gives its strings (other members skipped),
// anything else or no claim gives nil. It suits role and scope claims, e.g.
// {"roles": ["admin", "viewer"]}.
func (p Principal) ClaimStrings(name string) []string {
	v, ok := p.Claim(name)
	if !ok {
		return nil
	}
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, m := range v {
			if s, ok := m.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// Claims returns every claim of the principal's JWT in a new map (nil for
// an API key): the caller owns it.
func (p Principal) Claims() map[string]any {
	c := p.rawClaims()
	if c == nil {
		return nil
	}
	out := make(map[string]any, len(c))
	for name, raw := range c {
		if v, err := decodeValue(raw); err == nil {
			out[name] = v
		}
	}
	return out
}

// rawClaims decodes the payload of the principal's JWT credential, nil when
// it has none.
func (p Principal) rawClaims() map[string]json.RawMessage {
	tok, ok := strings.CutPrefix(p.Credential, "Bearer ")
	if !ok {
		return nil
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return nil
	}
	c, err := claims.Decode(payload)
	if err != nil {
		return nil
	}
	return c
}

func decodeValue(raw json.RawMessage) (any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}
