package sluice

import (
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/sluicehq/sluice/problem"
)

// recoverPanics turns a panic in a handler (a library's, a hook's) into a
// logged error and a 500 problem, instead of net/http's closed connection
// with no answer. http.ErrAbortHandler, net/http's own way to abort a
// response, passes through. When the response has begun (a stream), the
// connection is aborted: nothing well formed can follow.
func recoverPanics(next http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &startedWriter{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v)
			}
			log.Error("handler panicked", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			if rw.started {
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

// Unwrap lets http.ResponseController reach the underlying writer
// (flushing, deadlines, hijacking for parked streams).
func (w *startedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
