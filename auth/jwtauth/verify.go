package jwtauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/auth/internal/claims"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/problem"
)

// VerifyToken implements auth.TokenVerifier: it checks a JWT and returns its
// principal (Kind auth.KindJWT, Credential "Bearer <token>"), without a
// revocation check. golang-jwt checks the header, the algorithm and the
// signature; the claims are decoded strictly and checked by check. Every
// refusal is a 401 *problem.Problem whose detail holds nothing of the token.
func (v *Verifier) VerifyToken(ctx context.Context, token string) (auth.Principal, error) {
	var raw rawClaims
	_, err := v.parser.ParseWithClaims(token, &raw, func(t *jwt.Token) (any, error) { return v.keyFor(ctx, t) })
	if err != nil {
		return auth.Principal{}, jwtProblem(err)
	}
	c, err := claims.Decode(raw.payload)
	if err != nil {
		return auth.Principal{}, invalid(err.Error())
	}
	p, err := v.check(c)
	if err != nil {
		var ce claims.Error
		if errors.As(err, &ce) {
			return auth.Principal{}, invalid(ce.Error())
		}
		return auth.Principal{}, err
	}
	p.Credential = "Bearer " + token
	return p, nil
}

// check applies the claim rules of protocol.md §2 to a strictly decoded claim set,
// names matched exactly. The registered claims come first (their types,
// exp required, nbf, iat not in the future, iss, aud, then expiry), then
// Sluice's own (token_type and typ, the user, the tenant). Errors are
// claims.Errors or, for an expired token, a token_expired problem.
func (v *Verifier) check(c map[string]json.RawMessage) (auth.Principal, error) {
	var times [3]time.Time
	var has [3]bool
	for i, name := range [...]string{"exp", "nbf", "iat"} {
		if raw, ok := c[name]; ok {
			t, err := claims.NumericDate(name, raw)
			if err != nil {
				return auth.Principal{}, err
			}
			times[i], has[i] = t, true
		}
	}
	exp, nbf, iat := times[0], times[1], times[2]
	var sub, iss string
	var aud []string
	var err error
	if raw, ok := c["sub"]; ok {
		if sub, err = claims.String("sub", raw); err != nil {
			return auth.Principal{}, err
		}
	}
	if raw, ok := c["iss"]; ok {
		if iss, err = claims.String("iss", raw); err != nil {
			return auth.Principal{}, err
		}
	}
	if raw, ok := c["aud"]; ok {
		if aud, err = claims.Strings("aud", raw); err != nil {
			return auth.Principal{}, err
		}
	}
	now := v.now()
	switch {
	case !has[0]:
		return auth.Principal{}, claims.Error("token has no exp claim")
	case has[1] && now.Before(nbf.Add(-v.leeway)):
		return auth.Principal{}, claims.Error("token not valid yet")
	case has[2] && iat.After(ceilSecond(now).Add(v.leeway)):
		// A credential issued in the future would escape every revocation
		// made before its iat (protocol.md §6). iat counts whole seconds, so the
		// second now ends in is not the future: an issuer's clock a few
		// milliseconds ahead, across a second boundary, is not refused.
		return auth.Principal{}, claims.Error("token issued in the future (iat)")
	case v.issuer != "" && iss != v.issuer:
		return auth.Principal{}, claims.Error("token issuer not accepted")
	case v.audience != "" && !slices.Contains(aud, v.audience):
		return auth.Principal{}, claims.Error("token audience not accepted")
	case !now.Before(exp.Add(v.leeway)):
		return auth.Principal{}, problem.New(http.StatusUnauthorized, problem.CodeTokenExpired, "token expired")
	}
	for _, name := range [...]string{"token_type", "typ"} {
		if raw, ok := c[name]; ok && string(raw) != `"access"` {
			return auth.Principal{}, claims.Error("token is not an access token")
		}
	}
	user := sub
	if raw, ok := c["user_id"]; ok && user == "" {
		if user, ok = userID(raw); !ok {
			return auth.Principal{}, claims.Error("token claim user_id must be a string or an integer")
		}
	}
	if user == "" {
		return auth.Principal{}, claims.Error("token names no user (sub or user_id)")
	}
	raw, ok := c["tenant_id"]
	if !ok {
		return auth.Principal{}, claims.Error("token has no tenant_id claim")
	}
	tenant, err := claims.String("tenant_id", raw)
	if err != nil || channel.CheckTenant(tenant) != nil {
		return auth.Principal{}, claims.Error("token claim tenant_id is not a canonical lowercase UUID")
	}
	p := auth.Principal{User: user, Tenant: tenant, Kind: auth.KindJWT, Expiry: exp}
	if has[2] {
		p.IssuedAt = iat
	}
	return p, nil
}

// ceilSecond rounds t up to a whole second.
func ceilSecond(t time.Time) time.Time {
	if s := t.Truncate(time.Second); !s.Equal(t) {
		return s.Add(time.Second)
	}
	return t
}

// userID decodes a user_id claim: a string, or an integer (as issued e.g. by
// djangorestframework-simplejwt) in its decimal form.
func userID(raw json.RawMessage) (string, bool) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var n json.Number
	if json.Unmarshal(raw, &n) != nil {
		return "", false
	}
	if i, err := strconv.ParseInt(n.String(), 10, 64); err == nil {
		return strconv.FormatInt(i, 10), true
	}
	return "", false
}

// invalid is the refusal of a token, with a detail that holds nothing of it.
func invalid(detail string) *problem.Problem {
	return problem.New(http.StatusUnauthorized, problem.CodeInvalidToken, detail)
}

// jwtProblem turns an error of golang-jwt's parser (header, algorithm,
// signature) into a 401 problem.
func jwtProblem(err error) *problem.Problem {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return invalid("malformed token: a JWT is three base64url parts separated by dots (header.payload.signature); an API key goes in Authorization: Api-Key <key>")
	case errors.Is(err, jwt.ErrTokenUnverifiable), errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return invalid("token signature invalid or algorithm not allowed")
	}
	return invalid("invalid token")
}

// rawClaims keeps the payload as golang-jwt hands it over, undecoded, so that
// claims.Decode sees the bytes that were signed. Its jwt.Claims methods are
// never called: the parser runs with jwt.WithoutClaimsValidation.
type rawClaims struct {
	payload []byte
}

var _ jwt.Claims = (*rawClaims)(nil)

// UnmarshalJSON implements json.Unmarshaler by keeping a copy of b.
func (c *rawClaims) UnmarshalJSON(b []byte) error {
	c.payload = append(c.payload[:0], b...)
	return nil
}

var errUnread = errors.New("auth: claims are checked by Verifier.check")

// GetExpirationTime implements jwt.Claims; it is never called.
func (*rawClaims) GetExpirationTime() (*jwt.NumericDate, error) { return nil, errUnread }

// GetIssuedAt implements jwt.Claims; it is never called.
func (*rawClaims) GetIssuedAt() (*jwt.NumericDate, error) { return nil, errUnread }

// GetNotBefore implements jwt.Claims; it is never called.
func (*rawClaims) GetNotBefore() (*jwt.NumericDate, error) { return nil, errUnread }

// GetIssuer implements jwt.Claims; it is never called.
func (*rawClaims) GetIssuer() (string, error) { return "", errUnread }

// GetSubject implements jwt.Claims; it is never called.
func (*rawClaims) GetSubject() (string, error) { return "", errUnread }

// GetAudience implements jwt.Claims; it is never called.
func (*rawClaims) GetAudience() (jwt.ClaimStrings, error) { return nil, errUnread }
