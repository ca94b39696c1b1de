// Package broker defines what Sluice needs from the shared state behind its
// streams: publishing into per-channel histories, live fan-out, revocations
// and the cursor key. The memory broker serves one process; the Redis broker
// makes many instances behave as one.
//
// Package broker knows nothing of authentication: a Broker satisfies
// auth.Revocations by its RevokedAt method alone, and a broker whose
// instances share stream tickets (the Redis broker) also implements
// auth.TicketStore (PutTicket, TakeTicket), which the gateway finds by a type
// assertion; with one that does not (the memory broker), tickets live in the
// process (auth.MemoryTickets).
package broker

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"reflect"
	"sync"
	"time"

	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
)

// ErrUnavailable is returned (wrapped) when the broker cannot be reached. The
// HTTP layer answers 503 to it.
var ErrUnavailable = errors.New("broker: unavailable")

// ErrClosed is returned by a broker after Close.
var ErrClosed = errors.New("broker: closed")

// ErrIdempotencyConflict is returned by PublishIdempotent when the key was
// used, within the history TTL, for another batch (see Fingerprint).
var ErrIdempotencyConflict = errors.New("broker: idempotency key already used for another batch")

// PartialError is returned (wrapped or not) by a Publish that applied some
// events of a batch and not others. It happens only on a Redis Cluster, where
// a batch spanning several hash slots is applied per channel: each
// channel's events all or none. Applied[i] reports whether msgs[i] was
// published, and Positions[i] is then its position. A retry with the same
// idempotency key publishes only what was not applied.
type PartialError struct {
	Applied   []bool
	Positions []event.Position
	Err       error // why the others were not
}

// Error says how many events of the batch were published, and why not all.
func (e *PartialError) Error() string {
	n := 0
	for _, a := range e.Applied {
		if a {
			n++
		}
	}
	return fmt.Sprintf("broker: %d of %d events published: %v", n, len(e.Applied), e.Err)
}

// Unwrap returns why the batch was not applied in full.
func (e *PartialError) Unwrap() error { return e.Err }

// Subscriber receives live events.
//
// Deliver is called from the broker's fan-out, possibly concurrently for
// events of different channels, and for each channel in publish order. It
// must not block and must not retain ev beyond its use of the event's
// immutable fields: implementations enqueue into a bounded queue and drop the
// subscriber (not the event, not the others) when it is full.
type Subscriber interface {
	Deliver(ev *event.Event)
}

// Subscription ends a Subscribe. Close is idempotent.
type Subscription interface {
	Close()
}

// Revocation withdraws a user's access to a tenant (User empty: every user of
// the tenant) at a point in time (protocol.md §6).
type Revocation struct {
	Tenant string
	User   string
	At     time.Time
}

// Covers reports whether r applies to user in tenant.
func (r Revocation) Covers(tenant, user string) bool {
	return r.Tenant == tenant && (r.User == "" || r.User == user)
}

// RevokeHandlers holds the functions registered with Broker.OnRevoke, for
// broker implementations. The zero value is ready to use.
type RevokeHandlers struct {
	mu sync.Mutex
	fs []func(Revocation)
}

// Add registers f.
func (h *RevokeHandlers) Add(f func(Revocation)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fs = append(h.fs, f)
}

// Notify calls every registered function with r, in registration order,
// without holding a lock.
func (h *RevokeHandlers) Notify(r Revocation) {
	h.mu.Lock()
	fs := h.fs
	h.mu.Unlock()
	for _, f := range fs {
		f(r)
	}
}

// Broker is the shared state of a deployment. All methods are safe for
// concurrent use.
//
// Revocations belong to the broker because it is what every instance of a
// deployment shares: Revoke records one where every instance reads it
// (RevokedAt, which the periodic recheck of open streams asks) and announces
// it to every instance (OnRevoke, which ends the covered streams at once).
type Broker interface {
	// Publish appends msgs to their channels' histories and fans them out, all
	// or nothing: when it returns nil, every message is in history and has been
	// handed to fan-out, in order per channel; on error none was published,
	// except on a Redis Cluster, where a *PartialError says which were.
	// It returns each message's position, in order.
	Publish(ctx context.Context, msgs []event.Message) ([]event.Position, error)

	// PublishIdempotent is Publish under an idempotency key: the first call
	// with key publishes; a later one with the same key within the history
	// TTL, on any instance of the deployment, publishes nothing and returns
	// the first one's positions (or ErrIdempotencyConflict for another batch:
	// other events, data or order). Concurrent calls with one key publish once. After a
	// *PartialError, a retry publishes what was not applied.
	PublishIdempotent(ctx context.Context, key string, msgs []event.Message) ([]event.Position, error)

	// Subscribe registers s for live events of chans until the Subscription is
	// closed. Events published after Subscribe returns reach s.
	Subscribe(ctx context.Context, chans []channel.Name, s Subscriber) (Subscription, error)

	// Heads returns, per channel, the position of its newest event in the
	// channel's current epoch, or {0, 0} for a channel without history
	// (nothing published, or all of it expired or lost). Asking creates no
	// state: naming channels costs nothing once the request is over.
	Heads(ctx context.Context, chans []channel.Name) ([]event.Position, error)

	// Since returns the events of ch after position after, oldest first, at
	// most limit of them. ok is false when history cannot cover the position:
	// another epoch, events after it trimmed or expired, or a position beyond
	// the head; the caller then resets the client. The position {0, 0} (the
	// head of a channel without history) is covered while the channel has
	// no history, or while history still holds its epoch's first event.
	Since(ctx context.Context, ch channel.Name, after event.Position, limit int) (evs []*event.Event, ok bool, err error)

	// CursorKey returns the key that checks cursors, the same on every
	// instance of the deployment.
	CursorKey(ctx context.Context) ([]byte, error)

	// Revoke records r, in force until r.At plus ttl, and reports it, on
	// every instance, to the functions registered with OnRevoke. Of two
	// revocations of one user (or of one whole tenant) the later, by At,
	// is kept.
	Revoke(ctx context.Context, r Revocation, ttl time.Duration) error

	// OnRevoke registers f to be called for each revocation, on this
	// instance, whichever instance recorded it. f is called from the
	// broker's own goroutines or from Revoke's caller, possibly
	// concurrently with itself; it must not block.
	OnRevoke(f func(Revocation))

	// RevokedAt returns the time of the latest revocation still in force
	// (recorded by Revoke on any instance) that covers user in tenant: one naming that user or one naming the whole
	// tenant. ok is false when there is none. An error means the broker
	// could not answer; callers fail closed. It is auth.Revocations.
	RevokedAt(ctx context.Context, tenant, user string) (at time.Time, ok bool, err error)

	// Ready reports whether the broker is reachable.
	Ready(ctx context.Context) error

	// Close releases the broker. Subscriptions end. Close is idempotent
	// (a second call returns nil); afterwards Publish returns ErrClosed and
	// Subscribe and Ready fail.
	Close() error
}

// IsNil reports whether b is nil, or a nil pointer of a Broker type (a
// *redis.Broker left nil when none was configured, say): an interface
// holding one is not nil, and its first method call would crash.
func IsNil(b Broker) bool {
	if b == nil {
		return true
	}
	v := reflect.ValueOf(b)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

// CursorKeyAdopter is implemented by a broker whose cursor key can change
// while it runs: the Redis broker adopts the key another instance stored
// after Redis lost its data. The gateway calls OnCursorKey once, before
// serving, with a function it must call with each new key; cursors are then
// written under the new key and still read under the earlier ones.
type CursorKeyAdopter interface {
	OnCursorKey(f func(key []byte))
}

// Options are the history settings every broker honours.
type Options struct {
	HistorySize int           // events kept per channel; 0 means 1000
	HistoryTTL  time.Duration // how long they are kept; 0 means 1h
	Now         func() time.Time
}

// WithDefaults returns o with zero fields set to their defaults.
func (o Options) WithDefaults() Options {
	if o.HistorySize <= 0 {
		o.HistorySize = 1000
	}
	if o.HistoryTTL <= 0 {
		o.HistoryTTL = time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// NewEpoch returns a random non-zero epoch for a channel whose history
// starts (again): positions of any earlier history can then never be
// mistaken for positions of the new one.
func NewEpoch() uint64 {
	for {
		if e := mrand.Uint64(); e != 0 {
			return e
		}
	}
}
