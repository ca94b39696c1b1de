package routes

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/auth"
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
	cache  *cache
}

// httpAuthorizer asks the backend: GET <url> with the caller's own
// Authorization header; a 2xx answer allows.
type httpAuthorizer struct {
	*httpShared
	url     template
	ttl     time.Duration // allowed answers
	negTTL  time.Duration // 401, 403 and 404 answers
	timeout time.Duration
}

func newHTTPAuthorizer(a *authorizerSpec, wild []string, shared *httpShared) (*httpAuthorizer, error) {
	if a.URL == "" {
		return nil, errors.New(`type "http" needs a "url"`)
	}
	h := &httpAuthorizer{httpShared: shared, ttl: DefaultCache, timeout: DefaultTimeout}
	var err error
	if a.Cache != "" {
		if h.ttl, err = time.ParseDuration(a.Cache); err != nil || h.ttl < 0 {
			return nil, fmt.Errorf(`"cache" %q is not a duration ≥ 0 such as "5s"`, a.Cache)
		}
	}
	if a.Timeout != "" {
		if h.timeout, err = time.ParseDuration(a.Timeout); err != nil || h.timeout <= 0 {
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
	u := h.url.fill(vals, url.PathEscape)
	sum := sha256.Sum256([]byte(p.Credential))
	key := hex.EncodeToString(sum[:]) + " " + u
	out, err := h.cache.do(ctx, key, func() (outcome, time.Duration) { return h.ask(ctx, u, p.Credential) })
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
	// The request outlives the caller that started it, since callers with
	// the same credential and URL share it; the timeout bounds it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return upstream("the authorizer URL is invalid"), 0
	}
	if credential != "" {
		req.Header.Set("Authorization", credential)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return upstream("the backend did not answer within " + h.timeout.String()), 0
		}
		return upstream("the backend is unreachable"), 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch s := resp.StatusCode; {
	case s >= 200 && s < 300:
		return nil, h.ttl
	case s == http.StatusUnauthorized:
		return refusal(s, CodeBackendUnauthorized, body, "the backend did not accept the credential"), h.negTTL
	case s == http.StatusForbidden:
		return refusal(s, CodeForbidden, body, "the backend does not allow this caller to read the resource"), h.negTTL
	case s == http.StatusNotFound:
		return refusal(s, CodeNotFound, body, "no such resource"), h.negTTL
	default:
		return upstream(fmt.Sprintf("the backend answered %d", s)), 0
	}
}

func upstream(detail string) *problem.Problem {
	return problem.New(http.StatusBadGateway, CodeUpstream, detail)
}

// refusal relays a backend's refusal with the same status, keeping the
// "detail" of a problem (or "detail"/"error"/"message" of a JSON) body when
// it is short printable text.
func refusal(status int, code string, body []byte, fallback string) *problem.Problem {
	var b struct {
		Detail  string `json:"detail"`
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	detail := fallback
	if json.Unmarshal(body, &b) == nil {
		for _, d := range []string{b.Detail, b.Message, b.Error} {
			if printable(d) {
				detail = d
				break
			}
		}
	}
	return problem.New(status, code, detail)
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

// cache holds recent authorizer answers in LRU order, bounded in size, and
// makes concurrent callers of one key share a single backend request.
type cache struct {
	max int

	mu       sync.Mutex
	ll       *list.List // of *entry, most recent first
	entries  map[string]*list.Element
	inflight map[string]*call
}

type entry struct {
	key     string
	out     outcome
	expires time.Time
}

type call struct {
	done chan struct{}
	out  outcome
}

func newCache(max int) *cache {
	return &cache{max: max, ll: list.New(), entries: map[string]*list.Element{}, inflight: map[string]*call{}}
}

// do returns the cached answer for key, or runs fetch once for every
// concurrent caller and caches its answer for the duration it returns. The
// error is ctx's, when the caller stops waiting.
func (c *cache) do(ctx context.Context, key string, fetch func() (outcome, time.Duration)) (outcome, error) {
	c.mu.Lock()
	if el, ok := c.entries[key]; ok {
		e := el.Value.(*entry)
		if time.Now().Before(e.expires) {
			c.ll.MoveToFront(el)
			c.mu.Unlock()
			return e.out, nil
		}
		c.ll.Remove(el)
		delete(c.entries, key)
	}
	if cl, ok := c.inflight[key]; ok {
		c.mu.Unlock()
		select {
		case <-cl.done:
			return cl.out, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	cl := &call{done: make(chan struct{})}
	c.inflight[key] = cl
	c.mu.Unlock()

	out, ttl := fetch()

	c.mu.Lock()
	delete(c.inflight, key)
	cl.out = out
	close(cl.done)
	if ttl > 0 {
		c.entries[key] = c.ll.PushFront(&entry{key: key, out: out, expires: time.Now().Add(ttl)})
		for c.ll.Len() > c.max {
			old := c.ll.Back()
			c.ll.Remove(old)
			delete(c.entries, old.Value.(*entry).key)
		}
	}
	c.mu.Unlock()
	return out, nil
}

// len returns the number of cached answers.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
