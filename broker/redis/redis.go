// Package redis is the Valkey/Redis broker (SPEC §9): history, live fan-out,
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
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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

	keyOnce sync.Mutex
	key     []byte

	handlers broker.RevokeHandlers

	closed atomic.Bool
	stop   chan struct{}
	done   chan struct{}
}

// New connects to Redis, checks that it answers and subscribes to the control
// channel. It fails with a clear error if the URL is malformed or Redis cannot
// be reached; afterwards, losses of Redis are survived (see Ready).
func New(ctx context.Context, cfg Config) (*Broker, error) {
	opt, err := valkey.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("redis broker: bad URL: %w", err)
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
// a later run can succeed before an earlier one is re-sent. Runs that must
// apply in order use evalMulti.
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

// evalMulti runs one script several times in one pipelined round trip, in
// order, with EVAL, which cannot be answered NOSCRIPT: the runs apply in the
// order given whatever happens to Redis's script cache meanwhile. Each run
// carries the script's source (~2 KB), which Redis hashes: batches of 500
// events over four runs measured 2–4 % slower than with EVALSHA. Publish
// uses it only for batches that need the order (split).
func (b *Broker) evalMulti(ctx context.Context, s *script, execs []valkey.LuaExec) []valkey.ValkeyResult {
	cmds := make(valkey.Commands, len(execs))
	for i, e := range execs {
		cmds[i] = b.eval(s, e)
	}
	return b.client.DoMulti(ctx, cmds...)
}

// eval is the EVAL command running s once with e's keys and arguments.
func (b *Broker) eval(s *script, e valkey.LuaExec) valkey.Completed {
	return b.client.B().Eval().Script(s.src).Numkeys(int64(len(e.Keys))).Key(e.Keys...).Arg(e.Args...).Build()
}

// maxScriptBatch bounds the events of one publish script run. Redis serves
// nobody else while a script runs, so a run stays short (well under a
// millisecond); a larger batch is several runs in one pipelined round trip.
const maxScriptBatch = 128

// Publish implements broker.Broker. A batch is a few runs of the publish
// script (up to maxScriptBatch events each) pipelined in one round trip, in
// order, so the messages of one channel get increasing offsets. Against a
// Redis Cluster the runs are grouped by channel, whose two keys share a slot.
// Validation happens before (the caller), so a batch fails only if Redis
// does: then Publish returns an error, and the runs Redis did complete (a
// pipeline does not stop at a failed run) stay published, in history and
// fanned out, although their positions are not returned. Clients see them; the publisher, told the batch failed,
// may publish it again.
func (b *Broker) Publish(ctx context.Context, msgs []event.Message) ([]event.Position, error) {
	if b.closed.Load() {
		return nil, broker.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	start := time.Now()
	defer b.observe("publish", start)
	head := [4]string{
		strconv.FormatUint(broker.NewEpoch(), 10),
		strconv.FormatInt(b.opts.Now().UnixNano(), 10),
		strconv.Itoa(b.opts.HistorySize),
		strconv.FormatInt(max(b.opts.HistoryTTL.Milliseconds(), 1), 10),
	}
	order, ends := runs(msgs, b.client.Mode() == valkey.ClientModeCluster)
	execs := make([]valkey.LuaExec, len(ends))
	lo := 0
	for r, hi := range ends {
		keys := make([]string, 0, 2*(hi-lo))
		args := append(make([]string, 0, len(head)+3*(hi-lo)), head[:]...)
		for _, i := range order[lo:hi] {
			ch := msgs[i].Channel.String()
			keys = append(keys, b.metaKey(ch), b.streamKey(ch))
			args = append(args, b.pubsubName(ch), msgs[i].Type, string(msgs[i].Data))
		}
		execs[r] = valkey.LuaExec{Keys: keys, Args: args}
		lo = hi
	}
	var res []valkey.ValkeyResult
	if split(msgs, order, ends) {
		res = b.evalMulti(ctx, publish, execs) // the runs' order is a channel's
	} else {
		res = b.execMulti(ctx, publish, execs)
	}
	out := make([]event.Position, len(msgs))
	lo = 0
	for r, hi := range ends {
		vs, err := res[r].ToArray()
		if err == nil && len(vs) != 2*(hi-lo) {
			err = fmt.Errorf("unexpected script reply of %d values for %d events", len(vs), hi-lo)
		}
		for j, i := range order[lo:hi] {
			if err != nil {
				break
			}
			out[i], err = positionOf(vs[2*j : 2*j+2])
		}
		if err != nil {
			return nil, b.fail(ctx, "publish", err)
		}
		lo = hi
	}
	return out, nil
}

// runs splits a batch into script runs: order lists the indexes of msgs run
// by run, ends[r] is where run r ends in order. Against one Redis (or a
// Sentinel-managed one) the runs are consecutive slices of the batch; a
// Redis Cluster cannot run one script over keys of several slots, so there
// each run holds the events of one channel, in their order.
func runs(msgs []event.Message, cluster bool) (order, ends []int) {
	order = make([]int, len(msgs))
	for i := range order {
		order[i] = i
	}
	if cluster {
		slices.SortStableFunc(order, func(x, y int) int {
			return strings.Compare(msgs[x].Channel.String(), msgs[y].Channel.String())
		})
	}
	lo := 0
	for i := 1; i < len(order); i++ {
		if i-lo == maxScriptBatch || cluster && msgs[order[i]].Channel != msgs[order[i-1]].Channel {
			ends = append(ends, i)
			lo = i
		}
	}
	return order, append(ends, len(order))
}

// split reports whether some channel has events in more than one run of a
// batch: only then must the runs apply in their order (events are ordered
// per channel, SPEC §4; across channels no order is promised).
func split(msgs []event.Message, order, ends []int) bool {
	if len(ends) < 2 {
		return false
	}
	run := make(map[string]int32, len(msgs))
	lo := 0
	for r, hi := range ends {
		for _, i := range order[lo:hi] {
			ch := msgs[i].Channel.String()
			if prev, ok := run[ch]; ok && prev != int32(r) {
				return true
			}
			run[ch] = int32(r)
		}
		lo = hi
	}
	return false
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
			Args: []string{strconv.FormatUint(broker.NewEpoch(), 10), ttl},
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
	name := ch.String()
	r := b.execMulti(ctx, since, []valkey.LuaExec{{
		Keys: []string{b.metaKey(name), b.streamKey(name)},
		Args: []string{strconv.FormatUint(after.Offset+1, 10), strconv.Itoa(max(limit, 1))},
	}})[0]
	vs, err := r.ToArray()
	if err != nil {
		return nil, false, err
	}
	if len(vs) == 0 {
		return nil, false, nil // no epoch: history lost or never existed
	}
	if len(vs) != 3 {
		return nil, false, fmt.Errorf("unexpected since reply of %d values", len(vs))
	}
	head, err := positionOf(vs[:2])
	if err != nil {
		return nil, false, err
	}
	if after.Epoch != head.Epoch || after.Offset > head.Offset {
		return nil, false, nil
	}
	missing := head.Offset - after.Offset
	if missing == 0 {
		return nil, true, nil
	}
	entries, err := vs[2].ToArray()
	if err != nil {
		return nil, false, err
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

// restoreCursorKey puts the cached cursor key back if Redis lost it (a
// restart without persistence, a flush), so that instances started later
// read the same key and cursors stay portable.
func (b *Broker) restoreCursorKey(ctx context.Context) {
	b.keyOnce.Lock()
	k := b.key
	b.keyOnce.Unlock()
	if k == nil {
		return
	}
	err := b.client.Do(ctx, b.client.B().Set().Key(b.prefix+"cursor-key").Value(string(k)).Nx().Build()).Error()
	if err != nil && !valkey.IsValkeyNil(err) {
		b.log.Warn("redis broker: restoring the cursor key", "err", err)
	}
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
// revocation in one round trip; the later wins.
func (b *Broker) RevokedAt(ctx context.Context, tenant, user string) (time.Time, bool, error) {
	if b.closed.Load() {
		return time.Time{}, false, broker.ErrClosed
	}
	vs, err := b.client.Do(ctx, b.client.B().Mget().Key(b.revKey(tenant, user), b.revKey(tenant, "")).Build()).ToArray()
	if err != nil {
		return time.Time{}, false, b.fail(ctx, "revoked at", err)
	}
	var at time.Time
	found := false
	for _, v := range vs {
		s, err := v.ToString()
		if err != nil {
			continue // nil: none
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

// Ready implements broker.Broker: a PING, and the Pub/Sub connection being up.
func (b *Broker) Ready(ctx context.Context) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	if err := b.client.Do(ctx, b.client.B().Ping().Build()).Error(); err != nil {
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
	b.client.Close()
	return nil
}
