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
		MaxHeaderBytes:    16 << 10,
	}
}
