// Package memory is the embedded broker: histories, fan-out and revocations
// held in this process. It is Sluice's default and needs no other service; a
// restart loses history, which clients see as stream-reset. It keeps no
// stream tickets: with one process, auth.MemoryTickets does.
package memory

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/broker/hub"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
)

var _ broker.Broker = (*Broker)(nil)

const shards = 64

// Broker is the in-memory broker. Create it with New.
type Broker struct {
	opts   broker.Options
	hub    *hub.Hub
	key    []byte
	seed   maphash.Seed
	shards [shards]chanShard
	closed atomic.Bool
	stop   chan struct{}
	exited chan struct{} // closed when the janitor has stopped

	revs     auth.MemoryRevocations // Now: opts.Now
	handlers broker.RevokeHandlers

	// imu serialises idempotent publishes (checking the key, publishing and
	// recording it are one step) and guards done.
	imu  sync.Mutex
	done map[string]idemEntry
}

// idemEntry is what an idempotency key published, until expires, and the
// fingerprint of the batch it names.
type idemEntry struct {
	pos     []event.Position
	sum     [sha256.Size]byte
	expires time.Time
}

type chanShard struct {
	mu    sync.Mutex
	chans map[string]*history
}

// history is one channel's state: its epoch, head and a ring of recent
// events. mu also orders fan-out, so subscribers see publish order.
type history struct {
	mu    sync.Mutex
	dead  bool  // removed by the janitor; look the channel up again
	used  int64 // last publish, head read or sweep that saw a subscriber (Unix ns)
	epoch uint64
	head  uint64
	ring  []*event.Event // capacity HistorySize; ring[start] is the oldest
	start int
	n     int
}

// New returns a memory broker and starts its janitor, which forgets idle
// channels and expired idempotency keys. Close stops it.
func New(o broker.Options) *Broker {
	b := &Broker{
		opts:   o.WithDefaults(),
		hub:    hub.New(),
		seed:   maphash.MakeSeed(),
		stop:   make(chan struct{}),
		exited: make(chan struct{}),
		done:   make(map[string]idemEntry),
	}
	b.revs.Now = b.opts.Now
	b.key = make([]byte, 32)
	_, _ = rand.Read(b.key)
	for i := range b.shards {
		b.shards[i].chans = make(map[string]*history)
	}
	go b.janitor()
	return b
}

func (b *Broker) shard(ch string) *chanShard {
	return &b.shards[maphash.String(b.seed, ch)%shards]
}

// lock returns ch's history, created if need be, locked.
func (b *Broker) lock(ch string, create bool) *history {
	sh := b.shard(ch)
	for {
		sh.mu.Lock()
		h := sh.chans[ch]
		if h == nil {
			if !create {
				sh.mu.Unlock()
				return nil
			}
			h = &history{epoch: broker.NewEpoch(), ring: make([]*event.Event, 0, min(b.opts.HistorySize, 16))}
			sh.chans[ch] = h
		}
		sh.mu.Unlock()
		h.mu.Lock()
		if !h.dead {
			return h
		}
		h.mu.Unlock()
	}
}

// PublishIdempotent implements broker.Broker. A repeat is told from another
// batch under the same key by the batch's broker.Fingerprint.
func (b *Broker) PublishIdempotent(ctx context.Context, key string, msgs []event.Message) ([]event.Position, error) {
	sum := broker.Fingerprint(msgs)
	b.imu.Lock()
	defer b.imu.Unlock()
	now := b.opts.Now()
	if e, ok := b.done[key]; ok && now.Before(e.expires) {
		if e.sum != sum {
			return nil, broker.ErrIdempotencyConflict
		}
		return slices.Clone(e.pos), nil
	}
	pos, err := b.Publish(ctx, msgs)
	if err != nil {
		return nil, err
	}
	b.done[key] = idemEntry{pos: slices.Clone(pos), sum: sum, expires: now.Add(b.opts.HistoryTTL)}
	return pos, nil
}

// Publish implements broker.Broker.
func (b *Broker) Publish(ctx context.Context, msgs []event.Message) ([]event.Position, error) {
	if b.closed.Load() {
		return nil, broker.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := b.opts.Now()
	out := make([]event.Position, len(msgs))
	for i, m := range msgs {
		h := b.lock(m.Channel.String(), true)
		h.expire(now.Add(-b.opts.HistoryTTL).UnixNano())
		h.used = now.UnixNano()
		h.head++
		ev := &event.Event{
			Channel:   m.Channel,
			Type:      m.Type,
			Data:      m.Data,
			Pos:       event.Position{Epoch: h.epoch, Offset: h.head},
			Published: now.UnixNano(),
		}
		h.push(ev, b.opts.HistorySize)
		b.hub.Fanout(ev)
		h.mu.Unlock()
		out[i] = ev.Pos
	}
	return out, nil
}

func (h *history) push(ev *event.Event, size int) {
	switch {
	case h.n == len(h.ring) && h.n < size: // full at its current length: grow
		if h.start != 0 || cap(h.ring) == len(h.ring) { // grow, never past size
			lin := make([]*event.Event, h.n, min(max(2*h.n, 16), size))
			copy(lin, h.ring[h.start:])
			copy(lin[len(h.ring)-h.start:], h.ring[:h.start])
			h.ring, h.start = lin, 0
		}
		h.ring = append(h.ring, ev)
		h.n++
	case h.n < len(h.ring):
		h.ring[(h.start+h.n)%len(h.ring)] = ev
		h.n++
	default: // full at the history size: the oldest goes
		h.ring[h.start] = ev
		h.start = (h.start + 1) % len(h.ring)
	}
}

func (h *history) at(i int) *event.Event { return h.ring[(h.start+i)%len(h.ring)] }

// expire drops events published before cutoff (Unix nanoseconds).
func (h *history) expire(cutoff int64) {
	for h.n > 0 && h.at(0).Published < cutoff {
		h.ring[h.start] = nil
		h.start = (h.start + 1) % len(h.ring)
		h.n--
	}
	if h.n == 0 {
		h.start = 0
		h.ring = h.ring[:0]
	}
}

// Subscribe implements broker.Broker.
func (b *Broker) Subscribe(_ context.Context, chans []channel.Name, s broker.Subscriber) (broker.Subscription, error) {
	if b.closed.Load() {
		return nil, broker.ErrClosed
	}
	for _, ch := range chans {
		b.hub.Add(ch, s)
	}
	return &subscription{b: b, chans: chans, s: s}, nil
}

type subscription struct {
	b     *Broker
	chans []channel.Name
	s     broker.Subscriber
	once  sync.Once
}

func (s *subscription) Close() {
	s.once.Do(func() {
		for _, ch := range s.chans {
			s.b.hub.Remove(ch, s.s)
		}
	})
}

// Heads implements broker.Broker.
func (b *Broker) Heads(_ context.Context, chans []channel.Name) ([]event.Position, error) {
	if b.closed.Load() {
		return nil, broker.ErrClosed
	}
	out := make([]event.Position, len(chans))
	for i, ch := range chans {
		// A channel without history stays without state: its head is
		// {0, 0}, which Since covers once events arrive.
		h := b.lock(ch.String(), false)
		if h == nil {
			continue
		}
		h.used = b.opts.Now().UnixNano()
		out[i] = event.Position{Epoch: h.epoch, Offset: h.head}
		h.mu.Unlock()
	}
	return out, nil
}

// Since implements broker.Broker.
func (b *Broker) Since(_ context.Context, ch channel.Name, after event.Position, limit int) ([]*event.Event, bool, error) {
	if b.closed.Load() {
		return nil, false, broker.ErrClosed
	}
	h := b.lock(ch.String(), false)
	if h == nil {
		return nil, after == event.Position{}, nil
	}
	defer h.mu.Unlock()
	h.expire(b.opts.Now().Add(-b.opts.HistoryTTL).UnixNano())
	if after == (event.Position{}) {
		after.Epoch = h.epoch // from the first event, if history holds it
	}
	if after.Epoch != h.epoch || after.Offset > h.head {
		return nil, false, nil
	}
	missing := int(h.head - after.Offset) // events after the position
	if missing > h.n {
		return nil, false, nil // some were trimmed or expired
	}
	if missing > limit {
		missing = limit
	}
	out := make([]*event.Event, missing)
	first := h.n - int(h.head-after.Offset)
	for i := range out {
		out[i] = h.at(first + i)
	}
	return out, true, nil
}

// CursorKey implements broker.Broker: a random key per process, so cursors of
// an earlier run read as unreadable (and history is gone anyway).
func (b *Broker) CursorKey(context.Context) ([]byte, error) { return b.key, nil }

// Revoke implements broker.Broker. Revocations no longer in force are
// forgotten as new ones are recorded.
func (b *Broker) Revoke(_ context.Context, r broker.Revocation, ttl time.Duration) error {
	b.revs.Record(r.Tenant, r.User, r.At, r.At.Add(ttl))
	b.handlers.Notify(r)
	return nil
}

// OnRevoke implements broker.Broker.
func (b *Broker) OnRevoke(f func(broker.Revocation)) { b.handlers.Add(f) }

// RevokedAt implements broker.Broker (and so auth.Revocations).
func (b *Broker) RevokedAt(ctx context.Context, tenant, user string) (time.Time, bool, error) {
	return b.revs.RevokedAt(ctx, tenant, user)
}

// Ready implements broker.Broker: always ready until closed.
func (b *Broker) Ready(context.Context) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	return nil
}

// Close implements broker.Broker.
func (b *Broker) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	close(b.stop)
	<-b.exited
	return nil
}

// janitor periodically forgets what has expired: channels idle for a whole
// HistoryTTL (no retained event, no local subscriber) and idempotency keys.
func (b *Broker) janitor() {
	defer close(b.exited)
	every := min(b.opts.HistoryTTL/2, time.Minute)
	t := time.NewTicker(max(every, time.Second))
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.sweep()
		}
	}
}

func (b *Broker) sweep() {
	now := b.opts.Now()
	cutoff := now.Add(-b.opts.HistoryTTL).UnixNano()
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		for name, h := range sh.chans {
			h.mu.Lock()
			h.expire(cutoff)
			// A channel is forgotten only once it has held nothing and had
			// no reader for a whole HistoryTTL: a cursor taken before that
			// (even at offset 0, nothing published) still resumes.
			if ch, err := channel.Parse(name); err == nil && b.hub.Has(ch) {
				h.used = now.UnixNano()
			} else if h.n == 0 && h.used < cutoff {
				h.dead = true
				delete(sh.chans, name)
			}
			h.mu.Unlock()
		}
		sh.mu.Unlock()
	}
	b.imu.Lock()
	for k, e := range b.done {
		if !now.Before(e.expires) {
			delete(b.done, k)
		}
	}
	b.imu.Unlock()
}
