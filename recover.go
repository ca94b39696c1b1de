package sluice

import (
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"

	"github.com/sluicehq/sluice/problem"
)

// recoverPanics turns a panic in a handler (a library's, a hook's) into a
// logged error and a 500 problem, instead of net/http's closed connection
// with no answer. http.ErrAbortHandler, net/http's own way to abort a
// response, passes through. When the response has begun (a stream), the
// connection is aborted: nothing well formed can follow.
//
// GET requests are not wrapped, so that a stream keeps net/http's own
// response writer, which parking requires; a stream that has begun is
// recognised by its Content-Type, set before its first byte.
func recoverPanics(next http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw, sw := w, (*startedWriter)(nil)
		if r.Method != http.MethodGet {
			sw = &startedWriter{ResponseWriter: w}
			rw = sw
		}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v)
			}
			log.Error("handler panicked", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			if sw != nil && sw.started || strings.HasPrefix(w.Header().Get("Content-Type"), "text/event-stream") {
				panic(http.ErrAbortHandler)
			}
			problem.Write(w, problem.New(http.StatusInternalServerError, problem.CodeInternal, "internal error; the request was not completed, retry it"))
		}()
		next.ServeHTTP(rw, r)
	})
}

// startedWriter records whether the response has begun.
type startedWriter struct {
	http.ResponseWriter
	started bool
}

func (w *startedWriter) WriteHeader(code int) {
	w.started = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *startedWriter) Write(b []byte) (int, error) {
	w.started = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *startedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
