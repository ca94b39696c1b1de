package stream

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
)

// conn is one open stream as the rest of the process sees it: a broker
// subscriber with a bounded queue, and a way to end it.
//
// Its writer is first the request's goroutine (Server.serve), which writes
// the opening block. On HTTP/1.1 over TCP the stream is then parked (see
// park_linux.go): the handler returns, no goroutine is left for the stream,
// and pk is set; from then on Deliver and finish hand the stream to the
// poller's writers instead of waking the handler through notify.
type conn struct {
	id       uint64 // registry shard key
	p        auth.Principal
	chans    []channel.Name
	max      int // events pending towards a blocked client before slow-consumer
	maxBytes int // bytes of them

	// What to undo when the stream ends, exactly once, by whoever writes it
	// last (the handler, or the poller once parked): see Server.detach.
	sub     broker.Subscription
	release func()

	mu      sync.Mutex
	q       []*event.Event // pending events (see Deliver for the bound)
	qbytes  int            // their data and type lengths
	spare   []*event.Event // the other buffer of the double buffer
	notify  chan struct{}  // cap 1: events were queued or the stream must end; nil once parked
	ended   atomic.Bool
	cond    event.EndReason // why the stream must end, set before notify
	retryMS int64           // shutting-down: the retry hint to send first
	pk      *parked         // set, under mu, once the stream is parked

	// writing is when the write in progress on the stream's own goroutine
	// began (Unix ns), 0 when none is: that transport's sign that the
	// client is not accepting output.
	writing atomic.Int64
}

// hardFactor bounds the queue of a client that is not blocked: events the
// server has not yet got round to writing (a fan-out, a coalescing window)
// are not the client's debt, but memory is still finite.
const (
	hardFactor = 8
	hardMin    = 1 << 16
)

// blockAfter is how long a write on a stream's own goroutine may be in
// progress before the client counts as not accepting output.
const blockAfter = 100 * time.Millisecond

var _ broker.Subscriber = (*conn)(nil)

var connIDs atomic.Uint64

func newConn(p auth.Principal, chans []channel.Name, max, maxBytes int) *conn {
	return &conn{
		id:       connIDs.Add(1),
		p:        p,
		chans:    chans,
		max:      max,
		maxBytes: maxBytes,
		notify:   make(chan struct{}, 1),
	}
}

// Deliver implements broker.Subscriber. It never blocks.
//
// The slow-consumer bound counts what the client has not accepted: when the
// client is blocked (its socket took less than it was offered, or a write to
// it has been in progress for blockAfter) and the events pending towards it
// reach max, or their bytes maxBytes, the stream is ended as a slow
// consumer and later events are dropped for it alone. Events the server
// itself holds back (write coalescing, a fan-out not yet at this stream) do
// not count: a queue that reaches the bound while the client is not blocked
// is written at once instead, and only hardFactor times the bound ends
// such a stream.
func (c *conn) Deliver(ev *event.Event) {
	c.mu.Lock()
	if c.cond != "" {
		c.mu.Unlock()
		return
	}
	full := c.fullLocked()
	if full && (len(c.q) >= max(hardFactor*c.max, hardMin) || c.blockedLocked()) {
		c.finishLocked(event.EndSlowConsumer, 0)
		c.mu.Unlock()
		return
	}
	wake := len(c.q) == 0
	c.q = append(c.q, ev)
	c.qbytes += len(ev.Data) + len(ev.Type)
	if c.pk != nil {
		if wake || full {
			c.pk.scheduleLocked()
		}
		c.mu.Unlock()
		return
	}
	notify := c.notify
	c.mu.Unlock()
	if wake {
		select {
		case notify <- struct{}{}:
		default:
		}
	}
}

// fullLocked reports whether the pending events reach the bound. c.mu is
// held.
func (c *conn) fullLocked() bool {
	return len(c.q) >= c.max || c.qbytes+c.pendingLocked() >= c.maxBytes
}

// blockedLocked reports whether the client is not accepting output. c.mu
// is held.
func (c *conn) blockedLocked() bool {
	if c.pk != nil {
		return c.pk.blocked
	}
	w := c.writing.Load()
	return w != 0 && time.Now().UnixNano()-w >= int64(blockAfter)
}

// pendingLocked returns the bytes a short write left over (parked streams).
func (c *conn) pendingLocked() int {
	if c.pk != nil {
		return c.pk.pendingLen
	}
	return 0
}

// take swaps out the pending events. The caller hands the slice back with
// give once it has written them, so steady state allocates nothing.
func (c *conn) take() []*event.Event {
	c.mu.Lock()
	q := c.q
	c.q = c.spare[:0]
	c.spare = nil
	c.qbytes = 0
	c.mu.Unlock()
	return q
}

func (c *conn) give(q []*event.Event) {
	clear(q)
	c.mu.Lock()
	if c.spare == nil && cap(q) <= 2*c.max {
		c.spare = q[:0]
	}
	c.mu.Unlock()
}

// finish ends the stream with condition cond, once; later calls are ignored.
func (c *conn) finish(cond event.EndReason, retryMS int64) {
	c.mu.Lock()
	c.finishLocked(cond, retryMS)
	c.mu.Unlock()
}

func (c *conn) finishLocked(cond event.EndReason, retryMS int64) {
	if c.cond != "" {
		return
	}
	c.cond, c.retryMS = cond, retryMS
	c.ended.Store(true)
	if c.pk != nil {
		c.pk.scheduleLocked()
		return
	}
	select {
	case c.notify <- struct{}{}:
	default: // a wake-up is pending already; the loop checks ended first
	}
}

func (c *conn) condition() (event.EndReason, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cond, c.retryMS
}

// registry holds the open streams of a process, sharded to keep registration
// cheap under connection storms.
type registry struct {
	shards [16]struct {
		mu sync.Mutex
		m  map[*conn]struct{}
	}
	n atomic.Int64
}

func newRegistry() *registry {
	r := &registry{}
	for i := range r.shards {
		r.shards[i].m = make(map[*conn]struct{})
	}
	return r
}

func (r *registry) shard(c *conn) int { return int(c.id % uint64(len(r.shards))) }

func (r *registry) add(c *conn) {
	s := &r.shards[r.shard(c)]
	s.mu.Lock()
	s.m[c] = struct{}{}
	s.mu.Unlock()
	r.n.Add(1)
}

func (r *registry) remove(c *conn) {
	s := &r.shards[r.shard(c)]
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
	r.n.Add(-1)
}

// each calls f for every registered stream. f must not block.
func (r *registry) each(f func(*conn)) {
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		for c := range s.m {
			f(c)
		}
		s.mu.Unlock()
	}
}

// snapshot returns the registered streams.
func (r *registry) snapshot() []*conn {
	out := make([]*conn, 0, r.n.Load())
	r.each(func(c *conn) { out = append(out, c) })
	return out
}
