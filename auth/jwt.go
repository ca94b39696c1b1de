package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/problem"
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

// verifier checks JWTs. It is safe for concurrent use.
type verifier struct {
	secret []byte
	static []any // public keys from the PEM file
	jwks   keyfunc.Keyfunc
	algs   []string
	parser *jwt.Parser

	issuer, audience string // checked when not empty
	leeway           time.Duration
	now              func() time.Time
}

// newVerifier loads the keys of cfg and builds the parser. refreshCtx ends the
// JWKS refresh.
func newVerifier(ctx, refreshCtx context.Context, cfg Config, now func() time.Time) (*verifier, error) {
	v := &verifier{secret: cfg.JWTSecret}
	have := map[keyType]bool{}
	if len(cfg.JWTSecret) > 0 {
		have[keyHMAC] = true
	}
	if cfg.JWTPublicKeyFile != "" {
		keys, err := loadPublicKeys(cfg.JWTPublicKeyFile)
		if err != nil {
			return nil, err
		}
		v.static = keys
		for _, k := range keys {
			have[keyTypeOf(k)] = true
		}
	}
	if cfg.JWKSURL != "" {
		kf, err := newJWKS(ctx, refreshCtx, cfg)
		if err != nil {
			return nil, err
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
				return nil, errors.New(`auth: JWT algorithm "none" is never allowed`)
			case !ok:
				return nil, fmt.Errorf("auth: unknown JWT algorithm %q (known: HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA)", a)
			case !have[t]:
				return nil, fmt.Errorf("auth: JWT algorithm %s is allowed but no key of its type is configured", a)
			}
			if !slices.Contains(v.algs, a) {
				v.algs = append(v.algs, a)
			}
		}
	}
	// The parser checks the header, the algorithm and the signature only;
	// verifier.check decides on the claims.
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(v.algs),
		jwt.WithStrictDecoding(),
		jwt.WithoutClaimsValidation(),
	)
	v.issuer, v.audience, v.leeway, v.now = cfg.Issuer, cfg.Audience, cfg.Leeway, now
	return v, nil
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
func (v *verifier) keyFor(ctx context.Context, t *jwt.Token) (any, error) {
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

// verify checks a JWT and returns its principal (without revocation check).
// golang-jwt checks the header, the algorithm and the signature; the claims
// are decoded and checked by decodeClaims and check. Every refusal is a 401
// *problem.Problem whose detail holds nothing of the token.
func (v *verifier) verify(ctx context.Context, token string) (Principal, error) {
	var raw rawClaims
	_, err := v.parser.ParseWithClaims(token, &raw, func(t *jwt.Token) (any, error) { return v.keyFor(ctx, t) })
	if err != nil {
		return Principal{}, jwtProblem(err)
	}
	c, err := decodeClaims(raw.payload)
	if err != nil {
		return Principal{}, invalid(err.Error())
	}
	p, err := v.check(c)
	if err != nil {
		var ce claimError
		if errors.As(err, &ce) {
			return Principal{}, invalid(ce.Error())
		}
		return Principal{}, err
	}
	p.Credential = "Bearer " + token
	return p, nil
}

// check applies the claim rules of protocol.md §2 to a strictly decoded claim set,
// names matched exactly. The registered claims come first (their types,
// exp required, nbf, iat not in the future, iss, aud, then expiry), then
// Sluice's own (token_type and typ, the user, the tenant). Errors are
// claimErrors or, for an expired token, a token_expired problem.
func (v *verifier) check(c map[string]json.RawMessage) (Principal, error) {
	var times [3]time.Time
	var has [3]bool
	for i, name := range [...]string{"exp", "nbf", "iat"} {
		if raw, ok := c[name]; ok {
			t, err := numericDate(name, raw)
			if err != nil {
				return Principal{}, err
			}
			times[i], has[i] = t, true
		}
	}
	exp, nbf, iat := times[0], times[1], times[2]
	var sub, iss string
	var aud []string
	var err error
	if raw, ok := c["sub"]; ok {
		if sub, err = claimString("sub", raw); err != nil {
			return Principal{}, err
		}
	}
	if raw, ok := c["iss"]; ok {
		if iss, err = claimString("iss", raw); err != nil {
			return Principal{}, err
		}
	}
	if raw, ok := c["aud"]; ok {
		if aud, err = claimStrings("aud", raw); err != nil {
			return Principal{}, err
		}
	}
	now := v.now()
	switch {
	case !has[0]:
		return Principal{}, claimError("token has no exp claim")
	case has[1] && now.Before(nbf.Add(-v.leeway)):
		return Principal{}, claimError("token not valid yet")
	case has[2] && iat.After(ceilSecond(now).Add(v.leeway)):
		// A credential issued in the future would escape every revocation
		// made before its iat (protocol.md §6). iat counts whole seconds, so the
		// second now ends in is not the future: an issuer's clock a few
		// milliseconds ahead, across a second boundary, is not refused.
		return Principal{}, claimError("token issued in the future (iat)")
	case v.issuer != "" && iss != v.issuer:
		return Principal{}, claimError("token issuer not accepted")
	case v.audience != "" && !slices.Contains(aud, v.audience):
		return Principal{}, claimError("token audience not accepted")
	case !now.Before(exp.Add(v.leeway)):
		return Principal{}, problem.New(http.StatusUnauthorized, problem.CodeTokenExpired, "token expired")
	}
	for _, name := range [...]string{"token_type", "typ"} {
		if raw, ok := c[name]; ok && string(raw) != `"access"` {
			return Principal{}, claimError("token is not an access token")
		}
	}
	user := sub
	if raw, ok := c["user_id"]; ok && user == "" {
		if user, ok = userID(raw); !ok {
			return Principal{}, claimError("token claim user_id must be a string or an integer")
		}
	}
	if user == "" {
		return Principal{}, claimError("token names no user (sub or user_id)")
	}
	raw, ok := c["tenant_id"]
	if !ok {
		return Principal{}, claimError("token has no tenant_id claim")
	}
	tenant, err := claimString("tenant_id", raw)
	if err != nil || channel.CheckTenant(tenant) != nil {
		return Principal{}, claimError("token claim tenant_id is not a canonical lowercase UUID")
	}
	p := Principal{User: user, Tenant: tenant, Kind: KindJWT, Expiry: exp}
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
