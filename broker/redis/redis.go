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
	"crypto/sha1"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/broker/hub"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
)

var _ broker.Broker = (*Broker)(nil)

var (
	//go:embed lua/publish.lua
	publishLua string
	//go:embed lua/heads.lua
	headsLua string
	//go:embed lua/since.lua
	sinceLua string
	//go:embed lua/revoke.lua
	revokeLua string

	publish = newScript(publishLua)
	heads   = newScript(headsLua)
	since   = newScript(sinceLua)
	revoke  = newScript(revokeLua)
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

// script is a Lua script's source and SHA-1, for pipelined EVALSHA or EVAL.
type script struct {
	src, sha string
}

func newScript(src string) *script {
	sum := sha1.Sum([]byte(src))
	return &script{src: src, sha: hex.EncodeToString(sum[:])}
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

// execMulti runs one script several times in one pipelined round trip,
// in order, with EVALSHA, loading the script once if Redis does not know it.
// Unlike valkey.Lua.ExecMulti it does not load the script on every call.
//
// The runs answered NOSCRIPT are sent again after the others, so execMulti
// keeps their order only when there is one: if Redis loses its script cache
// in the middle of the pipeline and another client loads the script again,
// a later run can succeed before an earlier one is re-sent. Callers send
// several runs only when their order does not matter (different channels).
func (b *Broker) execMulti(ctx context.Context, s *script, execs []valkey.LuaExec) []valkey.ValkeyResult {
	cmds := make(valkey.Commands, len(execs))
	for i, e := range execs {
		cmds[i] = b.client.B().Evalsha().Sha1(s.sha).Numkeys(int64(len(e.Keys))).Key(e.Keys...).Arg(e.Args...).Build()
	}
	res := b.client.DoMulti(ctx, cmds...)
	var retry []int
	for i, r := range res {
		if ve, ok := valkey.IsValkeyErr(r.Error()); ok && ve.IsNoScript() {
			retry = append(retry, i)
		}
	}
	if len(retry) == 0 {
		return res
	}
	// Redis lost its script cache (restart, SCRIPT FLUSH): the commands that
	// failed ran nothing, so they are sent again, in their order, as EVAL.
	cmds = cmds[:0]
	for _, i := range retry {
		cmds = append(cmds, b.eval(s, execs[i]))
	}
	for j, r := range b.client.DoMulti(ctx, cmds...) {
		res[retry[j]] = r
	}
	return res
}

// eval is the EVAL command running s once with e's keys and arguments.
func (b *Broker) eval(s *script, e valkey.LuaExec) valkey.Completed {
	return b.client.B().Eval().Script(s.src).Numkeys(int64(len(e.Keys))).Key(e.Keys...).Arg(e.Args...).Build()
}

// Publish implements broker.Broker.
func (b *Broker) Publish(ctx context.Context, msgs []event.Message) ([]event.Position, error) {
	return b.publish(ctx, "", msgs)
}

// PublishIdempotent implements broker.Broker. The key is stored by the
// publish script itself, in the same atomic step as the events, under
// <prefix>idem:<sha256 of key> on one Redis, and per channel under
// <prefix>idem:{<channel>}:<sha256 of key> on a Redis Cluster (each run
// records what it applied, so a retry after a PartialError applies the
// rest), for the history TTL.
func (b *Broker) PublishIdempotent(ctx context.Context, key string, msgs []event.Message) ([]event.Position, error) {
	if key == "" {
		return nil, errors.New("redis broker: empty idempotency key")
	}
	return b.publish(ctx, key, msgs)
}

// publish applies a batch with the publish script: one run for the whole
// batch on one Redis (or a Sentinel-managed one), so that it is all or
// nothing; one run per channel on a Redis Cluster, whose scripts cannot
// reach keys of several slots (a channel's keys share one). Validation
// happens before (the caller), so a run fails only if Redis does.
//
// Redis runs nothing else while a script runs: a batch of the largest size
// (1,000 events) holds it for about 10 ms.
func (b *Broker) publish(ctx context.Context, idem string, msgs []event.Message) ([]event.Position, error) {
	if b.closed.Load() {
		return nil, broker.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	// An instance whose Pub/Sub connection is down would not see its own
	// events reach its own streams until it is back: it does not stand
	// behind a publish it cannot deliver, and says so like Ready does.
	if b.conn.Load() == nil {
		return nil, fmt.Errorf("redis broker: publish: %w: Pub/Sub connection down, reconnecting", broker.ErrUnavailable)
	}
	start := time.Now()
	defer b.observe("publish", start)
	cluster := b.client.Mode() == valkey.ClientModeCluster
	var idemHash string
	if idem != "" {
		sum := sha256.Sum256([]byte(idem))
		idemHash = hex.EncodeToString(sum[:16])
	}
	head := [5]string{
		strconv.FormatUint(broker.NewEpoch(), 10),
		strconv.FormatInt(b.opts.Now().UnixNano(), 10),
		strconv.Itoa(b.opts.HistorySize),
		strconv.FormatInt(max(b.opts.HistoryTTL.Milliseconds(), 1), 10),
		"0",
	}
	if idem != "" {
		head[4] = "1"
	}
	order, ends := runs(msgs, cluster)
	execs := make([]valkey.LuaExec, len(ends))
	lo := 0
	for r, hi := range ends {
		keys := make([]string, 0, 2*(hi-lo)+1)
		args := append(make([]string, 0, len(head)+3*(hi-lo)), head[:]...)
		for _, i := range order[lo:hi] {
			ch := msgs[i].Channel.String()
			keys = append(keys, b.metaKey(ch), b.streamKey(ch))
			args = append(args, b.pubsubName(ch), msgs[i].Type, string(msgs[i].Data))
		}
		if idem != "" {
			if cluster {
				keys = append(keys, b.prefix+"idem:{"+msgs[order[lo]].Channel.String()+"}:"+idemHash)
			} else {
				keys = append(keys, b.prefix+"idem:"+idemHash)
			}
		}
		execs[r] = valkey.LuaExec{Keys: keys, Args: args}
		lo = hi
	}
	res := b.execMulti(ctx, publish, execs)
	out := make([]event.Position, len(msgs))
	applied := make([]bool, len(msgs))
	var errs []error
	lo = 0
	for r, hi := range ends {
		err := b.runResult(res[r], order[lo:hi], out)
		if err == nil {
			for _, i := range order[lo:hi] {
				applied[i] = true
			}
		} else {
			errs = append(errs, err)
		}
		lo = hi
	}
	switch {
	case len(errs) == 0:
		return out, nil
	case len(errs) == len(ends):
		if errors.Is(errs[0], broker.ErrIdempotencyConflict) {
			return nil, errs[0]
		}
		return nil, b.fail(ctx, "publish", errs[0])
	default:
		return nil, &broker.PartialError{Applied: applied, Positions: out, Err: b.fail(ctx, "publish", errs[0])}
	}
}

// runResult decodes the reply of one publish run whose events are msgs[i]
// for i in idx, into out.
func (b *Broker) runResult(r valkey.ValkeyResult, idx []int, out []event.Position) error {
	vs, err := r.ToArray()
	if err != nil {
		return err
	}
	if len(vs) == 2 { // {"dup", "<epoch> <offset> ..."}, or one event's position
		if tag, _ := vs[0].ToString(); tag == "dup" {
			prev, err := vs[1].ToString()
			if err != nil {
				return err
			}
			f := strings.Fields(prev)
			if len(f) != 2*len(idx) {
				return broker.ErrIdempotencyConflict
			}
			for j, i := range idx {
				e, err1 := strconv.ParseUint(f[2*j], 10, 64)
				o, err2 := strconv.ParseUint(f[2*j+1], 10, 64)
				if err1 != nil || err2 != nil {
					return fmt.Errorf("bad stored idempotency record %q", prev)
				}
				out[i] = event.Position{Epoch: e, Offset: o}
			}
			return nil
		}
	}
	if len(vs) != 2*len(idx) {
		return fmt.Errorf("unexpected script reply of %d values for %d events", len(vs), len(idx))
	}
	for j, i := range idx {
		if out[i], err = positionOf(vs[2*j : 2*j+2]); err != nil {
			return err
		}
	}
	return nil
}

// runs splits a batch into script runs: order lists the indexes of msgs run
// by run, ends[r] is where run r ends in order. Against one Redis (or a
// Sentinel-managed one) the whole batch is one run; a Redis Cluster cannot
// run one script over keys of several slots, so there each run holds the
// events of one channel, in their order.
func runs(msgs []event.Message, cluster bool) (order, ends []int) {
	order = make([]int, len(msgs))
	for i := range order {
		order[i] = i
	}
	if !cluster {
		return order, []int{len(order)}
	}
	slices.SortStableFunc(order, func(x, y int) int {
		return strings.Compare(msgs[x].Channel.String(), msgs[y].Channel.String())
	})
	for i := 1; i < len(order); i++ {
		if msgs[order[i]].Channel != msgs[order[i-1]].Channel {
			ends = append(ends, i)
		}
	}
	return order, append(ends, len(order))
}

// position decodes a {epoch, offset} script reply.
func position(r valkey.ValkeyResult) (event.Position, error) {
	vs, err := r.ToArray()
	if err != nil {
		return event.Position{}, err
	}
	return positionOf(vs)
}

func positionOf(vs []valkey.ValkeyMessage) (event.Position, error) {
	if len(vs) != 2 {
		return event.Position{}, fmt.Errorf("unexpected script reply of %d values", len(vs))
	}
	es, err := vs[0].ToString()
	if err != nil {
		return event.Position{}, err
	}
	e, err := strconv.ParseUint(es, 10, 64)
	if err != nil {
		return event.Position{}, fmt.Errorf("bad epoch %q", es)
	}
	// Only Heads answers epoch 0 (no history), always at offset 0.
	o, err := vs[1].AsInt64()
	if err != nil || o < 0 {
		return event.Position{}, fmt.Errorf("bad offset: %v", err)
	}
	return event.Position{Epoch: e, Offset: uint64(o)}, nil
}

// Heads implements broker.Broker: one pipelined round trip for all channels.
func (b *Broker) Heads(ctx context.Context, chans []channel.Name) ([]event.Position, error) {
	if b.closed.Load() {
		return nil, broker.ErrClosed
	}
	if len(chans) == 0 {
		return nil, nil
	}
	start := time.Now()
	defer b.observe("heads", start)
	ttl := strconv.FormatInt(max(b.opts.HistoryTTL.Milliseconds(), 1), 10)
	execs := make([]valkey.LuaExec, len(chans))
	for i, ch := range chans {
		execs[i] = valkey.LuaExec{
			Keys: []string{b.metaKey(ch.String()), b.streamKey(ch.String())},
			Args: []string{ttl},
		}
	}
	out := make([]event.Position, len(chans))
	for i, r := range b.execMulti(ctx, heads, execs) {
		p, err := position(r)
		if err != nil {
			return nil, b.fail(ctx, "heads", err)
		}
		out[i] = p
	}
	b.noteHeads(chans, out)
	return out, nil
}

// Since implements broker.Broker.
func (b *Broker) Since(ctx context.Context, ch channel.Name, after event.Position, limit int) ([]*event.Event, bool, error) {
	if b.closed.Load() {
		return nil, false, broker.ErrClosed
	}
	start := time.Now()
	defer b.observe("since", start)
	evs, ok, err := b.since(ctx, ch, after, limit)
	if err != nil {
		return nil, false, b.fail(ctx, "since", err)
	}
	return evs, ok, nil
}

func (b *Broker) since(ctx context.Context, ch channel.Name, after event.Position, limit int) ([]*event.Event, bool, error) {
	head, entries, err := b.readHistory(ctx, ch, after.Offset+1, limit)
	if err != nil {
		return nil, false, err
	}
	if head.Epoch == 0 { // no epoch: history lost, expired or never there
		return nil, after == event.Position{}, nil
	}
	if after == (event.Position{}) {
		after.Epoch = head.Epoch // from the first event, if history holds it
	}
	if after.Epoch != head.Epoch || after.Offset > head.Offset {
		return nil, false, nil
	}
	missing := head.Offset - after.Offset
	if missing == 0 {
		return nil, true, nil
	}
	cutoff := b.opts.Now().Add(-b.opts.HistoryTTL).UnixNano()
	n := min(uint64(max(limit, 0)), missing)
	out := make([]*event.Event, 0, n)
	for i, e := range entries {
		ev, err := decodeEntry(ch, head.Epoch, e)
		if err != nil {
			return nil, false, err
		}
		if i == 0 && (ev.Pos.Offset != after.Offset+1 || ev.Published < cutoff) {
			return nil, false, nil // trimmed or expired
		}
		if uint64(len(out)) == n {
			break
		}
		out = append(out, ev)
	}
	if len(entries) == 0 {
		return nil, false, nil // the stream expired or was trimmed away
	}
	return out, true, nil
}

// decodeEntry decodes one XRANGE entry: [id, [field, value, …]].
func decodeEntry(ch channel.Name, epoch uint64, m valkey.ValkeyMessage) (*event.Event, error) {
	xe, err := m.AsXRangeEntry()
	if err != nil {
		return nil, err
	}
	id, _, _ := strings.Cut(xe.ID, "-")
	off, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("bad history entry id %q", xe.ID)
	}
	pub, err := strconv.ParseInt(xe.FieldValues["p"], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("bad history entry time %q", xe.FieldValues["p"])
	}
	return &event.Event{
		Channel:   ch,
		Type:      xe.FieldValues["t"],
		Data:      []byte(xe.FieldValues["d"]),
		Pos:       event.Position{Epoch: epoch, Offset: off},
		Published: pub,
	}, nil
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

// PutTicket implements auth.TicketStore. The principal is stored as JSON,
// credential included, for the ticket's lifetime (about 30 s); whoever can
// read the Redis keys can read it, as they could read the tickets themselves.
func (b *Broker) PutTicket(ctx context.Context, id string, p auth.Principal, ttl time.Duration) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	v, err := json.Marshal(storedPrincipal{
		User: p.User, Tenant: p.Tenant, Kind: p.Kind,
		Expiry: p.Expiry, IssuedAt: p.IssuedAt, Credential: p.Credential,
	})
	if err != nil {
		return fmt.Errorf("redis broker: ticket: %w", err)
	}
	err = b.client.Do(ctx, b.client.B().Set().Key(b.prefix+"ticket:"+id).Value(string(v)).
		PxMilliseconds(max(ttl.Milliseconds(), 1)).Build()).Error()
	if err != nil {
		return b.fail(ctx, "put ticket", err)
	}
	return nil
}

// TakeTicket implements auth.TicketStore with GETDEL: whichever instance
// asks first gets the principal, every later ask gets nothing.
func (b *Broker) TakeTicket(ctx context.Context, id string) (auth.Principal, bool, error) {
	if b.closed.Load() {
		return auth.Principal{}, false, broker.ErrClosed
	}
	v, err := b.client.Do(ctx, b.client.B().Getdel().Key(b.prefix+"ticket:"+id).Build()).AsBytes()
	if valkey.IsValkeyNil(err) {
		return auth.Principal{}, false, nil
	}
	if err != nil {
		return auth.Principal{}, false, b.fail(ctx, "take ticket", err)
	}
	var sp storedPrincipal
	if err := json.Unmarshal(v, &sp); err != nil {
		return auth.Principal{}, false, fmt.Errorf("redis broker: stored ticket is not readable: %w", err)
	}
	return auth.Principal{
		User: sp.User, Tenant: sp.Tenant, Kind: sp.Kind,
		Expiry: sp.Expiry, IssuedAt: sp.IssuedAt, Credential: sp.Credential,
	}, true, nil
}

// storedPrincipal is auth.Principal with JSON names fixed here, so that
// instances of one deployment agree whatever the field names become.
type storedPrincipal struct {
	User       string    `json:"user"`
	Tenant     string    `json:"tenant"`
	Kind       auth.Kind `json:"kind"`
	Expiry     time.Time `json:"exp"`
	IssuedAt   time.Time `json:"iat"`
	Credential string    `json:"cred"`
}

func (b *Broker) revKey(tenant, user string) string {
	if user == "" {
		return b.prefix + "rev:" + tenant
	}
	return b.prefix + "rev:" + tenant + ":" + user
}

// controlMsg announces a revocation on the control channel.
type controlMsg struct {
	Tenant string `json:"tenant"`
	User   string `json:"user,omitempty"`
	At     int64  `json:"at"` // Unix ns
}

// Revoke implements broker.Broker: the revocation is stored until r.At+ttl
// (a later revocation of the same tenant or user is kept) and announced on
// the control channel, which every instance, this one included, hands to its
// OnRevoke functions. An instance whose Pub/Sub connection is down when the
// announcement is made misses it; its periodic recheck (RevokedAt) still
// finds the stored revocation.
func (b *Broker) Revoke(ctx context.Context, r broker.Revocation, ttl time.Duration) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	msg, _ := json.Marshal(controlMsg{Tenant: r.Tenant, User: r.User, At: r.At.UnixNano()})
	until := max(r.At.Add(ttl).UnixMilli(), time.Now().UnixMilli()+1)
	res := b.execMulti(ctx, revoke, []valkey.LuaExec{{
		Keys: []string{b.revKey(r.Tenant, r.User)},
		Args: []string{fmt.Sprintf("%020d", r.At.UnixNano()), strconv.FormatInt(until, 10), b.control, string(msg)},
	}})[0]
	if err := res.Error(); err != nil {
		return b.fail(ctx, "revoke", err)
	}
	return nil
}

// OnRevoke implements broker.Broker.
func (b *Broker) OnRevoke(f func(broker.Revocation)) { b.handlers.Add(f) }

// RevokedAt implements auth.Revocations: the user's and the tenant's
// revocation in one round trip (two GETs, not an MGET: on a Redis Cluster
// the two keys may live in different slots); the later wins.
func (b *Broker) RevokedAt(ctx context.Context, tenant, user string) (time.Time, bool, error) {
	if b.closed.Load() {
		return time.Time{}, false, broker.ErrClosed
	}
	res := b.client.DoMulti(ctx,
		b.client.B().Get().Key(b.revKey(tenant, user)).Build(),
		b.client.B().Get().Key(b.revKey(tenant, "")).Build())
	var at time.Time
	found := false
	for _, r := range res {
		s, err := r.ToString()
		if valkey.IsValkeyNil(err) {
			continue // none
		}
		if err != nil {
			return time.Time{}, false, b.fail(ctx, "revoked at", err)
		}
		ns, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, false, fmt.Errorf("redis broker: bad revocation value %q", s)
		}
		if t := time.Unix(0, ns); !found || t.After(at) {
			at, found = t, true
		}
	}
	return at, found, nil
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
