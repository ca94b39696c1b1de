package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sluicehq/sluice/problem"
)

// TokenVerifier verifies the bearer tokens of a request: the credential of
// "Authorization: Bearer <token>" and of ?access_token= (package
// auth/jwtauth verifies JWTs). It is safe for concurrent use.
//
// VerifyToken returns the token's principal, with Credential set to
// "Bearer <token>", or a 401 *problem.Problem for a refused token whose
// detail holds nothing of it (problem.CodeTokenExpired for an expired one,
// problem.CodeInvalidToken otherwise); any other error is a fault. It does
// not check revocations: the Authenticator does.
type TokenVerifier interface {
	VerifyToken(ctx context.Context, token string) (Principal, error)
}

// Authenticator turns requests into principals (protocol.md §2). It is safe
// for concurrent use. Close closes its TokenVerifier.
type Authenticator struct {
	tokens    TokenVerifier // nil: bearer tokens are not accepted
	keys      apiKeys       // nil: API keys are not accepted
	tickets   TicketStore
	revs      Revocations
	ticketTTL time.Duration
	leeway    time.Duration
	now       func() time.Time

	isPublisherKey func(string) bool // nil: no hint for misplaced publisher keys
}

// Options tell Authenticate where it may look for credentials.
type Options struct {
	// Query allows the query credentials ?access_token= (a JWT) and ?ticket=,
	// consulted only when the request has no Authorization header. Only the
	// stream endpoint sets it.
	Query bool
}

// MaxCredentialLen is the longest credential (JWT, API key or ticket)
// Authenticate looks at; longer ones are refused without parsing.
const MaxCredentialLen = 16 << 10

// New checks cfg and loads its API key file. Every configuration mistake is
// reported here, with a message naming what to fix. An authenticator may
// accept only bearer tokens (cfg.Tokens) or only API keys; with neither New
// returns ErrNoVerifier. The Authenticator owns cfg.Tokens from then on:
// Close closes it, and so does New when it fails.
func New(ctx context.Context, cfg Config) (a *Authenticator, err error) {
	defer func() {
		if err != nil {
			closeVerifier(cfg.Tokens)
		}
	}()
	if !cfg.HasVerifier() {
		return nil, ErrNoVerifier
	}
	if cfg.Leeway < 0 {
		return nil, errors.New("auth: SLUICE_JWT_LEEWAY must not be negative")
	}
	if cfg.TicketTTL < 0 {
		return nil, errors.New("auth: durations must not be negative")
	}
	a = &Authenticator{
		tokens:    cfg.Tokens,
		tickets:   cfg.Tickets,
		revs:      cfg.Revocations,
		ticketTTL: cfg.TicketTTL,
		leeway:    cfg.Leeway,
		now:       cfg.Now,

		isPublisherKey: cfg.IsPublisherKey,
	}
	if a.ticketTTL == 0 {
		a.ticketTTL = DefaultTicketTTL
	}
	if a.now == nil {
		a.now = time.Now
	}
	if cfg.APIKeysFile != "" {
		keys, err := loadAPIKeys(cfg.APIKeysFile)
		if err != nil {
			return nil, err
		}
		a.keys = keys
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return a, nil
}

// Close closes the TokenVerifier if it has a Close method (a jwtauth.Verifier
// stops its JWKS refresh). The Authenticator keeps working with the keys it
// has.
func (a *Authenticator) Close() error {
	return closeVerifier(a.tokens)
}

func closeVerifier(v TokenVerifier) error {
	if c, ok := v.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Leeway returns the configured clock-skew allowance. A credential is valid
// until its Expiry plus Leeway; streams end then (protocol.md §6).
func (a *Authenticator) Leeway() time.Duration { return a.leeway }

// Authenticate authenticates r (protocol.md §2):
//
//   - An Authorization header, when present, is the only credential looked
//     at: "Bearer <JWT>" or "Api-Key <key>" (schemes are case-insensitive).
//     Any other scheme, a malformed value or several Authorization headers
//     are refused, even if the query holds a good token.
//   - Without that header, and only if o.Query, exactly one of
//     ?access_token=<JWT> and ?ticket=<ticket> is used. An API key in
//     access_token, an empty, repeated or invalid query credential, and both
//     at once are refused; never is such a request anonymous.
//   - No credential at all is refused with problem.CodeMissingCredentials.
//
// Every refusal is a *problem.Problem with status 401 whose detail holds
// nothing of the credential: CodeTokenExpired for an expired JWT or ticket,
// CodeCredentialRevoked for a revoked one, CodeAmbiguousCredentials for more
// than one credential, CodeInvalidToken otherwise. Any other error is a fault
// (e.g. the ticket or revocation store is unreachable) that the caller
// answers with 503; it never means the credential is good.
func (a *Authenticator) Authenticate(r *http.Request, o Options) (Principal, error) {
	ctx := r.Context()
	if vals, ok := r.Header["Authorization"]; ok {
		if len(vals) != 1 {
			return Principal{}, unauthorized(problem.CodeAmbiguousCredentials, "more than one Authorization header")
		}
		return a.fromHeader(ctx, vals[0])
	}
	q := scanQuery(r.URL.RawQuery)
	if !o.Query {
		if len(q.tokens)+len(q.tickets) > 0 {
			return Principal{}, unauthorized(problem.CodeMissingCredentials, "no credentials in a header: "+
				"POST /tickets (and every endpoint but GET /events) needs header credentials, "+
				"Authorization: Bearer <JWT> or Api-Key <key>; ?access_token= and ?ticket= are read by GET /events only")
		}
		return Principal{}, missing()
	}
	switch {
	case len(q.tokens)+len(q.tickets) == 0:
		return Principal{}, missing()
	case len(q.tokens) > 0 && len(q.tickets) > 0:
		return Principal{}, unauthorized(problem.CodeAmbiguousCredentials, "both access_token and ticket in the query")
	case len(q.tokens) > 1:
		return Principal{}, unauthorized(problem.CodeAmbiguousCredentials, "more than one access_token in the query")
	case len(q.tickets) > 1:
		return Principal{}, unauthorized(problem.CodeAmbiguousCredentials, "more than one ticket in the query")
	case len(q.tokens) == 1:
		tok, err := url.QueryUnescape(q.tokens[0])
		if err != nil || !wellFormed(tok) {
			return Principal{}, invalid("malformed access_token")
		}
		return a.fromJWT(ctx, tok)
	}
	t, err := url.QueryUnescape(q.tickets[0])
	if err != nil {
		return Principal{}, invalid("malformed ticket")
	}
	return a.redeem(ctx, t)
}

// fromHeader authenticates an Authorization header value.
func (a *Authenticator) fromHeader(ctx context.Context, v string) (Principal, error) {
	scheme, cred, ok := strings.Cut(strings.TrimSpace(v), " ")
	cred = strings.TrimLeft(cred, " ")
	if !ok || !wellFormed(cred) {
		return Principal{}, invalid("malformed Authorization header")
	}
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return a.fromJWT(ctx, cred)
	case strings.EqualFold(scheme, "Api-Key"):
		return a.fromAPIKey(ctx, cred)
	}
	return Principal{}, invalid("unsupported Authorization scheme (use Bearer or Api-Key)")
}

// wellFormed reports whether a credential is non-empty, not too long and
// made of visible ASCII only.
func wellFormed(s string) bool {
	if s == "" || len(s) > MaxCredentialLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func (a *Authenticator) fromJWT(ctx context.Context, token string) (Principal, error) {
	if a.tokens == nil {
		return Principal{}, invalid("JWTs are not accepted here")
	}
	p, err := a.tokens.VerifyToken(ctx, token)
	if err != nil {
		if a.isPublisherKey != nil && a.isPublisherKey(token) {
			return Principal{}, publisherKeyMisused()
		}
		return Principal{}, err
	}
	if err := a.checkRevoked(ctx, p); err != nil {
		return Principal{}, err
	}
	return p, nil
}

func (a *Authenticator) fromAPIKey(ctx context.Context, key string) (Principal, error) {
	if a.keys == nil {
		return Principal{}, invalid("API keys are not accepted here")
	}
	k, err := a.keys.lookup(key)
	if err != nil {
		if a.isPublisherKey != nil && a.isPublisherKey(key) {
			return Principal{}, publisherKeyMisused()
		}
		return Principal{}, invalid("unknown API key")
	}
	p := Principal{User: k.user, Tenant: k.tenant, Kind: KindAPIKey, Credential: "Api-Key " + key}
	if err := a.checkRevoked(ctx, p); err != nil {
		return Principal{}, err
	}
	return p, nil
}

// expired reports whether a principal's credential has expired, leeway
// included.
func (a *Authenticator) expired(p Principal) bool {
	return p.Expires() && !a.now().Before(p.Expiry.Add(a.leeway))
}

// query holds the raw values of the query credentials.
type query struct {
	tokens, tickets []string
}

// scanQuery finds the access_token and ticket parameters of a raw query the
// way net/url parses it ('&'-separated, keys unescaped, exact match); the
// values are returned still escaped.
func scanQuery(raw string) query {
	var q query
	for raw != "" {
		var part string
		part, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(part, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			continue
		}
		switch key {
		case "access_token":
			q.tokens = append(q.tokens, v)
		case "ticket":
			q.tickets = append(q.tickets, v)
		}
	}
	return q
}

func unauthorized(code, detail string) *problem.Problem {
	return problem.New(http.StatusUnauthorized, code, detail)
}

func invalid(detail string) *problem.Problem {
	return unauthorized(problem.CodeInvalidToken, detail)
}

func missing() *problem.Problem {
	return unauthorized(problem.CodeMissingCredentials, "no credentials: send Authorization: Bearer <JWT> or Api-Key <key> "+
		"(GET /events also reads ?ticket=, from POST /tickets, or ?access_token=<JWT>)")
}

// publisherKeyMisused is the refusal of a publisher key presented as a
// user's credential.
func publisherKeyMisused() *problem.Problem {
	return invalid("this is a publisher key: publisher keys go to POST /publish (and POST /revoke); " +
		"subscribers send a user's JWT, API key or ticket")
}
