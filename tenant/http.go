package tenant

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sluicehq/sluice/auth"
)

// HTTPConfig configures an HTTP membership source. Its zero value (with URL
// set) means the defaults below.
type HTTPConfig struct {
	// URL is the endpoint asked, e.g.
	// https://app.internal/api/tenants/{tenant}/membership. The placeholders
	// {tenant} and {user} are replaced by the path-escaped tenant and user
	// ids.
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

// DefaultHTTPTimeout bounds each request of an HTTP membership source.
const DefaultHTTPTimeout = 2 * time.Second

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
// safe for concurrent use.
type HTTP struct {
	url     string
	timeout time.Duration
	client  *http.Client
	cache   *cache[httpKey]
}

type httpKey struct {
	cred   [sha256.Size]byte
	tenant string
}

var _ Membership = (*HTTP)(nil)

// NewHTTP checks cfg: the URL must be an absolute http or https URL once its
// placeholders are filled.
func NewHTTP(cfg HTTPConfig) (*HTTP, error) {
	u, err := url.Parse(fill(cfg.URL, "t", "u"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("tenant: http membership URL must be an absolute http(s) URL")
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
	return &HTTP{url: cfg.URL, timeout: cfg.Timeout, client: cfg.Client,
		cache: newCache[httpKey](cfg.CacheTTL, cfg.CacheSize, nil)}, nil
}

// fill replaces the placeholders of a URL template.
func fill(tmpl, tenant, user string) string {
	return strings.NewReplacer("{tenant}", url.PathEscape(tenant), "{user}", url.PathEscape(user)).Replace(tmpl)
}

// IsMember implements Membership.
func (h *HTTP) IsMember(ctx context.Context, p auth.Principal, tenant string) (bool, error) {
	key := httpKey{cred: sha256.Sum256([]byte(p.Credential)), tenant: tenant}
	if m, ok := h.cache.get(key); ok {
		return m, nil
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fill(h.url, tenant, p.User), nil)
	if err != nil {
		return false, errors.New("tenant: http membership: cannot build the request")
	}
	if p.Credential != "" {
		req.Header.Set("Authorization", p.Credential)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		// A *url.Error quotes the URL; keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return false, fmt.Errorf("tenant: http membership: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	var member bool
	switch s := resp.StatusCode; {
	case s >= 200 && s < 300:
		member = true
	case s == http.StatusUnauthorized || s == http.StatusForbidden || s == http.StatusNotFound:
		member = false
	default:
		return false, fmt.Errorf("tenant: http membership: backend answered %d", s)
	}
	h.cache.put(key, member)
	return member, nil
}
