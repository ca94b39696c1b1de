package sluice

import (
	"net/http"
	"time"
)

// NewHTTPServer returns an http.Server suited to long-lived streams: bounded
// header reads, no write timeout (each stream bounds its own writes), and
// limits on request headers.
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		// Headers are bounded by the limits middleware, which answers 431
		// with a problem body; this is only the hard ceiling.
		MaxHeaderBytes: 1 << 20,
	}
}
