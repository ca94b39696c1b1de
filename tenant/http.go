package tenant

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/internal/answercache"
	"github.com/sluicehq/sluice/internal/backendcall"
)

// HTTPConfig configures an HTTP membership source. Its zero value (with URL
// set) means the defaults below.
type HTTPConfig struct {
	// URL is the endpoint asked, e.g.
	// https://app.internal/api/tenants/{tenant}/membership. The placeholders
	// {tenant} and {user} are replaced by the tenant and user ids with every
	// byte but A–Z a–z 0–9 - . _ ~ percent-encoded; they may stand in the
	// path or the query, never in the scheme or host. A user or tenant id
	// that is empty, "." or ".." is not a member, without a request.
	URL string

	// CacheTTL is how long an answer (member or not) is reused for the same
	// credential and tenant. Zero means 5s; negative disables the cache.
	CacheTTL time.Duration

	// CacheSize bounds the answers kept. Zero means DefaultCacheSize.
	CacheSize int

	// Timeout bounds each request. Zero means 2s.
	Timeout time.Duration

	// Client sends the requests; nil means a client with no other settings
	// than Timeout.
	Client *http.Client
}

// Defaults of HTTPConfig (and of the postgres membership source's cache).
const (
	DefaultHTTPTimeout = 2 * time.Second         // bounds each request
	DefaultCacheTTL    = 5 * time.Second         // how long an answer is reused
	DefaultCacheSize   = answercache.DefaultSize // bounds the answers kept
)

// HTTP is a Membership that asks the application's own backend
// (SLUICE_MEMBERSHIP=http:<url>), so that its authorization stays the one
// source of truth. Each check is a GET of the configured URL carrying the
// principal's own Authorization header (auth.Principal.Credential):
//
//   - 2xx: member;
//   - 401, 403, 404: not a member;
//   - any other status, a network error or a timeout: a fault (fail closed).
//
// Answers are cached briefly by (credential, tenant); faults are not. It is
// safe for concurrent use. The request, its limits and the reading of the
// answer are the routes authorizer's too (internal/backendcall).
type HTTP struct {
	url    urlTemplate
	client backendcall.Client
	ttl    time.Duration
	cache  *answercache.Cache[bool]
}

var _ Membership = (*HTTP)(nil)

// NewHTTP checks cfg: the URL must be an absolute http or https URL once its
// placeholders are filled, its scheme and host literal (no placeholder may
// choose where a caller's credential is sent), and its only placeholders
// {tenant} and {user}. An error shows the URL without its user info nor its
// query.
func NewHTTP(cfg HTTPConfig) (*HTTP, error) {
	tmpl, err := parseURLTemplate(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.Timeout < 0 {
		return nil, errors.New("tenant: http membership timeout must not be negative")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultHTTPTimeout
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout}
	}
	return &HTTP{url: tmpl, client: backendcall.Client{HTTP: cfg.Client, Timeout: cfg.Timeout},
		ttl: cfg.CacheTTL, cache: answercache.New[bool](cfg.CacheSize)}, nil
}

// urlTemplate is a checked membership URL: literal parts and placeholders
// ("tenant" or "user").
type urlTemplate []urlPart

type urlPart struct {
	lit, name string // name "" for a literal
}

// parseURLTemplate checks a membership URL template (see NewHTTP).
func parseURLTemplate(raw string) (urlTemplate, error) {
	shown := "tenant: http membership URL"
	if r := redactURL(raw); r != "" {
		shown += " " + strconv.Quote(r)
	}
	absolute := fmt.Errorf("%s must be an absolute http(s) URL, e.g. https://app.example/tenants/{tenant}/members/{user}", shown)
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || (scheme != "http" && scheme != "https") {
		return nil, absolute
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	if strings.ContainsAny(authority, "{}") {
		return nil, fmt.Errorf("%s: the scheme and host must be literal, without placeholders", shown)
	}
	var t urlTemplate
	for s := raw; s != ""; {
		i := strings.IndexAny(s, "{}")
		if i < 0 {
			t = append(t, urlPart{lit: s})
			break
		}
		if i > 0 {
			t = append(t, urlPart{lit: s[:i]})
		}
		j := strings.IndexByte(s[i:], '}')
		if s[i] == '}' || j < 0 {
			return nil, fmt.Errorf("%s: a placeholder is {tenant} or {user}, braces paired", shown)
		}
		name := s[i+1 : i+j]
		if name != "tenant" && name != "user" {
			return nil, fmt.Errorf("%s: unknown placeholder {%s}: use {tenant} or {user}", shown, redactName(name))
		}
		t = append(t, urlPart{name: name})
		s = s[i+j+1:]
	}
	u, err := url.Parse(t.fill("t", "u"))
	if err != nil || u.Host == "" || u.Opaque != "" {
		return nil, absolute
	}
	return t, nil
}

// redactName keeps an unknown placeholder's name short and printable.
func redactName(name string) string {
	if len(name) > 32 || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "…"
	}
	return name
}

// redactURL shows a URL (or URL template) for an error message without
// what may be a credential: the user info becomes "…@", a query "?…", and a
// fragment is dropped. It is "" for what is not a URL at all (nothing of it
// is shown). Callers quote it, so that no control character reaches a log.
func redactURL(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return ""
	}
	authority, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority, tail = rest[:i], rest[i:]
	}
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		authority = "…@" + authority[i+1:]
	}
	path, query := tail, false
	if i := strings.IndexAny(tail, "?#"); i >= 0 {
		path, query = tail[:i], tail[i] == '?'
	}
	if query {
		path += "?…"
	}
	return scheme + "://" + authority + path
}

// fill substitutes the escaped tenant and user into t.
func (t urlTemplate) fill(tenant, user string) string {
	var b strings.Builder
	for _, p := range t {
		switch p.name {
		case "":
			b.WriteString(p.lit)
		case "tenant":
			b.WriteString(backendcall.Escape(tenant))
		case "user":
			b.WriteString(backendcall.Escape(user))
		}
	}
	return b.String()
}

// ReadsCredential implements CredentialReader: true, the caller's
// credential is forwarded to the backend.
func (h *HTTP) ReadsCredential() bool { return true }

// IsMember implements Membership.
func (h *HTTP) IsMember(ctx context.Context, p auth.Principal, tenant string) (bool, error) {
	if !backendcall.SegmentSafe(p.User) || !backendcall.SegmentSafe(tenant) {
		// No request could ask about them without changing its path: not a
		// member (fail closed), not a fault.
		return false, nil
	}
	cred := sha256.Sum256([]byte(p.Credential))
	key := answercache.Key(string(cred[:]), tenant)
	if m, ok := h.cache.Get(key); ok {
		return m, nil
	}
	ans, err := h.client.Ask(ctx, h.url.fill(tenant, p.User), p.Credential)
	if err != nil {
		return false, fmt.Errorf("tenant: http membership: %w", err)
	}
	h.cache.Put(key, ans.Allowed(), h.ttl)
	return ans.Allowed(), nil
}
