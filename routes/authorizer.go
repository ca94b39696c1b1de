package routes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/internal/answercache"
	"github.com/sluicehq/sluice/internal/backendcall"
	"github.com/sluicehq/sluice/problem"
)

// authorizer decides whether a principal may read a route's resource. It
// returns nil to allow, a *problem.Problem to refuse.
type authorizer interface {
	authorize(ctx context.Context, p auth.Principal, vals map[string]string) error
}

// httpShared is what every http authorizer of a file shares: the client and
// the answer cache.
type httpShared struct {
	client *http.Client
	cache  *answercache.Cache[outcome]
}

// httpAuthorizer asks the backend: GET <url> with the caller's own
// Authorization header; a 2xx answer allows. The request, its limits and
// the reading of the answer are the membership source tenant.HTTP's too
// (internal/backendcall).
type httpAuthorizer struct {
	cache  *answercache.Cache[outcome]
	client backendcall.Client
	url    template
	ttl    time.Duration // allowed answers
	negTTL time.Duration // 401, 403 and 404 answers
}

func newHTTPAuthorizer(a *authorizerSpec, wild []string, shared *httpShared) (*httpAuthorizer, error) {
	if a.URL == "" {
		return nil, errors.New(`type "http" needs a "url"`)
	}
	h := &httpAuthorizer{cache: shared.cache, client: backendcall.Client{HTTP: shared.client, Timeout: DefaultTimeout}, ttl: DefaultCache}
	var err error
	if a.Cache != "" {
		if h.ttl, err = time.ParseDuration(a.Cache); err != nil || h.ttl < 0 {
			return nil, fmt.Errorf(`"cache" %q is not a duration ≥ 0 such as "5s"`, a.Cache)
		}
	}
	if a.Timeout != "" {
		if h.client.Timeout, err = time.ParseDuration(a.Timeout); err != nil || h.client.Timeout <= 0 {
			return nil, fmt.Errorf(`"timeout" %q is not a positive duration such as "3s"`, a.Timeout)
		}
	}
	h.negTTL = min(h.ttl, MaxNegativeCache)

	// scheme://host must be literal: placeholders may only choose the
	// resource, never where the caller's credential is sent.
	scheme, rest, ok := strings.Cut(a.URL, "://")
	if !ok || (scheme != "http" && scheme != "https") {
		return nil, fmt.Errorf("url %q must start with http:// or https://", a.URL)
	}
	host := rest
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		host = rest[:i]
	}
	if host == "" || strings.ContainsAny(host, "{}@") {
		return nil, fmt.Errorf("url %q: the host must be literal, without placeholders or user info", a.URL)
	}
	if strings.Contains(rest, "#") {
		return nil, fmt.Errorf("url %q must not hold a fragment", a.URL)
	}
	if h.url, err = parseTemplate(a.URL, wild); err != nil {
		return nil, fmt.Errorf("url %q: %w", a.URL, err)
	}
	sample := map[string]string{tenantPlaceholder: sampleTenant}
	for _, w := range wild {
		sample[w] = "x"
	}
	if _, err := url.ParseRequestURI(h.url.fill(sample, nil)); err != nil {
		return nil, fmt.Errorf("url %q: %w", a.URL, err)
	}
	return h, nil
}

// outcome is a backend's answer as the gateway relays it: nil allows.
type outcome = *problem.Problem

func (h *httpAuthorizer) authorize(ctx context.Context, p auth.Principal, vals map[string]string) error {
	u := h.url.fill(vals, backendcall.Escape)
	sum := sha256.Sum256([]byte(p.Credential))
	key := hex.EncodeToString(sum[:]) + " " + u
	// The request outlives the caller that started it, since callers with
	// the same credential and URL share it; the timeout bounds it.
	detached := context.WithoutCancel(ctx)
	out, err := h.cache.Do(ctx, key, func() (outcome, time.Duration) { return h.ask(detached, u, p.Credential) })
	if err != nil {
		return err
	}
	if out != nil {
		return out
	}
	return nil
}

// ask sends the request and maps the answer; the duration is how long the
// answer may be cached (0: not at all).
func (h *httpAuthorizer) ask(ctx context.Context, u, credential string) (outcome, time.Duration) {
	ans, err := h.client.Ask(ctx, u, credential)
	var status *backendcall.StatusError
	switch {
	case errors.Is(err, backendcall.ErrRequest):
		return upstream("the authorizer URL is invalid"), 0
	case errors.As(err, &status):
		return upstream(fmt.Sprintf("the backend answered %d", status.Status)), 0
	case errors.Is(err, context.DeadlineExceeded):
		return upstream("the backend did not answer within " + h.client.Timeout.String()), 0
	case err != nil:
		return upstream("the backend is unreachable"), 0
	}
	switch ans.Status {
	case http.StatusUnauthorized:
		return refusal(ans, CodeBackendUnauthorized, "the backend did not accept the credential"), h.negTTL
	case http.StatusForbidden:
		return refusal(ans, CodeForbidden, "the backend does not allow this caller to read the resource"), h.negTTL
	case http.StatusNotFound:
		return refusal(ans, CodeNotFound, "no such resource"), h.negTTL
	default: // 2xx
		return nil, h.ttl
	}
}

func upstream(detail string) *problem.Problem {
	return problem.New(http.StatusBadGateway, CodeUpstream, detail)
}

// refusal relays a backend's refusal with the same status, keeping the
// "detail" of a problem (or "detail"/"error"/"message" of a JSON) body when
// it is short printable text.
func refusal(ans backendcall.Answer, code string, fallback string) *problem.Problem {
	var b struct {
		Detail  string `json:"detail"`
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	detail := fallback
	if json.Unmarshal(ans.Body, &b) == nil {
		for _, d := range []string{b.Detail, b.Message, b.Error} {
			if printable(d) {
				detail = d
				break
			}
		}
	}
	return problem.New(ans.Status, code, detail)
}

func printable(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	for _, c := range s {
		if c < ' ' || c == 0x7f {
			return false
		}
	}
	return true
}
