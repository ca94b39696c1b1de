// Package sluice is the Go library behind the Sluice Server-Sent Events
// gateway: what a service imports to serve streams and publish events with
// tenant isolation enforced. Backends publish events to channels named
// "<prefix>:<tenant_id>:<resource_id>"; browsers and services subscribe over
// one long-lived HTTP response each.
//
// A Gateway is built from explicit parts (Options): a broker, how callers
// authenticate, a membership source, a metrics recorder, a logger and
// limits. Every part but the token verifier has a sensible zero value:
// New(ctx, Options{Auth: auth.Config{Tokens: v}}) is an in-memory gateway
// that verifies tokens with v (a jwtauth.Verifier, say) and trusts their
// tenant claim. It serves the
// generic endpoints (GET /events, POST /publish, POST /tickets, POST
// /revoke, /healthz, /readyz, /sluice.js) and lets a service add its own
// stream endpoints with Stream, supplying only a channels hook: Sluice does
// authentication, the tenant gate, streaming and resume.
//
// The package pulls in no database, Redis or metrics library. The adapters
// are packages an embedder opts into: broker/redis (Valkey/Redis),
// tenant/postgres (membership from PostgreSQL), metrics/prom (Prometheus).
// The sluice command, configured from SLUICE_* variables, is package server.
//
// The wire contract is docs/protocol.md; §n references below are to it.
package sluice

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/broker/memory"
	"github.com/sluicehq/sluice/event"
	"github.com/sluicehq/sluice/limits"
	"github.com/sluicehq/sluice/metrics"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/tenant"
)

// Options are a Gateway's parts and settings. Every zero value means the
// default given in its comment (the defaults of protocol.md §10).
type Options struct {
	// Broker carries events between publishers and streams. Nil means an
	// in-memory broker keeping History; the Gateway closes the broker on
	// Close either way.
	Broker broker.Broker

	// History is the history setting of the in-memory broker made when
	// Broker is nil (1000 events per channel, kept 1h).
	History broker.Options

	// Auth is how callers authenticate (protocol.md §2): Auth.Tokens is the
	// token verifier (package auth/jwtauth verifies JWTs), Auth.APIKeysFile
	// the API keys; New fails with auth.ErrNoVerifier when neither is set.
	// Tickets default to the broker's when it shares them across instances
	// (auth.TicketStore), else to the process's; Revocations to the broker;
	// IsPublisherKey to PublishKeys. The Gateway closes Auth.Tokens on Close.
	Auth auth.Config

	// Membership is layer 2 of the tenant gate (protocol.md §3). Nil means
	// the token's tenant claim is trusted (tenant.Token).
	Membership tenant.Membership

	// Metrics records what the gateway does. Nil means metrics.Nop.
	Metrics metrics.Recorder

	// Logger receives the gateway's logs. Nil means they are discarded.
	Logger *slog.Logger

	// Limits bound streams per user, per tenant and per client address, and
	// request heads (protocol.md §4): zero fields take limits.Config's
	// defaults, negative ones mean no limit of that kind. Limits.ClientAddr
	// nil means the peer address, or TrustedProxies' reading of
	// X-Forwarded-For.
	Limits limits.Config

	// TicketLimits bound the stream tickets a user may ask for (10/s, a
	// burst of 32, 64 outstanding; a negative field: no limit of that kind).
	TicketLimits auth.TicketLimits

	// TrustedProxies are the proxies whose X-Forwarded-For names the client
	// (limits.ParseProxies); none means the peer address is the client.
	TrustedProxies limits.Proxies

	// PublishKeys are the keys that may POST /publish and /revoke; none
	// means publishing over HTTP is off (Publish still works in-process).
	PublishKeys []string

	// AllowOrigins are the CORS origins granted, or "*" for any.
	AllowOrigins []string

	Retry           time.Duration // retry hint sent to clients (2s)
	KeepAlive       time.Duration // keep-alive comment interval (15s)
	MaxChannels     int           // channels per stream (16)
	QueueSize       int           // events pending towards a client that does not read (1024)
	MaxPendingBytes int           // bytes pending towards a client that does not read (4 MiB)
	DisablePark     bool          // every stream keeps a goroutine of its own
	RecheckInterval time.Duration // membership recheck on open streams (60s)
	DrainSpread     time.Duration // upper bound of drain retry hints (10s)
	WriteTimeout    time.Duration // one write to a stream may take at most (10s)
	WriteCoalesce   time.Duration // least time between two writes to one stream (30ms); negative: none

	MaxEventBytes int           // compact data limit per event (65536)
	MaxBodyBytes  int64         // request body limit of POST endpoints (8 MiB)
	RevocationTTL time.Duration // how long a revocation refuses older credentials (24h)

	// The connection settings NewHTTPServer applies.
	HeaderTimeout          time.Duration // a request head must arrive within (10s)
	BodyTimeout            time.Duration // a request body must arrive within (30s)
	MaxPendingConns        int           // connections without a complete request head (4096)
	MaxPendingConnsPerAddr int           // the same, per client address (256)

	// Routes, when set, adds routes to the gateway's mux, inside its CORS,
	// limits and logging, e.g. feature endpoints built with g.Stream. It
	// runs once, in New; a route that conflicts with the gateway's own
	// makes New fail.
	Routes func(g *Gateway, mux *http.ServeMux)
}

// withDefaults returns o with every zero setting set to its default.
func (o Options) withDefaults() Options {
	def := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	def(&o.Retry, 2*time.Second)
	def(&o.KeepAlive, 15*time.Second)
	def(&o.RecheckInterval, 60*time.Second)
	def(&o.DrainSpread, 10*time.Second)
	def(&o.WriteTimeout, 10*time.Second)
	def(&o.WriteCoalesce, 30*time.Millisecond)
	def(&o.RevocationTTL, 24*time.Hour)
	def(&o.HeaderTimeout, 10*time.Second)
	def(&o.BodyTimeout, 30*time.Second)
	if o.MaxEventBytes <= 0 {
		o.MaxEventBytes = 65536
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 8 << 20
	}
	if o.MaxPendingConns <= 0 {
		o.MaxPendingConns = 4096
	}
	if o.MaxPendingConnsPerAddr <= 0 {
		o.MaxPendingConnsPerAddr = 256
	}
	o.History = o.History.WithDefaults()
	o.Limits = o.Limits.WithDefaults()
	tl := &o.TicketLimits
	if tl.Rate == 0 {
		tl.Rate = 10
	}
	if tl.Burst == 0 {
		tl.Burst = 32
	}
	if tl.MaxPerUser == 0 {
		tl.MaxPerUser = 64
	}
	if o.Metrics == nil {
		o.Metrics = metrics.Nop{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Gateway is a running Sluice: broker, authenticator, tenant gate and stream
// server. It is safe for concurrent use.
type Gateway struct {
	opts    Options
	log     *slog.Logger
	broker  broker.Broker
	auth    *auth.Authenticator
	streams *stream.Server
	codec   *event.Codec
	metrics metrics.Recorder
	pubKeys auth.PublisherKeys
	limits  *limits.Limiter
	handler http.Handler
	closers []io.Closer
}

// New builds a Gateway from o. Configuration mistakes are reported here,
// never at a first request.
func New(ctx context.Context, o Options) (*Gateway, error) {
	o = o.withDefaults()
	g := &Gateway{opts: o, log: o.Logger, metrics: o.Metrics, pubKeys: auth.NewPublisherKeys(o.PublishKeys)}
	ok, handed := false, false
	defer func() {
		if !ok {
			if c, isCloser := o.Auth.Tokens.(io.Closer); isCloser && !handed {
				_ = c.Close() // auth.New never had it
			}
			_ = g.Close()
		}
	}()
	if o.Broker != nil && broker.IsNil(o.Broker) {
		return nil, fmt.Errorf("sluice: Options.Broker is a nil %T: leave the field unset for the in-memory broker", o.Broker)
	}
	g.broker = o.Broker
	if g.broker == nil {
		g.broker = memory.New(o.History)
	}
	g.closers = append(g.closers, g.broker)
	key, err := g.broker.CursorKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("broker: reading the cursor key: %w", err)
	}
	g.codec = event.NewCodec(key)
	// A Redis broker may adopt another instance's cursor key after Redis
	// lost its data: cursors are then written under it too.
	if kc, ok := g.broker.(broker.CursorKeyAdopter); ok {
		kc.OnCursorKey(func(k []byte) { g.codec.Adopt(k) })
	}

	ac := o.Auth
	if ac.Tickets == nil {
		// A broker whose instances share tickets (Redis) keeps them;
		// otherwise they live in this process.
		ts, shared := g.broker.(auth.TicketStore)
		if !shared {
			ts = &auth.MemoryTickets{Now: o.History.Now}
		}
		ac.Tickets = auth.LimitTickets(ts, o.TicketLimits)
	}
	if ac.Revocations == nil {
		ac.Revocations = g.broker
	}
	if ac.IsPublisherKey == nil {
		ac.IsPublisherKey = g.pubKeys.Match
	}
	handed = true // auth.New closes Tokens, on failure too
	if g.auth, err = auth.New(ctx, ac); err != nil {
		return nil, err
	}
	g.closers = append(g.closers, g.auth)

	lc := o.Limits
	if lc.ClientAddr == nil && len(o.TrustedProxies) > 0 {
		lc.ClientAddr = o.TrustedProxies.ClientAddr
	}
	g.limits = limits.New(lc)
	g.streams, err = stream.New(stream.Config{
		Admit:           g.limits,
		Broker:          g.broker,
		Auth:            g.auth,
		Gate:            tenant.Gate{Membership: o.Membership},
		Codec:           g.codec,
		Retry:           o.Retry,
		KeepAlive:       o.KeepAlive,
		MaxChannels:     o.MaxChannels,
		QueueSize:       o.QueueSize,
		MaxPendingBytes: o.MaxPendingBytes,
		DisablePark:     o.DisablePark,
		ReplayLimit:     o.History.HistorySize,
		Leeway:          o.Auth.Leeway,
		RecheckInterval: o.RecheckInterval,
		DrainSpread:     o.DrainSpread,
		WriteTimeout:    o.WriteTimeout,
		WriteCoalesce:   o.WriteCoalesce,
		Logger:          g.log,
		Metrics:         g.metrics,
	})
	if err != nil {
		return nil, err
	}
	if g.handler, err = g.routes(o.Routes); err != nil {
		return nil, err
	}
	ok = true
	return g, nil
}

// Handler returns the gateway's HTTP handler: every endpoint of protocol.md
// §4–§7 and /healthz, /readyz and /sluice.js of §8 (package server adds
// /metrics), with CORS, limits and the body guard.
func (g *Gateway) Handler() http.Handler { return g.handler }

// Stream returns a stream endpoint whose channels resolve decides
// (protocol.md §3, layer 1); authentication, the tenant gate, streaming and
// resume are the gateway's. Mount it on any route of the service's own mux,
// or with Options.Routes: either way it answers as GET /events does around
// the stream (CORS by AllowOrigins, preflights included; the request size
// limits; the body guard; problem+json for every refusal; a panic of
// resolve answered 500). A *channel.Error that resolve returns
// (channel.Make's, for a bad path value) is answered 400 malformed_channel;
// methods other than GET get 405.
func (g *Gateway) Stream(resolve stream.ChannelsFunc) http.Handler {
	// Mounted by Options.Routes, it runs inside Handler's chain too: the
	// checks are idempotent and cheap, and a GET without a body keeps
	// net/http's own response writer through both, so it is still parked.
	h := only(http.MethodGet, g.streams.Handler(channelProblems(resolve)))
	return recoverPanics(bodyGuard(g.cors(g.limits.Middleware(h)), g.opts.BodyTimeout), g.log)
}

// Authenticate authenticates r by the gateway's rules (protocol.md §2):
// for a service's own endpoints, so that they accept the credentials its
// streams accept, revocations included. A refusal is a 401
// *problem.Problem saying what to send; any other error is a fault.
func (g *Gateway) Authenticate(r *http.Request) (auth.Principal, error) {
	return g.auth.Authenticate(r, auth.Options{})
}

// Broker returns the gateway's broker.
func (g *Gateway) Broker() broker.Broker { return g.broker }

// OpenStreams counts the streams open on this instance.
func (g *Gateway) OpenStreams() int { return g.streams.Open() }

// Shutdown drains the gateway (protocol.md §6 shutting-down): readiness
// turns 503, every open stream is told to reconnect elsewhere with a
// spread-out retry hint, and new stream requests get the same answer. It
// returns when every stream has been told, or with ctx's error.
func (g *Gateway) Shutdown(ctx context.Context) error {
	return g.streams.Drain(ctx)
}

// Close releases the broker and the authenticator. Call it after Shutdown
// and after the HTTP server has stopped.
func (g *Gateway) Close() error {
	if g.streams != nil {
		g.streams.Close()
	}
	var errs []error
	for i := len(g.closers) - 1; i >= 0; i-- {
		errs = append(errs, g.closers[i].Close())
	}
	g.closers = nil
	return errors.Join(errs...)
}
