package sluice

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/problem"
	"github.com/sluicehq/sluice/stream"
)

// routes builds the mux of every endpoint, wrapped with CORS and logging.
// Every error, 404 and 405 included, is a problem+json body (protocol.md §4).
func (g *Gateway) routes(extra func(*Gateway, *http.ServeMux)) (h http.Handler, err error) {
	mux := http.NewServeMux()
	mux.Handle("/events", only(http.MethodGet, g.streams.Handler(stream.QueryChannels)))
	mux.Handle("/publish", only(http.MethodPost, http.HandlerFunc(g.servePublish)))
	mux.Handle("/tickets", only(http.MethodPost, http.HandlerFunc(g.serveTicket)))
	mux.Handle("/revoke", only(http.MethodPost, http.HandlerFunc(g.serveRevoke)))
	mux.Handle("/healthz", only(http.MethodGet, http.HandlerFunc(g.serveHealth)))
	mux.Handle("/sluice.js", only(http.MethodGet, http.HandlerFunc(serveSluiceJS)))
	mux.Handle("/readyz", only(http.MethodGet, http.HandlerFunc(g.serveReady)))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, problem.New(http.StatusNotFound, problem.CodeNotFound, "no such endpoint"))
	})
	if extra != nil {
		defer func() { // ServeMux panics on conflicting patterns
			if r := recover(); r != nil {
				h, err = nil, fmt.Errorf("Options.Routes: %v", r)
			}
		}()
		extra(g, mux)
	}
	h = g.cors(g.limits.Middleware(cleanPaths(g.accessLog(mux))))
	return &gatewayHandler{opts: g.opts, next: recoverPanics(bodyGuard(h, g.opts.BodyTimeout), g.log)}, nil
}

// gatewayHandler is the Gateway's Handler. It carries the configuration so
// that NewHTTPServer can apply the connection settings.
type gatewayHandler struct {
	opts Options
	next http.Handler
}

func (h *gatewayHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.next.ServeHTTP(w, r) }

// cleanPaths answers CONNECT with 405 and a path that is not in clean form
// (dot segments, doubled slashes) with 404, both problems: ServeMux would
// answer CONNECT host:port with a text/plain 404 and redirect the others to
// the clean path with the query echoed in Location, tickets and tokens
// included.
func cleanPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			w.Header().Set("Allow", "GET, POST, OPTIONS")
			problem.Write(w, problem.New(http.StatusMethodNotAllowed, problem.CodeMethodNotAllowed, "CONNECT is not served here: this is not a proxy"))
			return
		}
		if p := r.URL.Path; p == "" || p[0] != '/' || path.Clean(p) != p && path.Clean(p)+"/" != p {
			problem.Write(w, problem.New(http.StatusNotFound, problem.CodeNotFound, "no such endpoint: the path must be in clean form (no dot segments or doubled slashes)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// unreadBodyLinger is how long the server reads on, after answering, the
// body of a request it did not read, so that a client that sent it gets
// its answer rather than a reset; a client that never sends it is cut then.
const unreadBodyLinger = 500 * time.Millisecond

// bodyGuard bounds the request body of every HTTP/1 request that declares
// one: it must arrive within timeout (a read past it fails, and the handler
// answers 408). A request answered before its body was read to the end is
// answered with Connection: close, and the connection is closed once the
// answer is sent, rather than drained: net/http would otherwise wait for
// the body, forever for a client that never sends it, before answering.
// Requests without a body, streams among them, are untouched.
func bodyGuard(next http.Handler, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 1 || r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		gw := &guardedWriter{ResponseWriter: w} // its allocation holds the body too
		_ = rc.SetReadDeadline(time.Now().Add(timeout))
		orig := r.Body
		body := &gw.body
		body.ReadCloser = orig
		r.Body = body
		next.ServeHTTP(gw, r)
		// net/http looks at the request's own body type once the handler
		// is done: a large unread one makes it close gracefully (shut
		// the write side, then wait), so that the answer is not lost to
		// a reset.
		r.Body = orig
		if !body.eof.Load() {
			gw.closeIfUnread()
			// net/http drains the body after the answer is flushed: only
			// for a moment.
			_ = rc.SetReadDeadline(time.Now().Add(unreadBodyLinger))
		}
	})
}

// guardedBody records whether the body was read to its end, and turns a
// read past the body deadline into a 408 problem for the handler.
type guardedBody struct {
	io.ReadCloser
	eof atomic.Bool
}

// errBodyTimeout is the error a read of a body past its deadline returns.
var errBodyTimeout = problem.New(http.StatusRequestTimeout, problem.CodeBodyTimeout, "the request body did not arrive within SLUICE_BODY_TIMEOUT")

func (b *guardedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof.Store(true)
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		err = errBodyTimeout
	}
	return n, err
}

// guardedWriter adds Connection: close to an answer sent before the body
// was read to its end.
type guardedWriter struct {
	http.ResponseWriter
	body  guardedBody
	wrote bool
}

func (w *guardedWriter) closeIfUnread() {
	if !w.wrote && !w.body.eof.Load() {
		w.Header().Set("Connection", "close")
	}
}

func (w *guardedWriter) WriteHeader(code int) {
	if code >= 200 { // 1xx are interim answers
		w.closeIfUnread()
		w.wrote = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *guardedWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.closeIfUnread()
		w.wrote = true
	}
	return w.ResponseWriter.Write(b)
}

// FlushError flushes through, the header decided first.
func (w *guardedWriter) FlushError() error {
	if !w.wrote {
		w.closeIfUnread()
		w.wrote = true
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *guardedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// only answers 405 with a problem body to methods other than m (and HEAD for
// GET routes is not served: streams and probes are GETs).
func only(m string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != m {
			w.Header().Set("Allow", m+", OPTIONS")
			problem.Write(w, problem.New(http.StatusMethodNotAllowed, problem.CodeMethodNotAllowed, r.Method+" is not allowed here; use "+m))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// cors implements protocol.md §4 CORS on every endpoint: an allowed origin is echoed
// with credentials allowed, a preflight is answered 204, any other origin
// gets no grant.
func (g *Gateway) cors(next http.Handler) http.Handler {
	allowAll := false
	allowed := map[string]bool{}
	for _, o := range g.opts.AllowOrigins {
		if o == "*" {
			allowAll = true
		}
		allowed[o] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		h := w.Header()
		if len(allowed) > 0 && !slices.Contains(h.Values("Vary"), "Origin") { // once, also for a Stream inside Handler
			h.Add("Vary", "Origin")
		}
		grant := origin != "" && (allowAll || allowed[origin])
		if grant {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
		}
		if r.Method == http.MethodOptions {
			if grant {
				h.Set("Access-Control-Allow-Methods", "GET, POST")
				h.Set("Access-Control-Allow-Headers", "Authorization, Last-Event-ID, Content-Type, Cache-Control")
				h.Set("Access-Control-Max-Age", "600")
			}
			h.Set("Allow", "GET, POST, OPTIONS")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// accessLog logs each request but GETs at debug level, with secrets in the
// query redacted. GETs are not wrapped, whatever their path: a stream (of
// /events, or of a route of Options.Routes) keeps net/http's own response
// writer, which parking requires, and logs its own open and close lines.
func (g *Gateway) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || !g.log.Enabled(r.Context(), -4) {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		rw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rw, r)
		g.log.Debug("request", "method", r.Method, "path", r.URL.Path, "query", auth.RedactQuery(r.URL.RawQuery),
			"status", rw.status, "duration", time.Since(start))
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int)        { w.status = code; w.ResponseWriter.WriteHeader(code) }
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

//go:embed web/sluice.js
var sluiceJS []byte

// serveSluiceJS serves the browser helper (docs/client.md).
func serveSluiceJS(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(sluiceJS)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	setJSONHeader(w, status)
	_ = json.NewEncoder(w).Encode(v)
}

// setJSONHeader sends the header of a JSON answer with status.
func setJSONHeader(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
}

// readBody reads a JSON request body bounded by MaxBodyBytes.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request, v any) error {
	body := http.MaxBytesReader(w, r.Body, g.opts.MaxBodyBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if p, ok := problem.As(err); ok && p == errBodyTimeout {
			return p
		}
		if errors.As(err, &mbe) {
			return problem.New(http.StatusRequestEntityTooLarge, problem.CodeBodyTooLarge, "the request body exceeds SLUICE_MAX_BODY_BYTES")
		}
		return problem.New(http.StatusBadRequest, problem.CodeInvalidJSON, "the body is not the expected JSON object: "+jsonError(err))
	}
	if dec.More() {
		return problem.New(http.StatusBadRequest, problem.CodeInvalidJSON, "the body holds more than one JSON value")
	}
	return nil
}

// jsonError describes a decoding error in the request's terms, without Go
// type names.
func jsonError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return "invalid JSON at byte " + strconv.FormatInt(se.Offset, 10)
	case errors.As(err, &te):
		if te.Field != "" {
			return "field " + te.Field + " must not be a JSON " + te.Value
		}
		return "expected a JSON object, not a " + te.Value
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the body is empty or cut short"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func (g *Gateway) serveTicket(w http.ResponseWriter, r *http.Request) {
	p, err := g.auth.Authenticate(r, auth.Options{})
	if err != nil {
		g.writeFault(w, err)
		return
	}
	t, ttl, err := g.auth.IssueTicket(r.Context(), p)
	if err != nil {
		g.writeFault(w, err) // a refusal's wait goes out as Retry-After
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Ticket    string `json:"ticket"`
		ExpiresIn int    `json:"expires_in"`
	}{t, int(ttl / time.Second)})
}

func (g *Gateway) serveRevoke(w http.ResponseWriter, r *http.Request) {
	if err := g.pubKeys.Authorize(r); err != nil {
		problem.WriteError(w, err)
		return
	}
	var req struct {
		Tenant string `json:"tenant"`
		User   string `json:"user"`
	}
	if err := g.readBody(w, r, &req); err != nil {
		problem.WriteError(w, err)
		return
	}
	if err := channel.CheckTenant(req.Tenant); err != nil {
		problem.Write(w, problem.New(http.StatusBadRequest, problem.CodeBadRequest,
			`send {"tenant": "<uuid>", "user": "<id>"} (no user: the whole tenant); the tenant must be a UUID in canonical form, lowercase hex digits grouped 8-4-4-4-12 by hyphens`))
		return
	}
	rv := broker.Revocation{Tenant: req.Tenant, User: req.User, At: time.Now()}
	if err := g.broker.Revoke(r.Context(), rv, g.opts.RevocationTTL); err != nil {
		g.writeFault(w, err)
		return
	}
	g.log.Info("revoked", "tenant", rv.Tenant, "user", rv.User)
	writeJSON(w, http.StatusOK, struct {
		Tenant string    `json:"tenant"`
		User   string    `json:"user,omitempty"`
		At     time.Time `json:"revoked_at"`
	}{rv.Tenant, rv.User, rv.At.UTC()})
}

func (g *Gateway) serveHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (g *Gateway) serveReady(w http.ResponseWriter, r *http.Request) {
	if g.streams.Draining() {
		problem.Write(w, problem.New(http.StatusServiceUnavailable, problem.CodeDraining, "this instance is shutting down"))
		return
	}
	if err := g.broker.Ready(r.Context()); err != nil {
		problem.Write(w, problem.New(http.StatusServiceUnavailable, problem.CodeBrokerUnavailable, "the event broker is unreachable"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// writeFault renders err: problems as they are, broker outages as 503, any
// other error as a logged 500.
func (g *Gateway) writeFault(w http.ResponseWriter, err error) {
	if _, ok := problem.As(err); ok {
		problem.WriteError(w, err)
		return
	}
	if errors.Is(err, broker.ErrUnavailable) || errors.Is(err, broker.ErrClosed) {
		problem.Write(w, problem.New(http.StatusServiceUnavailable, problem.CodeBrokerUnavailable, "the event broker is unavailable; retry later"))
		return
	}
	g.log.Error("request failed", "err", err)
	problem.WriteError(w, err)
}
