package redis

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
	"github.com/sluicehq/sluice/internal/backoff"
)

// Live fan-out.
//
// Each instance holds one dedicated Pub/Sub connection. It is subscribed to
// the control channel and to the Pub/Sub channel of every channel that has a
// local subscriber (the hub reports the first and the last). Messages are
// decoded once and handed to hub.Fanout from the connection's reader, one at a
// time, which keeps each channel's publish order.
//
// Subscribing, unsubscribing and resubscribing after a reconnection are
// serialised per channel by subShards locks, held from the hub update until
// Redis has confirmed the command, so that SUBSCRIBE and UNSUBSCRIBE of one
// channel reach Redis in the order of the hub's updates, and so that a
// Subscribe, first or not, returns only once Redis has confirmed the
// subscription: Redis runs commands one at a time, so every PUBLISH it runs
// afterwards reaches this instance.
//
// When the connection is lost, local subscribers stay registered; the
// connection is re-established with backoff and every channel of the hub is
// subscribed again. Events published meanwhile are taken from history: a
// tracker per channel remembers the position last fanned out (or, before
// any, the lowest head a local stream started from), and a gap (after a
// reconnection, or noticed on the next live event) is filled from history.
//
// Filling never happens on the connection's reader, which fans out every
// channel's live events: a channel being filled holds its live events in
// its tracker (bounded), a goroutine reads history (at most maxFills at a
// time) and fans out history then the held events, in order. When history
// no longer holds what was missed (Redis lost its data, a flush, expiry),
// subscribers get an event.Lost notice at the position the channel goes on
// from, then every event of the channel's new epoch that history holds:
// the stream layer turns the notice into stream-reset, so a gap is never
// silent.

const subShards = 64

var shardSeed = maphash.MakeSeed()

// psConn is the current Pub/Sub connection.
type psConn struct {
	c valkey.DedicatedClient
}

// tracker is where fan-out stands on one channel. Its fields are guarded by
// mu.
type tracker struct {
	mu sync.Mutex
	// last is the position last fanned out; valid once fanned is set.
	last   event.Position
	fanned bool
	// base is the lowest head a local stream started from (Heads), while
	// nothing was fanned out: where a catch-up starts then. baseSet tells
	// whether there is one.
	base    event.Position
	baseSet bool
	// While filling, a goroutine reads history; live events wait in held
	// (at most maxHeld; beyond, they are dropped and the fill goes on from
	// history until it reaches the live ones). refill asks the running fill
	// to read history once more (a reconnection happened meanwhile).
	filling bool
	refill  bool
	held    []*event.Event
	// gone is set when the channel's last local subscriber left: a fill
	// still running then fans out nothing (a new subscriber has a new
	// tracker).
	gone bool
}

// testHookFill, when set by a test, runs before each history read of a fill.
var testHookFill func(ch channel.Name)

// maxHeld bounds the live events a channel holds while it is being filled.
const maxHeld = 4096

// maxFills bounds the fills running at once.
const maxFills = 8

func subShard(ch string) int { return int(maphash.String(shardSeed, ch) % subShards) }

// lockShards locks the shards of chans in ascending order (no deadlock
// between concurrent callers) and returns the unlock function.
func (b *Broker) lockShards(chans []channel.Name) func() {
	idx := make([]int, 0, len(chans))
	for _, ch := range chans {
		idx = append(idx, subShard(ch.String()))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		b.subShards[i].Lock()
	}
	return func() {
		for _, i := range idx {
			b.subShards[i].Unlock()
		}
	}
}

func (b *Broker) lockAll() {
	for i := range b.subShards {
		b.subShards[i].Lock()
	}
}

func (b *Broker) unlockAll() {
	for i := range b.subShards {
		b.subShards[i].Unlock()
	}
}

// Subscribe implements broker.Broker. It returns once Redis has confirmed the
// subscription of every channel, so that events published afterwards reach
// s. If the Pub/Sub connection is down it fails with broker.ErrUnavailable.
func (b *Broker) Subscribe(ctx context.Context, chans []channel.Name, s broker.Subscriber) (broker.Subscription, error) {
	if b.closed.Load() {
		return nil, broker.ErrClosed
	}
	unlock := b.lockShards(chans)
	defer unlock()
	var firsts []string
	for _, ch := range chans {
		if b.hub.Add(ch, s) {
			firsts = append(firsts, b.pubsubName(ch.String()))
			b.tmu.Lock()
			b.trackers[ch.String()] = &tracker{}
			b.tmu.Unlock()
		}
	}
	if len(firsts) > 0 {
		if err := b.psDo(ctx, func(c valkey.DedicatedClient) valkey.Completed {
			return c.B().Subscribe().Channel(firsts...).Build()
		}); err != nil {
			for _, ch := range chans {
				b.removeLocked(ch, s)
			}
			return nil, b.fail(ctx, "subscribe", err)
		}
	}
	return &subscription{b: b, chans: slices.Clone(chans), s: s}, nil
}

// psDo runs a command on the Pub/Sub connection and waits for Redis to
// confirm it.
func (b *Broker) psDo(ctx context.Context, build func(valkey.DedicatedClient) valkey.Completed) error {
	pc := b.conn.Load()
	if pc == nil {
		return errors.New("Pub/Sub connection down, reconnecting")
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	return pc.c.Do(ctx, build(pc.c)).Error()
}

// removeLocked unregisters s from ch, with ch's shard locked, and reports
// whether ch has no local subscriber left.
func (b *Broker) removeLocked(ch channel.Name, s broker.Subscriber) bool {
	if !b.hub.Remove(ch, s) {
		return false
	}
	b.tmu.Lock()
	t := b.trackers[ch.String()]
	delete(b.trackers, ch.String())
	b.tmu.Unlock()
	if t != nil {
		t.mu.Lock()
		t.gone = true
		t.mu.Unlock()
	}
	return true
}

type subscription struct {
	b     *Broker
	chans []channel.Name
	s     broker.Subscriber
	once  sync.Once
}

// Close unregisters the subscriber; channels left without a local
// subscriber are unsubscribed from Redis.
func (s *subscription) Close() {
	s.once.Do(func() {
		b := s.b
		unlock := b.lockShards(s.chans)
		defer unlock()
		var lasts []string
		for _, ch := range s.chans {
			if b.removeLocked(ch, s.s) {
				lasts = append(lasts, b.pubsubName(ch.String()))
			}
		}
		if len(lasts) > 0 && !b.closed.Load() {
			// A failure leaves nothing to undo: a broken connection is
			// replaced, subscribed to the hub's channels only.
			_ = b.psDo(context.Background(), func(c valkey.DedicatedClient) valkey.Completed {
				return c.B().Unsubscribe().Channel(lasts...).Build()
			})
		}
	})
}

// connect opens a Pub/Sub connection and subscribes it to the control
// channel and every channel of the hub. It returns the channel on which the
// connection's loss will be reported.
func (b *Broker) connect(ctx context.Context) (<-chan error, error) {
	dc, _ := b.client.Dedicate()
	lost := dc.SetPubSubHooks(valkey.PubSubHooks{OnMessage: b.onMessage})
	b.lockAll()
	defer b.unlockAll()
	names := []string{b.control}
	for _, ch := range b.hub.Channels() {
		names = append(names, b.pubsubName(ch))
	}
	if err := dc.Do(ctx, dc.B().Subscribe().Channel(names...).Build()).Error(); err != nil {
		dc.Close()
		return nil, err
	}
	b.conn.Store(&psConn{c: dc})
	return lost, nil
}

// run keeps the Pub/Sub connection up until Close: when it is lost, it
// reconnects with capped exponential backoff and jitter, then catches up
// with what was published meanwhile.
func (b *Broker) run(lost <-chan error) {
	defer close(b.done)
	for {
		select {
		case <-b.stop:
			b.closeConn()
			return
		case err := <-lost:
			b.closeConn()
			b.log.Warn("redis broker: Pub/Sub connection lost; reconnecting", "err", err)
		}
		bo := backoff.Backoff{First: 50 * time.Millisecond, Longest: 5 * time.Second, Jitter: backoff.Equal}
		wait := bo.Next()
		lastCause := ""
		for {
			select {
			case <-b.stop:
				return
			case <-time.After(wait):
			}
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			var err error
			lost, err = b.connect(ctx)
			cancel()
			if err == nil {
				break
			}
			wait = bo.Next()
			// The cause is logged once per change (WRONGPASS after a
			// password rotation, a TLS failure, a refused connection), at
			// ERROR when only the operator can fix it.
			if cause := err.Error(); cause != lastCause {
				lastCause = cause
				if hint := operatorHint(err); hint != "" {
					b.log.Error("redis broker: cannot reconnect; "+hint, "err", err)
				} else {
					b.log.Warn("redis broker: reconnect failed; retrying", "err", err, "retry_in", wait)
				}
			}
		}
		b.log.Info("redis broker: Pub/Sub connection restored")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		b.restoreCursorKey(ctx)
		cancel()
		b.catchUp()
	}
}

// operatorHint says what to check when err is one that retrying will not
// cure: credentials or TLS. It is empty otherwise.
func operatorHint(err error) string {
	msg := err.Error()
	var certErr *tls.CertificateVerificationError
	var recErr tls.RecordHeaderError
	switch {
	case strings.Contains(msg, "WRONGPASS"), strings.Contains(msg, "NOAUTH"),
		strings.Contains(msg, "invalid password"), strings.Contains(msg, "invalid username-password"):
		return "Redis refuses the credentials: check the user and password in SLUICE_REDIS_URL"
	case errors.As(err, &certErr), strings.Contains(msg, "x509:"):
		return "the Redis server's TLS certificate is not trusted: check rediss:// and the CA (SSL_CERT_FILE)"
	case errors.As(err, &recErr), strings.Contains(msg, "tls:"):
		return "TLS with Redis failed: use rediss:// only for a TLS port, redis:// otherwise"
	}
	return ""
}

func (b *Broker) closeConn() {
	if pc := b.conn.Swap(nil); pc != nil {
		pc.c.Close() // closes the connection: a subscribed one is not reusable
	}
}

// catchUp starts, for every locally subscribed channel whose position is
// known, a fill of what was published while the connection was down.
func (b *Broker) catchUp() {
	b.tmu.Lock()
	ts := make(map[string]*tracker, len(b.trackers))
	for ch, t := range b.trackers {
		ts[ch] = t
	}
	b.tmu.Unlock()
	for name, t := range ts {
		ch, err := channel.Parse(name)
		if err != nil {
			continue
		}
		t.mu.Lock()
		switch {
		case t.filling:
			t.refill = true
		case t.fanned || t.baseSet:
			t.filling = true
			b.startFill(t, ch)
		}
		t.mu.Unlock()
	}
}

// noteHeads records, for channels with a local subscriber and nothing fanned
// out yet, the lowest head a stream started from: a catch-up after a
// reconnection starts there.
func (b *Broker) noteHeads(chans []channel.Name, heads []event.Position) {
	for i, ch := range chans {
		b.tmu.Lock()
		t := b.trackers[ch.String()]
		b.tmu.Unlock()
		if t == nil {
			continue
		}
		h := heads[i]
		t.mu.Lock()
		if !t.baseSet || h.Epoch != t.base.Epoch || h.Offset < t.base.Offset {
			t.base, t.baseSet = h, true
		}
		t.mu.Unlock()
	}
}

// startFill reads history for t on a goroutine of its own; t is locked and
// t.filling set by the caller.
func (b *Broker) startFill(t *tracker, ch channel.Name) {
	b.fills.Add(1)
	go func() {
		defer b.fills.Done()
		select {
		case b.fillSem <- struct{}{}:
		case <-b.stop:
			return
		}
		defer func() { <-b.fillSem }()
		b.fill(t, ch)
	}()
}

// fill fans out, in order, what history holds after t's position, then the
// live events held meanwhile, and ends t's filling.
func (b *Broker) fill(t *tracker, ch channel.Name) {
	for {
		t.mu.Lock()
		from, known := t.last, t.fanned
		if !known {
			from, known = t.base, t.baseSet
		}
		t.refill = false
		t.mu.Unlock()

		var evs []*event.Event
		if known {
			if testHookFill != nil {
				testHookFill(ch)
			}
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			var err error
			evs, err = b.history(ctx, ch, from)
			cancel()
			if err != nil {
				// History cannot be read now: the held events go out with
				// the gap, which the stream layer sees and reports as a
				// reset; the next reconnection or gap tries again.
				b.log.Warn("redis broker: reading history to fill a gap failed; subscribers get stream-reset",
					"channel", ch.String(), "after", from.String(), "err", err)
			}
		}

		t.mu.Lock()
		for _, ev := range evs {
			b.fanoutLocked(t, ev)
		}
		if t.refill && !b.closed.Load() {
			t.mu.Unlock()
			continue
		}
		for _, ev := range t.held {
			b.fanoutLocked(t, ev)
		}
		clear(t.held)
		t.held = t.held[:0]
		t.filling = false
		t.mu.Unlock()
		return
	}
}

// fanoutLocked fans ev out unless t is already past it, and moves t on.
func (b *Broker) fanoutLocked(t *tracker, ev *event.Event) {
	if t.gone || t.fanned && !ev.Lost && ev.Pos.Epoch == t.last.Epoch && ev.Pos.Offset <= t.last.Offset {
		return
	}
	b.hub.Fanout(ev)
	t.last, t.fanned = ev.Pos, true
}

// onMessage handles one Pub/Sub message, on the connection's reader.
func (b *Broker) onMessage(m valkey.PubSubMessage) {
	if m.Channel == b.control {
		b.onControl(m.Message)
		return
	}
	name, ok := strings.CutPrefix(m.Channel, b.prefix+"ch:")
	if !ok {
		b.drop("unknown Pub/Sub channel", m.Channel, nil)
		return
	}
	ch, err := channel.Parse(name)
	if err != nil {
		b.drop("bad channel name", m.Channel, err)
		return
	}
	ev, err := decodeEnvelope(ch, m.Message)
	if err != nil {
		b.drop("bad event envelope", m.Channel, err)
		return
	}
	b.deliver(ev)
}

// deliver fans ev out, on the connection's reader. A gap before it (same
// epoch, offsets skipped; or a new epoch that does not start at ev) starts
// a fill, which fans out the missed events and then ev; while a fill runs,
// the channel's live events wait for it.
func (b *Broker) deliver(ev *event.Event) {
	b.tmu.Lock()
	t := b.trackers[ev.Channel.String()]
	b.tmu.Unlock()
	if t == nil {
		b.hub.Fanout(ev) // no local subscriber left: reaches nobody
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.filling {
		if len(t.held) < maxHeld {
			t.held = append(t.held, ev)
		} else {
			t.refill = true // history has it; the fill reads again
		}
		return
	}
	if t.fanned {
		same := ev.Pos.Epoch == t.last.Epoch
		if same && ev.Pos.Offset <= t.last.Offset {
			return // a fill delivered it already
		}
		if same && ev.Pos.Offset > t.last.Offset+1 || !same && ev.Pos.Offset > 1 {
			t.filling = true
			t.held = append(t.held, ev)
			b.startFill(t, ev.Channel)
			return
		}
	}
	b.hub.Fanout(ev)
	t.last, t.fanned = ev.Pos, true
}

func (b *Broker) drop(what, ch string, err error) {
	n := b.dropped.Add(1)
	b.log.Warn("redis broker: dropped Pub/Sub message", "reason", what, "pubsub_channel", ch, "err", err, "dropped_total", n)
}

// Dropped returns how many malformed Pub/Sub messages were dropped.
func (b *Broker) Dropped() uint64 { return b.dropped.Load() }

func (b *Broker) onControl(msg string) {
	var c controlMsg
	if err := json.Unmarshal([]byte(msg), &c); err != nil || c.Tenant == "" {
		b.drop("bad control message", b.control, err)
		return
	}
	r := broker.Revocation{Tenant: c.Tenant, User: c.User, At: time.Unix(0, c.At)}
	b.handlers.Notify(r)
}

// decodeEnvelope decodes the message lua/publish.lua publishes:
//
//	"1\n<epoch>\n<offset>\n<publish time, Unix ns>\n<type>\n<data>"
//
// data, last, may hold any byte.
func decodeEnvelope(ch channel.Name, msg string) (*event.Event, error) {
	var f [5]string
	rest := msg
	for i := range f {
		var ok bool
		f[i], rest, ok = strings.Cut(rest, "\n")
		if !ok {
			return nil, errors.New("truncated")
		}
	}
	if f[0] != "1" {
		return nil, fmt.Errorf("unknown version %q", f[0])
	}
	epoch, err1 := strconv.ParseUint(f[1], 10, 64)
	off, err2 := strconv.ParseUint(f[2], 10, 64)
	pub, err3 := strconv.ParseInt(f[3], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil || epoch == 0 || off == 0 {
		return nil, fmt.Errorf("bad position or time: %w", err)
	}
	return &event.Event{
		Channel:   ch,
		Type:      f[4],
		Data:      []byte(rest),
		Pos:       event.Position{Epoch: epoch, Offset: off},
		Published: pub,
	}, nil
}
