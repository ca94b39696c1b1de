package sluice

import (
	"net/http"
	"net/netip"
	"time"

	"github.com/sluicehq/sluice/limits"
)

// NewHTTPServer returns an http.Server suited to long-lived streams: request
// heads must arrive within SLUICE_HEADER_TIMEOUT, connections that have not
// sent a complete request are bounded per client address and in total
// (SLUICE_MAX_PENDING_CONNS_PER_ADDR, SLUICE_MAX_PENDING_CONNS; see
// limits.Conns), there is no write timeout (each stream bounds its own
// writes), and request heads are limited in size.
//
// What net/http refuses before any handler runs (a malformed request line
// or header, a head past the hard ceiling, an unknown Transfer-Encoding, an
// unsupported HTTP version) it answers itself in text/plain; serve through
// ProblemListener to have those answers problem+json too.
//
// Request bodies get the gateway's guard: a deadline (SLUICE_BODY_TIMEOUT),
// and a connection closed rather than drained when a handler answers
// without reading the body.
//
// When h is a Gateway's Handler, those settings come from the gateway's
// Options; for any other handler, such as a service's mux that mounts a
// Gateway's Handler, they are the defaults.
func NewHTTPServer(h http.Handler) *http.Server {
	var o Options
	if gh, ok := h.(*gatewayHandler); ok {
		o = gh.opts
	} else {
		o = o.withDefaults()
		// The gateway's handler guards bodies itself; any other gets the
		// same guard with the default deadline.
		h = bodyGuard(h, o.BodyTimeout)
	}
	var exempt func(netip.Addr) bool
	if len(o.TrustedProxies) > 0 {
		exempt = o.TrustedProxies.Trusted
	}
	conns := limits.NewConns(limits.ConnsConfig{
		MaxPending:        o.MaxPendingConns,
		MaxPendingPerAddr: o.MaxPendingConnsPerAddr,
		Exempt:            exempt,
	})
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: o.HeaderTimeout,
		IdleTimeout:       120 * time.Second,
		// The limits middleware answers heads over SLUICE_MAX_HEADER_BYTES
		// or SLUICE_MAX_URL_BYTES with a problem (431, 414); this hard
		// ceiling, a little above both, bounds what a connection that
		// trickles its head makes the server hold (net/http answers past
		// it with a text/plain 431).
		MaxHeaderBytes: max(o.Limits.MaxHeaderBytes, 0) + max(o.Limits.MaxURLBytes, 0) + 4096,
		ConnState:      conns.ConnState,
	}
}
