// Package redis is the Valkey/Redis broker (protocol.md §9): history, live fan-out,
// stream tickets, revocations and the cursor key shared by every instance of
// a deployment.
//
// # Data layout
//
// Every key and Pub/Sub channel starts with Config.Prefix (Pub/Sub is not
// scoped by database number, so the prefix is the only namespace there):
//
//	<prefix>m:{<channel>}   hash: e = epoch, o = offset of the newest event
//	<prefix>s:{<channel>}   stream: the channel's history, entry id "<offset>-0",
//	                        fields t (type), d (data), p (publish time, Unix ns)
//	<prefix>ch:<channel>    Pub/Sub channel of live events
//	<prefix>control         Pub/Sub channel of revocations
//	<prefix>ticket:<id>     stream ticket (principal as JSON), PX = its ttl
//	<prefix>rev:<tenant>[:<user>]  revocation time, PXAT = its end
//	<prefix>cursor-key      the deployment's cursor key (no expiry)
//
// History is a stream rather than a list or sorted set because its entry ids
// can be the offsets themselves: XRANGE from "<offset+1>-0" returns exactly the
// events after a position and its first id says at once whether trimming has
// taken any of them. It is trimmed exactly (MAXLEN without ~) to HistorySize.
// The hash and the stream expire HistoryTTL after the last publish; publish
// times are stored so that Since does not replay older events even while the
// key lives. The {channel} hash tag keeps both keys of a channel in one slot.
//
// # Publishing and order
//
// One Lua script (lua/publish.lua) creates the epoch if the channel has none,
// increments the offset, appends to the stream and PUBLISHes the encoded event,
// atomically, for each event of a batch (up to maxScriptBatch events a run).
// Redis runs scripts one at a time, so the order of offsets is the
// order of history and the order of Pub/Sub messages; each instance reads all
// its live events from one connection and fans each one out from that
// connection's reader, so every local subscriber sees a channel's events in
// offset order.
package redis

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/broker/hub"
)

var (
	_ broker.Broker           = (*Broker)(nil)
	_ broker.CursorKeyAdopter = (*Broker)(nil)
	_ auth.TicketStore        = (*Broker)(nil)
)

// DefaultPrefix is the key prefix when Config.Prefix is empty
// (SLUICE_REDIS_PREFIX).
const DefaultPrefix = "sluice:"

// opTimeout bounds the broker's own round trips that no caller's context
// bounds: (un)subscribing, reconnecting, catching up after a reconnection.
const opTimeout = 5 * time.Second

// Metrics observes the broker. Implementations must be safe for concurrent
// use and must not block.
type Metrics interface {
	// BrokerRoundTrip records how long one operation ("publish", "since",
	// "heads") took, errors included.
	BrokerRoundTrip(op string, d time.Duration)
}

// Config configures a Redis broker.
type Config struct {
	// URL is redis://[:password@]host:port/<db>, or rediss:// for TLS
	// (SLUICE_REDIS_URL). valkey-go's query options (dial_timeout,
	// client_name, …) are accepted.
	URL string
	// Prefix namespaces every key and Pub/Sub channel; empty means
	// DefaultPrefix. Deployments sharing a Redis use different prefixes.
	Prefix string
	// Options are the history settings.
	Options broker.Options
	// Logger receives connection losses and dropped messages; nil discards.
	Logger *slog.Logger
	// Metrics is optional.
	Metrics Metrics
}

// Broker is the Redis broker. Create it with New.
type Broker struct {
	opts    broker.Options
	prefix  string
	control string // Pub/Sub channel of revocations
	log     *slog.Logger
	metrics Metrics
	client  valkey.Client
	hub     *hub.Hub

	// Pub/Sub state, see pubsub.go.
	subShards [subShards]sync.Mutex
	conn      atomic.Pointer[psConn]
	tmu       sync.Mutex
	trackers  map[string]*tracker
	dropped   atomic.Uint64
	fills     sync.WaitGroup // fills running (pubsub.go)
	fillSem   chan struct{}  // bounds them to maxFills

	keyOnce  sync.Mutex // guards key and keyFuncs
	key      []byte
	keyFuncs []func([]byte)

	handlers broker.RevokeHandlers

	closed atomic.Bool
	stop   chan struct{}
	done   chan struct{}
}

// New connects to Redis, checks that it answers and subscribes to the control
// channel. It fails with a clear error if the URL is malformed or Redis cannot
// be reached; afterwards, losses of Redis are survived (see Ready).
func New(ctx context.Context, cfg Config) (*Broker, error) {
	u, err := clusterURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	opt, err := valkey.ParseURL(u)
	if err != nil {
		return nil, badURL(cfg.URL, err)
	}
	opt.DisableCache = true // no client-side caching: nothing here is cacheable
	// The broker survives losses of Redis itself (the Pub/Sub loop reconnects
	// and catches up); a command must fail fast rather than be retried until
	// its caller gives up, so that requests get a 503 while Redis is away.
	opt.DisableRetry = true
	if opt.ClientName == "" {
		opt.ClientName = "sluice"
	}
	b := &Broker{
		opts:     cfg.Options.WithDefaults(),
		prefix:   cfg.Prefix,
		log:      cfg.Logger,
		metrics:  cfg.Metrics,
		hub:      hub.New(),
		trackers: make(map[string]*tracker),
		fillSem:  make(chan struct{}, maxFills),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if b.prefix == "" {
		b.prefix = DefaultPrefix
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	b.control = b.prefix + "control"
	addr := strings.Join(opt.InitAddress, ",")
	b.client, err = valkey.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("redis broker: connecting to %s: %w", addr, err)
	}
	if err := b.client.Do(ctx, b.client.B().Ping().Build()).Error(); err != nil {
		b.client.Close()
		return nil, fmt.Errorf("redis broker: %s does not answer PING: %w", addr, err)
	}
	c, err := b.connect(ctx)
	if err != nil {
		b.client.Close()
		return nil, fmt.Errorf("redis broker: subscribing on %s: %w", addr, err)
	}
	go b.run(c)
	return b, nil
}

// clusterURL accepts a comma list of nodes in the host part
// (redis://h1:p1,h2:p2/0, as other Redis clients write a cluster's seeds) by
// turning it into valkey-go's form: the first node as the host, the others
// as addr parameters (redis://h1:p1/0?addr=h2:p2).
func clusterURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", badURL(raw, err)
	}
	if !strings.Contains(u.Host, ",") {
		return raw, nil
	}
	hosts := strings.Split(u.Host, ",")
	if slices.Contains(hosts, "") || u.Scheme == "" {
		return "", fmt.Errorf("redis broker: URL %s: empty node in the comma list of hosts", redactURL(raw))
	}
	q := u.Query()
	for _, h := range hosts[1:] {
		q.Add("addr", h)
	}
	u.Host = hosts[0]
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// badURL is the error for a URL that does not parse. It never quotes the
// URL nor the parser's message, which may quote parts of it (a password
// taken for a port).
func badURL(raw string, err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return fmt.Errorf("redis broker: bad URL %s: %w", redactURL(raw), err)
	}
	return fmt.Errorf("redis broker: SLUICE_REDIS_URL is not a valid URL (%s); it must look like redis://[:password@]host:port/<db>", ue.Op)
}

// redactURL is raw without its password, for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

func (b *Broker) metaKey(ch string) string   { return b.prefix + "m:{" + ch + "}" }
func (b *Broker) streamKey(ch string) string { return b.prefix + "s:{" + ch + "}" }
func (b *Broker) pubsubName(ch string) string {
	return b.prefix + "ch:" + ch
}

// fail wraps a Redis error: the caller's own cancellation as it is, anything
// else as broker.ErrUnavailable.
func (b *Broker) fail(ctx context.Context, op string, err error) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return fmt.Errorf("redis broker: %s: %w", op, err)
	}
	return fmt.Errorf("redis broker: %s: %w: %w", op, broker.ErrUnavailable, err)
}

func (b *Broker) observe(op string, start time.Time) {
	if b.metrics != nil {
		b.metrics.BrokerRoundTrip(op, time.Since(start))
	}
}

// restoreCursorKey runs after every reconnection: it puts the cursor key
// back if Redis lost it (a restart without persistence, a flush), and if
// another instance put a different one there first (one that started while
// Redis was empty), adopts that one, so that every instance of the
// deployment writes cursors under the same key again. The functions
// registered with OnCursorKey learn of the change; cursors written under the
// earlier key are still read (event.Codec.Adopt).
func (b *Broker) restoreCursorKey(ctx context.Context) {
	b.keyOnce.Lock()
	defer b.keyOnce.Unlock()
	k := b.key
	if k == nil {
		return
	}
	name := b.prefix + "cursor-key"
	res := b.client.DoMulti(ctx,
		b.client.B().Set().Key(name).Value(string(k)).Nx().Build(),
		b.client.B().Get().Key(name).Build())
	if err := res[0].Error(); err != nil && !valkey.IsValkeyNil(err) {
		b.log.Warn("redis broker: restoring the cursor key", "err", err)
		return
	}
	v, err := res[1].AsBytes()
	if err != nil || len(v) < 16 {
		b.log.Warn("redis broker: reading the cursor key back", "err", err, "bytes", len(v))
		return
	}
	if string(v) == string(k) {
		return
	}
	b.log.Warn("redis broker: another instance stored a new cursor key while Redis was empty; adopting it")
	b.key = v
	for _, f := range b.keyFuncs {
		f(v)
	}
}

// OnCursorKey registers f to be called with the new cursor key when this
// instance adopts another (see restoreCursorKey). f must not block.
func (b *Broker) OnCursorKey(f func(key []byte)) {
	b.keyOnce.Lock()
	defer b.keyOnce.Unlock()
	b.keyFuncs = append(b.keyFuncs, f)
}

// CursorKey implements broker.Broker: the first instance to ask stores a
// random key (SET NX, no expiry); every instance then reads the same one. It
// is cached once read.
func (b *Broker) CursorKey(ctx context.Context) ([]byte, error) {
	b.keyOnce.Lock()
	defer b.keyOnce.Unlock()
	if b.key != nil {
		return b.key, nil
	}
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	name := b.prefix + "cursor-key"
	res := b.client.DoMulti(ctx,
		b.client.B().Set().Key(name).Value(string(k)).Nx().Build(),
		b.client.B().Get().Key(name).Build())
	if err := res[0].Error(); err != nil && !valkey.IsValkeyNil(err) {
		return nil, b.fail(ctx, "cursor key", err)
	}
	v, err := res[1].AsBytes()
	if err != nil {
		return nil, b.fail(ctx, "cursor key", err)
	}
	if len(v) < 16 {
		return nil, fmt.Errorf("redis broker: cursor key %q holds %d bytes, want 32", name, len(v))
	}
	b.key = v
	return v, nil
}

// Ready implements broker.Broker: a PING (on a Redis Cluster, CLUSTER INFO
// saying cluster_state:ok, so that a cluster with slots nobody serves is not
// ready), and the Pub/Sub connection being up: exactly when Publish accepts
// events.
func (b *Broker) Ready(ctx context.Context) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	if b.client.Mode() == valkey.ClientModeCluster {
		info, err := b.client.Do(ctx, b.client.B().ClusterInfo().Build()).ToString()
		if err != nil {
			return b.fail(ctx, "cluster info", err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("redis broker: %w: the Redis Cluster reports a state other than ok", broker.ErrUnavailable)
		}
	} else if err := b.client.Do(ctx, b.client.B().Ping().Build()).Error(); err != nil {
		return b.fail(ctx, "ping", err)
	}
	if b.conn.Load() == nil {
		return fmt.Errorf("redis broker: %w: Pub/Sub connection down, reconnecting", broker.ErrUnavailable)
	}
	return nil
}

// Close implements broker.Broker: it stops the Pub/Sub connection and closes
// the client. Local subscribers get no more events.
func (b *Broker) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	close(b.stop)
	<-b.done
	b.fills.Wait()
	b.client.Close()
	return nil
}
