// Package django ingests the events django-eventstream publishes to Redis
// (protocol.md §9 SLUICE_DJANGO_INGEST), so that a Django backend moves to Sluice
// with no code change.
//
// django-eventstream's send_event PUBLISHes, on the Redis Pub/Sub channel
// "events_channel" by default, one JSON message per event:
//
//	{"channel": "<name>", "event_type": "<type>", "data": "<JSON text>", "pub_id": …}
//
// data is the event's payload already encoded as JSON, carried as a JSON
// string. Each message is published through Config.Publish, which applies the
// validation of POST /publish: channel must be a Sluice channel name (protocol.md
// §1) and event_type a resource.verb name (django-eventstream's default
// "message" is not one, so such events are refused). A data member that is
// not a string is taken as the payload itself. Refused and undecodable
// messages are counted and logged at warn level; they never stop the ingest.
//
// # The lease
//
// Redis Pub/Sub delivers a message to every subscriber, so if every instance
// of a deployment subscribed, each event would be published once per
// instance. Instead one instance at a time holds a lease, the key
// <prefix>ingest-lease:<channel>, taken with SET NX PX and renewed by its
// holder every third of its lifetime; only the holder subscribes. An instance
// that stops releases the lease after unsubscribing; one that dies stops
// renewing, and another takes over when the lease expires. A holder that
// cannot renew stops subscribing, and stops publishing what it still
// receives, once its lease may have expired.
//
// Pub/Sub keeps nothing: messages published while no instance is subscribed
// (the lease changing hands, Redis unreachable) are lost. After a clean stop
// that window is the time until a waiting instance's next attempt, at most a
// third of the lease; after a crash it is up to the whole lease.
package django

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/sluicehq/sluice/internal/backoff"
	"github.com/sluicehq/sluice/problem"
)

// DefaultLease is the lease lifetime when Config.Lease is zero.
const DefaultLease = 4 * time.Second

// minLease is the shortest lease Config accepts.
const minLease = 100 * time.Millisecond

// publishTimeout bounds one call of Config.Publish.
const publishTimeout = 5 * time.Second

// PublishFunc publishes one event exactly as POST /publish would; it returns
// a *problem.Problem for an event that fails validation.
type PublishFunc func(ctx context.Context, channel, event string, data json.RawMessage) error

// Config configures the ingest.
type Config struct {
	RedisURL string      // the broker's Redis
	Prefix   string      // key prefix of the deployment (lease key)
	Channel  string      // Pub/Sub channel django-eventstream publishes to
	Publish  PublishFunc // where ingested events go
	Logger   *slog.Logger

	// Lease is the lifetime of the ingest lease; DefaultLease when zero. It
	// bounds how long ingestion pauses when the holder dies.
	Lease time.Duration
}

// Stats counts what an Ingester did with the messages it received.
type Stats struct {
	Ingested uint64 // published through Config.Publish
	Refused  uint64 // undecodable, or refused by Publish's validation
	Failed   uint64 // valid, but Publish failed (broker down) or the lease lapsed
}

// Ingester ingests django-eventstream messages. Create it with New; Run it
// once. Its methods are safe for concurrent use.
type Ingester struct {
	cfg   Config
	opt   valkey.ClientOption
	key   string // the lease key
	token string // this Ingester's lease value
	log   *slog.Logger

	ingested, refused, failed atomic.Uint64
	holding                   atomic.Bool
	// validUntil is the Unix time (ns) until which the lease is certainly
	// this Ingester's: the start of its last successful renewal plus the
	// lease. Messages received later are not published.
	validUntil atomic.Int64
}

// Run ingests until ctx ends. One instance of a deployment at a time holds
// the ingest lease, so each message is published once. It returns an error
// only for a configuration it cannot use; losses of Redis are survived.
func Run(ctx context.Context, cfg Config) error {
	in, err := New(cfg)
	if err != nil {
		return err
	}
	return in.Run(ctx)
}

// New checks cfg and returns an Ingester; it does not connect.
func New(cfg Config) (*Ingester, error) {
	switch {
	case cfg.Channel == "":
		return nil, errors.New("django ingest: no Pub/Sub channel")
	case cfg.Publish == nil:
		return nil, errors.New("django ingest: no Publish function")
	case cfg.Lease != 0 && cfg.Lease < minLease:
		return nil, fmt.Errorf("django ingest: lease %v is shorter than %v", cfg.Lease, minLease)
	}
	if cfg.Lease == 0 {
		cfg.Lease = DefaultLease
	}
	opt, err := valkey.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("django ingest: bad Redis URL: %w", err)
	}
	opt.DisableCache = true
	if opt.ClientName == "" {
		opt.ClientName = "sluice-ingest"
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Ingester{
		cfg:   cfg,
		opt:   opt,
		key:   cfg.Prefix + "ingest-lease:" + cfg.Channel,
		token: hex.EncodeToString(b[:]),
		log:   log.With("ingest_channel", cfg.Channel),
	}, nil
}

// Stats returns the counters so far.
func (in *Ingester) Stats() Stats {
	return Stats{Ingested: in.ingested.Load(), Refused: in.refused.Load(), Failed: in.failed.Load()}
}

// Holding reports whether this Ingester holds the lease and is subscribed,
// or subscribing.
func (in *Ingester) Holding() bool { return in.holding.Load() }

// LeaseKey returns the Redis key of the lease.
func (in *Ingester) LeaseKey() string { return in.key }

// acquireScript takes the lease if it is free (-1), or returns the
// milliseconds it still has to live (-2 for a key without expiry).
var acquireScript = valkey.NewLuaScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return -1 end
return redis.call('PTTL', KEYS[1])`)

// renewScript extends the lease if it is still ARGV[1]'s: 1, else 0.
var renewScript = valkey.NewLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`)

// releaseScript deletes the lease if it is still ARGV[1]'s.
var releaseScript = valkey.NewLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// Run ingests until ctx ends: it connects (retrying with backoff), then
// alternates between waiting for the lease and holding it. It returns nil
// when ctx ends.
func (in *Ingester) Run(ctx context.Context) error {
	client := in.connect(ctx)
	if client == nil {
		return nil
	}
	defer client.Close()
	bo := newBackoff()
	for ctx.Err() == nil {
		wait, err := in.acquire(ctx, client)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil
			}
			d := bo.Next()
			in.log.Debug("django ingest: lease attempt failed", "err", err, "retry_in", d)
			sleep(ctx, d)
		case wait > 0:
			bo.Reset()
			sleep(ctx, wait)
		default:
			bo.Reset()
			in.hold(ctx, client)
		}
	}
	return nil
}

// connect creates the Redis client, retrying with backoff until it
// succeeds or ctx ends (nil).
func (in *Ingester) connect(ctx context.Context) valkey.Client {
	bo := newBackoff()
	for warned := false; ; warned = true {
		c, err := valkey.NewClient(in.opt)
		if err == nil {
			return c
		}
		if !warned {
			in.log.Warn("django ingest: Redis unreachable; retrying", "err", err)
		}
		if !sleep(ctx, bo.Next()) {
			return nil
		}
	}
}

// acquire tries to take the lease. It returns 0 when taken, else how long
// to wait before trying again: until the current lease expires, at most a
// third of the lease.
func (in *Ingester) acquire(ctx context.Context, c valkey.Client) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, in.cfg.Lease/3)
	defer cancel()
	start := time.Now()
	ms, err := acquireScript.Exec(ctx, c, []string{in.key},
		[]string{in.token, fmt.Sprint(in.cfg.Lease.Milliseconds())}).AsInt64()
	if err != nil {
		return 0, err
	}
	if ms == -1 {
		in.validUntil.Store(start.Add(in.cfg.Lease).UnixNano())
		return 0, nil
	}
	wait := in.cfg.Lease / 3
	if ms >= 0 {
		wait = min(wait, time.Duration(ms)*time.Millisecond)
	}
	// Jitter keeps waiting instances from all trying at the same instant.
	return max(wait, time.Millisecond) + mrand.N(10*time.Millisecond), nil
}

// hold keeps the lease and the subscription until ctx ends or the lease is
// lost, then unsubscribes and releases the lease if it is still its own.
func (in *Ingester) hold(ctx context.Context, c valkey.Client) {
	in.log.Info("django ingest: lease taken; subscribing")
	in.holding.Store(true)
	defer in.holding.Store(false)
	hctx, lose := context.WithCancel(ctx)
	defer lose()
	var wg sync.WaitGroup
	lost := atomic.Bool{}
	wg.Go(func() {
		if in.renew(hctx, c) {
			lost.Store(true)
			lose()
		}
	})
	in.subscribe(hctx, c)
	lose()
	wg.Wait()
	if lost.Load() {
		in.log.Warn("django ingest: lease lost; another instance may take over")
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if err := releaseScript.Exec(rctx, c, []string{in.key}, []string{in.token}).Error(); err != nil {
		in.log.Debug("django ingest: releasing the lease failed; it expires by itself", "err", err)
	}
	in.log.Info("django ingest: stopped; lease released")
}

// renew extends the lease every third of its lifetime until ctx ends
// (false) or the lease is lost (true): taken by another, or not renewed
// before it may have expired.
func (in *Ingester) renew(ctx context.Context, c valkey.Client) bool {
	every := in.cfg.Lease / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, every)
		n, err := renewScript.Exec(rctx, c, []string{in.key},
			[]string{in.token, fmt.Sprint(in.cfg.Lease.Milliseconds())}).AsInt64()
		cancel()
		switch {
		case ctx.Err() != nil:
			return false
		case err == nil && n == 1:
			in.validUntil.Store(start.Add(in.cfg.Lease).UnixNano())
		case err == nil:
			return true // expired and gone, or taken by another instance
		case time.Now().Add(every).UnixNano() >= in.validUntil.Load():
			in.log.Warn("django ingest: cannot renew the lease", "err", err)
			return true
		default:
			in.log.Debug("django ingest: lease renewal failed; retrying", "err", err)
		}
	}
}

// subscribe keeps a Pub/Sub subscription to the ingest channel until ctx
// ends, resubscribing with backoff when the connection is lost. Messages are
// handled on the connection's reader, one at a time, in order.
func (in *Ingester) subscribe(ctx context.Context, c valkey.Client) {
	bo := newBackoff()
	for ctx.Err() == nil {
		dc, _ := c.Dedicate()
		lost := dc.SetPubSubHooks(valkey.PubSubHooks{OnMessage: func(m valkey.PubSubMessage) {
			in.handle(ctx, m.Message)
		}})
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := dc.Do(sctx, dc.B().Subscribe().Channel(in.cfg.Channel).Build()).Error()
		cancel()
		if err != nil {
			dc.Close()
			if ctx.Err() == nil {
				d := bo.Next()
				in.log.Debug("django ingest: subscribe failed; retrying", "err", err, "retry_in", d)
				sleep(ctx, d)
			}
			continue
		}
		bo.Reset()
		in.log.Debug("django ingest: subscribed")
		select {
		case err := <-lost:
			dc.Close()
			in.log.Warn("django ingest: Pub/Sub connection lost; resubscribing", "err", err)
			sleep(ctx, bo.Next())
		case <-ctx.Done():
			// The reply to UNSUBSCRIBE comes after every message sent before
			// it, and hooks run on the reader, so once it is here every
			// message received has been handled.
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = dc.Do(uctx, dc.B().Unsubscribe().Channel(in.cfg.Channel).Build()).Error()
			cancel()
			dc.Close()
		}
	}
}

// message is what django-eventstream publishes.
type message struct {
	Channel   *string         `json:"channel"`
	EventType *string         `json:"event_type"`
	Data      json.RawMessage `json:"data"`
}

// handle publishes one Pub/Sub message. ctx is the holding context: a
// message received while holding is published even if holding ends during
// the publish.
func (in *Ingester) handle(ctx context.Context, raw string) {
	var m message
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		in.refuse("the message is not a JSON object", "", "", "bytes", len(raw), "err", err)
		return
	}
	if m.Channel == nil || m.EventType == nil {
		in.refuse("the message lacks channel or event_type", "", "", "bytes", len(raw))
		return
	}
	data := m.Data
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			in.refuse("data is not a JSON string", *m.Channel, *m.EventType)
			return
		}
		data = json.RawMessage(s)
	}
	if time.Now().UnixNano() >= in.validUntil.Load() {
		n := in.failed.Add(1)
		in.log.Warn("django ingest: event dropped: the lease may have lapsed",
			"channel", *m.Channel, "event_type", *m.EventType, "failed_total", n)
		return
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	defer cancel()
	err := in.cfg.Publish(pctx, *m.Channel, *m.EventType, data)
	if err == nil {
		in.ingested.Add(1)
		return
	}
	if p, ok := problem.As(err); ok {
		in.refuse(p.Detail, *m.Channel, *m.EventType, "code", p.Code)
		return
	}
	n := in.failed.Add(1)
	in.log.Warn("django ingest: event not published", "channel", *m.Channel,
		"event_type", *m.EventType, "err", err, "failed_total", n)
}

func (in *Ingester) refuse(reason, ch, typ string, attrs ...any) {
	n := in.refused.Add(1)
	args := append([]any{"reason", reason, "channel", truncate(ch), "event_type", truncate(typ), "refused_total", n}, attrs...)
	in.log.Warn("django ingest: event refused", args...)
}

// truncate bounds a value that came off the wire before it is logged.
func truncate(s string) string {
	const n = 200
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// newBackoff is the ingest's retry backoff: ceilings from 50 ms doubling
// up to 5 s, each wait drawn from the upper half of its ceiling.
func newBackoff() *backoff.Backoff {
	return &backoff.Backoff{First: 50 * time.Millisecond, Longest: 5 * time.Second, Jitter: backoff.Equal}
}

// sleep waits d or until ctx ends; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
