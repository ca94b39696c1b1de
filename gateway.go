// Package sluice is a multi-tenant Server-Sent Events gateway and the Go
// library behind it. Backends publish events to channels named
// "<prefix>:<tenant_id>:<resource_id>"; browsers and services subscribe over
// one long-lived HTTP response each; the server enforces tenant isolation.
//
// A Gateway serves the generic endpoints (GET /events, POST /publish, POST
// /tickets, POST /revoke, health and metrics) and lets a service add its own
// stream endpoints with Stream, supplying only a channels hook: Sluice does
// authentication, the tenant gate, streaming and resume.
package sluice

import (
	"context"
	"encoding/json"
	"net"

	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/broker/memory"
	"github.com/sluicehq/sluice/event"
	"github.com/sluicehq/sluice/ingest/django"
	"github.com/sluicehq/sluice/limits"
	"github.com/sluicehq/sluice/metrics"
	"github.com/sluicehq/sluice/metrics/prom"
	"github.com/sluicehq/sluice/outbox"
	"github.com/sluicehq/sluice/problem"
	"github.com/sluicehq/sluice/routes"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/tenant"
)

// Gateway is a running Sluice: broker, authenticator, tenant gate and stream
// server, wired from a Config. It is safe for concurrent use.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	broker  broker.Broker
	auth    *auth.Authenticator
	gate    tenant.Gate
	streams *stream.Server
	codec   *event.Codec
	metrics metrics.Recorder
	pubKeys [][32]byte
	closers []io.Closer
	dev     *devSetup // non-nil with Config.Dev
	limits  *limits.Limiter
	promReg *prometheus.Registry // nil when metrics come from WithMetrics
	handler http.Handler
	ingest  context.CancelFunc
	ingDone chan struct{}
	outbox  context.CancelFunc
	obDone  chan struct{}
}

// Option adjusts a Gateway built by New.
type Option func(*options)

type options struct {
	logger     *slog.Logger
	broker     broker.Broker
	metrics    metrics.Recorder
	membership tenant.Membership
	extra      func(g *Gateway, mux *http.ServeMux)
}

// WithLogger sets the logger (default: built from LogLevel and LogFormat, on
// standard error).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithBroker uses b instead of the broker Config.Broker names. The Gateway
// closes it on Close.
func WithBroker(b broker.Broker) Option { return func(o *options) { o.broker = b } }

// WithMetrics sets the metrics recorder (default: Prometheus collectors,
// served by MetricsHandler).
func WithMetrics(m metrics.Recorder) Option { return func(o *options) { o.metrics = m } }

// WithMembership uses m as the membership source instead of the one
// Config.Membership names: the hook for a library user's own source (protocol.md §3).
func WithMembership(m tenant.Membership) Option { return func(o *options) { o.membership = m } }

// WithRoutes lets the caller add routes to the gateway's mux, inside its CORS,
// limits and logging, e.g. feature endpoints built with g.Stream. f runs once,
// in New; a route that conflicts with the gateway's own makes New fail.
func WithRoutes(f func(g *Gateway, mux *http.ServeMux)) Option {
	return func(o *options) { o.extra = f }
}

// New validates cfg and builds a Gateway. Configuration mistakes are reported
// here, never at a first request.
func New(ctx context.Context, cfg Config, opts ...Option) (*Gateway, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, metrics: o.metrics, log: o.logger}
	if g.log == nil {
		g.log = NewLogger(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	}
	var openStreams func() int // set once the stream server exists
	if g.metrics == nil {
		g.promReg = prometheus.NewRegistry()
		g.metrics = prom.New(g.promReg, func() int {
			if openStreams == nil {
				return 0
			}
			return openStreams()
		})
	}
	ok := false
	defer func() {
		if !ok {
			_ = g.Close()
		}
	}()
	if cfg.Dev {
		d, err := newDevSetup(&g.cfg)
		if err != nil {
			return nil, err
		}
		g.dev = d
	}
	cfg = g.cfg
	if n := len(cfg.JWTSecret); n > 0 && n < 32 {
		g.log.Warn("SLUICE_JWT_SECRET is shorter than 32 bytes; use at least 32 random bytes")
	}
	if o.broker == nil {
		for _, w := range cfg.Warnings() {
			g.log.Warn(w)
		}
	}

	bopts := broker.Options{HistorySize: cfg.HistorySize, HistoryTTL: cfg.HistoryTTL}
	switch {
	case o.broker != nil:
		g.broker = o.broker
	case cfg.Broker == "redis":
		b, err := newRedisBroker(ctx, cfg, bopts, g.log, g.metrics)
		if err != nil {
			return nil, err
		}
		g.broker = b
	default:
		g.broker = memory.New(bopts)
	}
	g.closers = append(g.closers, g.broker)
	key, err := g.broker.CursorKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("broker: reading the cursor key: %w", err)
	}
	g.codec = event.NewCodec(key)
	// A Redis broker may adopt another instance's cursor key after Redis
	// lost its data: cursors are then written under it too.
	if kc, ok := g.broker.(interface{ OnCursorKey(func([]byte)) }); ok {
		kc.OnCursorKey(func(k []byte) { g.codec.Adopt(k) })
	}

	a, err := auth.New(ctx, auth.Config{
		JWTSecret:        []byte(cfg.JWTSecret),
		JWTPublicKeyFile: cfg.JWTPublicKey,
		JWKSURL:          cfg.JWKSURL,
		Algorithms:       cfg.JWTAlgorithms,
		Issuer:           cfg.JWTIssuer,
		Audience:         cfg.JWTAudience,
		Leeway:           cfg.JWTLeeway,
		APIKeysFile:      cfg.APIKeysFile,
		Tickets:          auth.LimitTickets(g.broker, auth.TicketLimits{Rate: cfg.TicketRate, Burst: cfg.TicketBurst, MaxPerUser: cfg.MaxTicketsPerUser}),
		Revocations:      g.broker,
		IsPublisherKey:   g.isPublisherKey,
	})
	if err != nil {
		return nil, err
	}
	g.auth = a
	g.closers = append(g.closers, a)

	m := o.membership
	if m == nil {
		var closer io.Closer
		m, closer, err = tenant.FromSpec(ctx, cfg.Membership,
			tenant.PostgresConfig{URL: cfg.PostgresURL, Query: cfg.MembershipQuery, TenantSetting: cfg.MembershipTenantSetting, CacheTTL: cfg.MembershipCacheTTL},
			tenant.HTTPConfig{CacheTTL: cfg.MembershipCacheTTL})
		if err != nil {
			return nil, fmt.Errorf("SLUICE_MEMBERSHIP: %w", err)
		}
		if closer != nil {
			g.closers = append(g.closers, closer)
		}
	}
	g.gate = tenant.Gate{Membership: m}

	for _, k := range cfg.PublishKeys {
		g.pubKeys = append(g.pubKeys, hashKey(k))
	}
	g.limits = limits.New(limits.Config{
		MaxStreamsPerUser:   cfg.MaxStreamsPerUser,
		MaxStreamsPerTenant: cfg.MaxStreamsPerTenant,
		ConnRate:            cfg.ConnRate,
		ConnBurst:           cfg.ConnBurst,
		MaxHeaderBytes:      cfg.MaxHeaderBytes,
		MaxURLBytes:         cfg.MaxURLBytes,
		ClientAddr:          clientAddr(cfg.TrustedProxies),
	})
	g.streams, err = stream.New(stream.Config{
		Admit:           g.limits,
		Broker:          g.broker,
		Auth:            g.auth,
		Gate:            g.gate,
		Codec:           g.codec,
		Retry:           cfg.Retry,
		KeepAlive:       cfg.KeepAlive,
		MaxChannels:     cfg.MaxChannels,
		QueueSize:       cfg.QueueSize,
		MaxPendingBytes: cfg.MaxPendingBytes,
		DisablePark:     cfg.DisablePark,
		ReplayLimit:     cfg.HistorySize,
		Leeway:          cfg.JWTLeeway,
		RecheckInterval: cfg.RecheckInterval,
		DrainSpread:     cfg.DrainSpread,
		WriteTimeout:    cfg.WriteTimeout,
		WriteCoalesce:   cfg.WriteCoalesce,
		Logger:          g.log,
		Metrics:         g.metrics,
	})
	if err != nil {
		return nil, err
	}
	openStreams = g.streams.Open
	var feature []routes.Route
	if cfg.RoutesFile != "" {
		if feature, err = routes.Load(cfg.RoutesFile, routes.Options{}); err != nil {
			return nil, fmt.Errorf("SLUICE_ROUTES_FILE: %w", err)
		}
	}
	if g.handler, err = g.mountRoutes(feature, o.extra); err != nil {
		return nil, err
	}
	if cfg.DjangoIngest != "" {
		g.startIngest(cfg)
	}
	if cfg.Outbox == "postgres" {
		g.startOutbox(cfg)
	}
	ok = true
	return g, nil
}

// mountRoutes is g.routes with a ServeMux panic on a routes-file pattern
// (routes.Load refuses the gateway's own paths; this catches any it could
// not foresee) turned into a start-up error.
func (g *Gateway) mountRoutes(feature []routes.Route, extra func(*Gateway, *http.ServeMux)) (h http.Handler, err error) {
	defer func() {
		if r := recover(); r != nil {
			h, err = nil, fmt.Errorf("SLUICE_ROUTES_FILE: a route conflicts with a gateway endpoint: %v", r)
		}
	}()
	return g.routes(feature, extra)
}

// Handler returns the gateway's HTTP handler: every endpoint of protocol.md §4–§8,
// with CORS.
func (g *Gateway) Handler() http.Handler { return g.handler }

// Stream returns a stream endpoint whose channels resolve decides (protocol.md §3,
// layer 1); authentication, the tenant gate, streaming and resume are the
// gateway's. Mount it on any route of the service's own mux, or with
// WithRoutes. A *channel.Error that resolve returns (channel.Make's, for a
// bad path value) is answered 400 malformed_channel.
func (g *Gateway) Stream(resolve stream.ChannelsFunc) http.Handler {
	return g.streams.Handler(channelProblems(resolve))
}

// Broker returns the gateway's broker.
func (g *Gateway) Broker() broker.Broker { return g.broker }

// Config returns the configuration in force (with Dev, the generated secret
// and keys filled in).
func (g *Gateway) Config() Config { return g.cfg }

// Open returns the number of open streams on this instance.
func (g *Gateway) Open() int { return g.streams.Open() }

// Shutdown drains the gateway (protocol.md §6 shutting-down): readiness turns 503,
// every open stream is told to reconnect elsewhere with a spread-out retry
// hint, and new stream requests get the same answer. It returns when every
// stream has been told, or with ctx's error.
func (g *Gateway) Shutdown(ctx context.Context) error {
	return g.streams.Drain(ctx)
}

// Close releases the broker and background work. Call it after Shutdown and
// after the HTTP server has stopped.
func (g *Gateway) Close() error {
	if g.outbox != nil {
		g.outbox()
		<-g.obDone
		g.outbox = nil
	}
	if g.ingest != nil {
		g.ingest()
		<-g.ingDone
		g.ingest = nil
	}
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

// NewLogger returns the slog logger SLUICE_LOG_LEVEL and SLUICE_LOG_FORMAT
// describe, writing to w.
func NewLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(strings.ToUpper(level)))
	ho := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

func randomKey(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// MetricsHandler serves the gateway's Prometheus metrics; it is nil when the
// metrics recorder was supplied with WithMetrics.
func (g *Gateway) MetricsHandler() http.Handler {
	if g.promReg == nil {
		return nil
	}
	return promhttp.HandlerFor(g.promReg, promhttp.HandlerOpts{})
}

// startIngest runs the django-eventstream ingest (protocol.md §9) until Close.
func (g *Gateway) startIngest(cfg Config) {
	ctx, cancel := context.WithCancel(context.Background())
	g.ingest, g.ingDone = cancel, make(chan struct{})
	go func() {
		defer close(g.ingDone)
		err := django.Run(ctx, django.Config{
			RedisURL: cfg.RedisURL,
			Prefix:   cfg.RedisPrefix,
			Channel:  cfg.DjangoIngest,
			Logger:   g.log,
			Publish: func(ctx context.Context, ch, typ string, data json.RawMessage) error {
				_, err := g.PublishBatch(ctx, []Event{{Channel: ch, Event: typ, Data: data}})
				return err
			},
		})
		if err != nil && ctx.Err() == nil {
			g.log.Error("django ingest stopped", "err", err)
		}
	}()
}

// startOutbox runs the outbox relay (protocol.md §7, docs/outbox.md) until Close:
// each group of rows is published with PublishIdempotent under the
// relay's key; a refusal like a bad POST /publish's is an outbox.Refused.
func (g *Gateway) startOutbox(cfg Config) {
	ctx, cancel := context.WithCancel(context.Background())
	g.outbox, g.obDone = cancel, make(chan struct{})
	rec, _ := g.metrics.(outbox.Recorder)
	go func() {
		defer close(g.obDone)
		err := outbox.Run(ctx, outbox.Config{
			URL:     cfg.PostgresURL,
			Table:   cfg.OutboxTable,
			Poll:    cfg.OutboxPoll,
			Batch:   cfg.OutboxBatch,
			Logger:  g.log,
			Metrics: rec,
			Publish: func(ctx context.Context, key string, rows []outbox.Row) error {
				evs := make([]Event, len(rows))
				for i, r := range rows {
					evs[i] = Event{Channel: r.Channel, Event: r.Event, Data: r.Data}
				}
				_, err := g.PublishIdempotent(ctx, key, evs)
				if p, ok := problem.As(err); ok && p.Status >= 400 && p.Status < 500 {
					return &outbox.Refused{Reason: p.Code + ": " + p.Detail}
				}
				return err
			},
		})
		if err != nil && ctx.Err() == nil {
			g.log.Error("outbox relay stopped", "err", err)
		}
	}()
}

// clientAddr returns how the limits find a request's client address: the
// peer address, or, when the peer is a trusted proxy, the rightmost address
// of X-Forwarded-For that is not itself a trusted proxy. Nil (the peer
// address) without trusted proxies.
func clientAddr(trusted []string) func(*http.Request) string {
	if len(trusted) == 0 {
		return nil
	}
	var nets []netip.Prefix
	for _, t := range trusted {
		p, err := netip.ParsePrefix(t)
		if err != nil {
			a, _ := netip.ParseAddr(t) // checked by Validate
			p = netip.PrefixFrom(a, a.BitLen())
		}
		nets = append(nets, p.Masked())
	}
	isTrusted := func(s string) (netip.Addr, bool) {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return netip.Addr{}, false
		}
		a = a.Unmap()
		for _, n := range nets {
			if n.Contains(a) {
				return a, true
			}
		}
		return a, false
	}
	return func(r *http.Request) string {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		if _, ok := isTrusted(host); !ok {
			return host
		}
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			a, ok := isTrusted(hops[i])
			if !a.IsValid() {
				break // unreadable: do not trust anything further left
			}
			if !ok {
				return a.String()
			}
		}
		return host
	}
}
