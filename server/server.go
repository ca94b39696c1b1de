// Package server is the sluice command's gateway: a sluice.Gateway built
// from a Config (SLUICE_* variables and flags, docs/protocol.md §10), with
// the adapters chosen by name — the Redis broker, the PostgreSQL or HTTP
// membership source, the JWT verifier — plus what only the server has:
// Prometheus metrics at /metrics, --dev mode and its console, the routes
// file, the django-eventstream ingest and the outbox relay.
//
// A service that embeds Sluice imports package sluice instead; this package
// is how the sluice command wires it.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/broker/memory"
	"github.com/sluicehq/sluice/ingest/django"
	"github.com/sluicehq/sluice/limits"
	"github.com/sluicehq/sluice/metrics"
	"github.com/sluicehq/sluice/metrics/prom"
	"github.com/sluicehq/sluice/outbox"
	"github.com/sluicehq/sluice/problem"
	"github.com/sluicehq/sluice/routes"
	"github.com/sluicehq/sluice/tenant"
	"github.com/sluicehq/sluice/tenant/postgres"
	"github.com/sluicehq/sluice/tenant/source"
)

// Server is a sluice.Gateway wired from a Config, with the server's own
// endpoints and background work. It is safe for concurrent use.
type Server struct {
	*sluice.Gateway

	log     *slog.Logger
	dev     *devSetup            // non-nil with Config.Dev
	promReg *prometheus.Registry // nil when metrics come from WithMetrics
	metrics metrics.Recorder
	closers []io.Closer
	ingest  context.CancelFunc
	ingDone chan struct{}
	outbox  context.CancelFunc
	obDone  chan struct{}
}

// Option adjusts a Server built by New.
type Option func(*options)

type options struct {
	logger     *slog.Logger
	broker     broker.Broker
	metrics    metrics.Recorder
	membership tenant.Membership
	extra      func(g *sluice.Gateway, mux *http.ServeMux)
}

// WithLogger sets the logger (default: built from LogLevel and LogFormat, on
// standard error).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithBroker uses b instead of the broker Config.Broker names. The Server
// closes it on Close.
func WithBroker(b broker.Broker) Option { return func(o *options) { o.broker = b } }

// WithMetrics sets the metrics recorder (default: Prometheus collectors,
// served by MetricsHandler).
func WithMetrics(m metrics.Recorder) Option { return func(o *options) { o.metrics = m } }

// WithMembership uses m as the membership source instead of the one
// Config.Membership names (protocol.md §3).
func WithMembership(m tenant.Membership) Option { return func(o *options) { o.membership = m } }

// WithRoutes lets the caller add routes to the gateway's mux, inside its
// CORS, limits and logging (sluice.Options.Routes).
func WithRoutes(f func(g *sluice.Gateway, mux *http.ServeMux)) Option {
	return func(o *options) { o.extra = f }
}

// New validates cfg and builds a Server. Configuration mistakes are
// reported here, never at a first request.
func New(ctx context.Context, cfg Config, opts ...Option) (*Server, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.broker != nil && broker.IsNil(o.broker) {
		return nil, fmt.Errorf("server: WithBroker was given a nil %T: pass no WithBroker for the broker SLUICE_BROKER names", o.broker)
	}
	s := &Server{log: o.logger, metrics: o.metrics}
	if s.log == nil {
		s.log = NewLogger(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	}
	ok := false
	defer func() {
		if !ok {
			_ = s.Close()
		}
	}()
	var openStreams func() int // set once the gateway exists
	if s.metrics == nil {
		s.promReg = prometheus.NewRegistry()
		s.metrics = prom.New(s.promReg, func() int {
			if openStreams == nil {
				return 0
			}
			return openStreams()
		})
	}
	if cfg.Dev {
		d, err := newDevSetup(&cfg)
		if err != nil {
			return nil, err
		}
		s.dev = d
	}
	if n := len(cfg.JWTSecret); n > 0 && n < 32 {
		s.log.Warn("SLUICE_JWT_SECRET is shorter than 32 bytes; use at least 32 random bytes")
	}
	if o.broker == nil {
		for _, w := range cfg.Warnings() {
			s.log.Warn(w)
		}
	}

	b, err := s.newBroker(ctx, cfg, o.broker)
	if err != nil {
		return nil, err
	}
	m := o.membership
	if m == nil {
		var closer io.Closer
		m, closer, err = source.FromSpec(ctx, cfg.Membership,
			postgres.Config{URL: cfg.PostgresURL, Query: cfg.MembershipQuery, TenantSetting: cfg.MembershipTenantSetting, CacheTTL: cfg.MembershipCacheTTL},
			tenant.HTTPConfig{CacheTTL: cfg.MembershipCacheTTL})
		if err != nil {
			_ = b.Close()
			return nil, fmt.Errorf("SLUICE_MEMBERSHIP: %w", err)
		}
		if closer != nil {
			s.closers = append(s.closers, closer)
		}
	}
	var feature []routes.Route
	if cfg.RoutesFile != "" {
		if feature, err = routes.Load(cfg.RoutesFile, routes.Options{}); err != nil {
			_ = b.Close()
			return nil, fmt.Errorf("SLUICE_ROUTES_FILE: %w", err)
		}
	}
	proxies, _ := limits.ParseProxies(cfg.TrustedProxies) // checked by Validate
	ac, err := authConfig(ctx, cfg)
	if err != nil {
		_ = b.Close()
		return nil, err
	}
	s.Gateway, err = sluice.New(ctx, sluice.Options{
		Broker:         b,
		Auth:           ac,
		TicketLimits:   auth.TicketLimits{Rate: orNone(cfg.TicketRate), Burst: cfg.TicketBurst, MaxPerUser: orNone(cfg.MaxTicketsPerUser)},
		Membership:     m,
		Metrics:        s.metrics,
		Logger:         s.log,
		TrustedProxies: proxies,
		Limits: limits.Config{
			MaxStreamsPerUser:   orNone(cfg.MaxStreamsPerUser),
			MaxStreamsPerTenant: orNone(cfg.MaxStreamsPerTenant),
			ConnRate:            orNone(cfg.ConnRate),
			ConnBurst:           cfg.ConnBurst,
			MaxHeaderBytes:      orNone(cfg.MaxHeaderBytes),
			MaxURLBytes:         orNone(cfg.MaxURLBytes),
		},
		PublishKeys:            cfg.PublishKeys,
		AllowOrigins:           cfg.AllowOrigins,
		Retry:                  cfg.Retry,
		KeepAlive:              cfg.KeepAlive,
		MaxChannels:            cfg.MaxChannels,
		QueueSize:              cfg.QueueSize,
		MaxPendingBytes:        cfg.MaxPendingBytes,
		DisablePark:            cfg.DisablePark,
		RecheckInterval:        cfg.RecheckInterval,
		DrainSpread:            cfg.DrainSpread,
		WriteTimeout:           cfg.WriteTimeout,
		WriteCoalesce:          cfg.WriteCoalesce,
		MaxEventBytes:          cfg.MaxEventBytes,
		MaxBodyBytes:           cfg.MaxBodyBytes,
		RevocationTTL:          cfg.RevocationTTL,
		HeaderTimeout:          cfg.HeaderTimeout,
		BodyTimeout:            cfg.BodyTimeout,
		MaxPendingConns:        cfg.MaxPendingConns,
		MaxPendingConnsPerAddr: cfg.MaxPendingConnsPerAddr,
		Routes: func(g *sluice.Gateway, mux *http.ServeMux) {
			s.mount(g, mux, cfg, feature, o.extra)
		},
	})
	if err != nil {
		return nil, err
	}
	openStreams = s.OpenStreams
	if cfg.DjangoIngest != "" {
		s.startIngest(cfg)
	}
	if cfg.Outbox == "postgres" {
		s.startOutbox(cfg)
	}
	ok = true
	return s, nil
}

// orNone maps a setting of 0, which in a Config means "no limit", to the
// negative value that means it in sluice.Options (where 0 is the default).
func orNone[T int | float64](v T) T {
	if v == 0 {
		return -1
	}
	return v
}

// newBroker returns b, or the broker cfg.Broker names.
func (s *Server) newBroker(ctx context.Context, cfg Config, b broker.Broker) (broker.Broker, error) {
	bopts := broker.Options{HistorySize: cfg.HistorySize, HistoryTTL: cfg.HistoryTTL}
	switch {
	case b != nil:
		return b, nil
	case cfg.Broker == "redis":
		return newRedisBroker(ctx, cfg, bopts, s.log, s.metrics)
	default:
		return memory.New(bopts), nil
	}
}

// mount adds the server's own routes to the gateway's mux: /metrics (unless
// it has a listener of its own), the routes file's feature streams, the dev
// console, then the caller's.
func (s *Server) mount(g *sluice.Gateway, mux *http.ServeMux, cfg Config, feature []routes.Route, extra func(*sluice.Gateway, *http.ServeMux)) {
	if h := s.MetricsHandler(); h != nil && cfg.MetricsAddr == "" {
		mux.Handle("/metrics", getOnly(h))
	}
	func() {
		defer func() { // ServeMux panics on conflicting patterns
			if r := recover(); r != nil {
				panic(fmt.Sprintf("SLUICE_ROUTES_FILE: a route conflicts with a gateway endpoint: %v", r))
			}
		}()
		for _, rt := range feature {
			// Patterns are "GET <path>"; mounting the path for every method
			// lets other methods get a 405 problem rather than a 404.
			mux.Handle(strings.TrimPrefix(rt.Pattern, "GET "), g.Stream(rt.Resolve))
		}
	}()
	if s.dev != nil {
		mux.Handle("/{$}", getOnly(http.HandlerFunc(s.serveConsole)))
		mux.Handle("/favicon.ico", getOnly(http.HandlerFunc(serveFavicon)))
	}
	if extra != nil {
		extra(g, mux)
	}
}

// getOnly answers 405 with a problem body to methods other than GET.
func getOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET, OPTIONS")
			problem.Write(w, problem.New(http.StatusMethodNotAllowed, problem.CodeMethodNotAllowed, r.Method+" is not allowed here; use GET"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// MetricsHandler serves the server's Prometheus metrics; it is nil when the
// metrics recorder was supplied with WithMetrics.
func (s *Server) MetricsHandler() http.Handler {
	if s.promReg == nil {
		return nil
	}
	return promhttp.HandlerFor(s.promReg, promhttp.HandlerOpts{})
}

// Close stops the ingest and the outbox relay, then releases the gateway
// (its broker and authenticator) and the membership source. Call it after
// Shutdown and after the HTTP server has stopped.
func (s *Server) Close() error {
	if s.outbox != nil {
		s.outbox()
		<-s.obDone
		s.outbox = nil
	}
	if s.ingest != nil {
		s.ingest()
		<-s.ingDone
		s.ingest = nil
	}
	var errs []error
	if s.Gateway != nil {
		errs = append(errs, s.Gateway.Close())
	}
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i].Close())
	}
	s.closers = nil
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

// startIngest runs the django-eventstream ingest (protocol.md §9) until Close.
func (s *Server) startIngest(cfg Config) {
	ctx, cancel := context.WithCancel(context.Background())
	s.ingest, s.ingDone = cancel, make(chan struct{})
	go func() {
		defer close(s.ingDone)
		err := django.Run(ctx, django.Config{
			RedisURL: cfg.RedisURL,
			Prefix:   cfg.RedisPrefix,
			Channel:  cfg.DjangoIngest,
			Logger:   s.log,
			Publish: func(ctx context.Context, ch, typ string, data json.RawMessage) error {
				_, err := s.PublishBatch(ctx, []sluice.Event{{Channel: ch, Type: typ, Data: data}})
				return err
			},
		})
		if err != nil && ctx.Err() == nil {
			s.log.Error("django ingest stopped", "err", err)
		}
	}()
}

// startOutbox runs the outbox relay (protocol.md §7, docs/outbox.md) until
// Close: each group of rows is published with PublishIdempotent under the
// relay's key; a refusal like a bad POST /publish's is an outbox.Refused.
func (s *Server) startOutbox(cfg Config) {
	ctx, cancel := context.WithCancel(context.Background())
	s.outbox, s.obDone = cancel, make(chan struct{})
	rec, _ := s.metrics.(outbox.Recorder)
	go func() {
		defer close(s.obDone)
		err := outbox.Run(ctx, outbox.Config{
			URL:     cfg.PostgresURL,
			Table:   cfg.OutboxTable,
			Poll:    cfg.OutboxPoll,
			Batch:   cfg.OutboxBatch,
			Logger:  s.log,
			Metrics: rec,
			Publish: func(ctx context.Context, key string, rows []outbox.Row) error {
				evs := make([]sluice.Event, len(rows))
				for i, r := range rows {
					evs[i] = sluice.Event{Channel: r.Channel, Type: r.Event, Data: r.Data}
				}
				_, err := s.PublishIdempotent(ctx, key, evs)
				if p, ok := problem.As(err); ok && p.Status >= 400 && p.Status < 500 {
					return &outbox.Refused{Reason: p.Code + ": " + p.Detail}
				}
				return err
			},
		})
		if err != nil && ctx.Err() == nil {
			s.log.Error("outbox relay stopped", "err", err)
		}
	}()
}
