// Package routes turns a configuration file of feature endpoints into stream
// routes: a path such as /api/v1/scans/{id}/events mapped to channel
// templates, each with an authorizer that decides, per request, whether the
// caller may read the resource (protocol.md §3, layer 1). The tenant gate (layer 2)
// runs after it in every case.
//
// The file is JSON:
//
//	{"routes": [
//	  {"path": "/api/v1/scans/{id}/events",
//	   "channels": ["scan-progress:{tenant}:{id}"],
//	   "authorizer": {"type": "http", "url": "http://backend/api/v1/scans/{id}", "cache": "5s"}},
//	  {"path": "/api/v1/docs/{doc}/events",
//	   "channels": ["doc:{tenant}:{doc}"],
//	   "authorizer": {"type": "none"}}
//	]}
//
// {tenant} is the principal's active tenant; every other placeholder names a
// wildcard of the path. Load validates the whole file, so that a mistake stops
// the gateway at start, never at a first request. docs/guide.md describes the
// format in full.
package routes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/internal/answercache"
	"github.com/sluicehq/sluice/problem"
	"github.com/sluicehq/sluice/stream"
)

// Route is one configured stream endpoint.
type Route struct {
	Pattern string              // net/http ServeMux pattern, e.g. "GET /api/v1/scans/{id}/events"
	Resolve stream.ChannelsFunc // resolves and authorizes the channels
}

// Options are shared by every route of a file.
type Options struct {
	// Client sends the requests of http authorizers; nil means a client
	// with a 5 s timeout. Redirects are never followed, whatever the
	// client's policy: a redirect is an upstream error, so that a caller's
	// credential is only ever sent to the configured URL.
	Client *http.Client
	// CacheSize bounds the authorizer answers cached across every route of
	// the file; zero means 10000.
	CacheSize int
}

// Defaults of the file's optional fields.
const (
	DefaultCache   = 5 * time.Second // authorizer "cache"
	DefaultTimeout = 5 * time.Second // authorizer "timeout"
	// MaxNegativeCache caps how long a refusal (401, 403, 404) is cached;
	// allowed answers are cached for the route's full "cache".
	MaxNegativeCache = time.Second
)

// Problem codes of http authorizer refusals, in the "code" member of the
// problem body.
const (
	CodeBackendUnauthorized = problem.CodeBackendUnauthorized // 401 from the backend
	CodeForbidden           = problem.CodeForbidden           // 403 from the backend
	CodeNotFound            = problem.CodeNotFound            // 404 from the backend
	CodeUpstream            = problem.CodeUpstream            // 502: any other answer, a timeout or a network error
)

// ErrInvalid is wrapped by every error Load returns for a file it could read
// but that does not describe valid routes.
var ErrInvalid = errors.New("routes: invalid routes file")

// file is the JSON document.
type file struct {
	Routes []routeSpec `json:"routes"`
}

type routeSpec struct {
	Path       string          `json:"path"`
	Channels   []string        `json:"channels"`
	Authorizer *authorizerSpec `json:"authorizer"`
}

type authorizerSpec struct {
	Type    string `json:"type"`    // none | http
	URL     string `json:"url"`     // http: the resource URL, templated
	Cache   string `json:"cache"`   // http: how long an allowed answer is cached (5s); "0s" disables
	Timeout string `json:"timeout"` // http: how long the backend may take (5s)
}

// reserved are the gateway's own endpoints (http.go in package sluice),
// which no route may take or shadow: a route on one of them would make the
// gateway's ServeMux refuse its own pattern.
var reserved = []string{"/events", "/publish", "/tickets", "/revoke", "/healthz", "/readyz", "/metrics", "/sluice.js"}

// Load reads the routes file at path and returns its routes in file order.
// Every mistake (unknown field or placeholder, a template that cannot make a
// valid channel name, an unknown authorizer type, a path used twice or
// shadowing a gateway endpoint) is an error naming the route, wrapping
// ErrInvalid.
func Load(path string, o Options) ([]Route, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	return Parse(raw, o)
}

// Parse is Load for a document already in memory.
func Parse(raw []byte, o Options) ([]Route, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var f file
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the JSON document", ErrInvalid)
	}
	if len(f.Routes) == 0 {
		return nil, fmt.Errorf("%w: no routes (expected {\"routes\": [...]})", ErrInvalid)
	}
	client := o.Client
	if client == nil {
		client = &http.Client{Timeout: DefaultTimeout}
	}
	noRedirect := *client
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	shared := &httpShared{client: &noRedirect, cache: answercache.New[outcome](o.CacheSize)}

	mux := http.NewServeMux()
	nop := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	for _, p := range reserved {
		mux.Handle(p, nop)
	}
	mux.Handle("/", nop)
	out := make([]Route, 0, len(f.Routes))
	for i, spec := range f.Routes {
		rt, err := build(spec, shared)
		if err == nil {
			err = register(mux, rt.Pattern, nop)
		}
		if err != nil {
			name := spec.Path
			if name == "" {
				name = fmt.Sprintf("#%d", i+1)
			}
			return nil, fmt.Errorf("%w: route %s: %v", ErrInvalid, name, err)
		}
		out = append(out, rt)
	}
	// No route may take a request meant for a gateway endpoint.
	for _, p := range reserved {
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			req := &http.Request{Method: m, Host: "x", URL: &url.URL{Path: p}}
			if _, pat := mux.Handler(req); pat != p {
				return nil, fmt.Errorf("%w: route %s: shadows the gateway endpoint %s", ErrInvalid, strings.TrimPrefix(pat, "GET "), p)
			}
		}
	}
	return out, nil
}

// registeredAt is the source location ServeMux puts in its conflict
// messages, which means nothing to the author of a routes file.
var registeredAt = regexp.MustCompile(` \(registered at [^)]*\)`)

// register adds pattern to mux, turning ServeMux's panics (invalid pattern,
// conflict with another route) into errors.
func register(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			msg := registeredAt.ReplaceAllString(fmt.Sprint(r), "")
			err = errors.New(strings.Join(strings.Fields(msg), " "))
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// build validates one route and returns it.
func build(s routeSpec, shared *httpShared) (Route, error) {
	wild, err := parsePath(s.Path)
	if err != nil {
		return Route{}, err
	}
	if len(s.Channels) == 0 {
		return Route{}, errors.New(`"channels" must list at least one channel template`)
	}
	tmpls := make([]chanTemplate, len(s.Channels))
	for i, c := range s.Channels {
		if tmpls[i], err = parseChannel(c, wild); err != nil {
			return Route{}, fmt.Errorf("channel %q: %w", c, err)
		}
	}
	if s.Authorizer == nil {
		return Route{}, errors.New(`"authorizer" is required ({"type": "none"} for the tenant gate only)`)
	}
	var authz authorizer
	switch a := s.Authorizer; a.Type {
	case "none":
		if a.URL != "" || a.Cache != "" || a.Timeout != "" {
			return Route{}, errors.New(`authorizer "none" takes no url, cache or timeout`)
		}
	case "http":
		h, err := newHTTPAuthorizer(a, wild, shared)
		if err != nil {
			return Route{}, fmt.Errorf("authorizer: %w", err)
		}
		authz = h
	case "":
		return Route{}, errors.New(`authorizer "type" is required: "none" or "http"`)
	default:
		return Route{}, fmt.Errorf(`authorizer type %q is unknown: use "none" or "http"`, a.Type)
	}
	return Route{
		Pattern: http.MethodGet + " " + s.Path,
		Resolve: resolver(wild, tmpls, authz),
	}, nil
}

// resolver returns the ChannelsFunc of a route: path values checked, channel
// names built in the principal's tenant, then the authorizer asked.
func resolver(wild []string, tmpls []chanTemplate, authz authorizer) stream.ChannelsFunc {
	return func(r *http.Request, p auth.Principal) ([]channel.Name, error) {
		vals := make(map[string]string, len(wild)+1)
		for _, w := range wild {
			v := r.PathValue(w)
			if err := checkValue(v); err != nil {
				return nil, problem.New(http.StatusBadRequest, problem.CodeMalformedChan,
					"path value {"+w+"}: "+err.Error())
			}
			vals[w] = v
		}
		vals[tenantPlaceholder] = p.Tenant
		chans := make([]channel.Name, len(tmpls))
		for i, t := range tmpls {
			n, err := channel.Make(t.prefix, p.Tenant, t.resource.fill(vals, nil))
			if err != nil {
				return nil, problem.New(http.StatusBadRequest, problem.CodeMalformedChan, err.Error())
			}
			chans[i] = n
		}
		if authz != nil {
			if err := authz.authorize(r.Context(), p, vals); err != nil {
				return nil, err
			}
		}
		return chans, nil
	}
}
