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
// Config; for any other handler, such as a service's mux that mounts a
// Gateway's Handler, they are the defaults.
func NewHTTPServer(h http.Handler) *http.Server {
	cfg := DefaultConfig()
	if gh, ok := h.(*gatewayHandler); ok {
		cfg = gh.cfg
	} else {
		// The gateway's handler guards bodies itself; any other gets the
		// same guard with the default deadline.
		h = bodyGuard(h, cfg.BodyTimeout)
	}
	exempt := trustedPeer(cfg.TrustedProxies)
	conns := limits.NewConns(limits.ConnsConfig{
		MaxPending:        cfg.MaxPendingConns,
		MaxPendingPerAddr: cfg.MaxPendingConnsPerAddr,
		Exempt:            exempt,
	})
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.HeaderTimeout,
		IdleTimeout:       120 * time.Second,
		// The limits middleware answers heads over SLUICE_MAX_HEADER_BYTES
		// or SLUICE_MAX_URL_BYTES with a problem (431, 414); this hard
		// ceiling, a little above both, bounds what a connection that
		// trickles its head makes the server hold (net/http answers past
		// it with a text/plain 431).
		MaxHeaderBytes: cfg.MaxHeaderBytes + cfg.MaxURLBytes + 4096,
		ConnState:      conns.ConnState,
	}
}

// trustedPeer reports whether a peer address is one of the trusted proxies
// (checked by Validate); nil without any.
func trustedPeer(trusted []string) func(netip.Addr) bool {
	if len(trusted) == 0 {
		return nil
	}
	var nets []netip.Prefix
	for _, t := range trusted {
		p, err := netip.ParsePrefix(t)
		if err != nil {
			a, err := netip.ParseAddr(t)
			if err != nil {
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		nets = append(nets, p.Masked())
	}
	return func(a netip.Addr) bool {
		a = a.Unmap()
		for _, n := range nets {
			if n.Contains(a) {
				return true
			}
		}
		return false
	}
}
