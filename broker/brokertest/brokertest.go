// Package brokertest is the conformance suite of broker.Broker: every broker
// runs it, so that the memory and Redis brokers behave alike.
//
//	func TestConformance(t *testing.T) {
//		brokertest.Run(t, func(t *testing.T, o broker.Options) broker.Broker {
//			b := memory.New(o)
//			t.Cleanup(func() { b.Close() })
//			return b
//		})
//	}
//
// Brokers that share state between instances also run RunShared with pairs
// of instances of one deployment.
//
// Stream tickets are checked only on a broker that implements
// auth.TicketStore (Run skips them otherwise); RunShared requires it, since a
// ticket issued by one instance must be redeemable on the others.
package brokertest

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
)

// NewBroker returns a new, empty broker with the given options. It closes
// the broker at the end of the test (t.Cleanup); Close may have been called
// by the suite already.
type NewBroker func(t *testing.T, o broker.Options) broker.Broker

// NewPair returns two instances of one deployment (sharing history, tickets,
// revocations and the cursor key), closed at the end of the test.
type NewPair func(t *testing.T, o broker.Options) (a, b broker.Broker)

// Timeout bounds every wait of the suite.
var Timeout = 10 * time.Second

// Run runs the conformance suite against the brokers newBroker returns.
func Run(t *testing.T, newBroker NewBroker) {
	tests := []struct {
		name string
		f    func(*testing.T, NewBroker)
	}{
		{"PublishOffsets", testPublishOffsets},
		{"Heads", testHeads},
		{"HeadsAfterTrim", testHeadsAfterTrim},
		{"Idempotent", testIdempotent},
		{"IdempotentConcurrent", testIdempotentConcurrent},
		{"IdempotentOtherBatch", testIdempotentOtherBatch},
		{"SubscribeLive", testSubscribeLive},
		{"SubscribeSeveralChannels", testSubscribeSeveral},
		{"SubscriptionClose", testSubscriptionClose},
		{"SubscribeChurn", testSubscribeChurn},
		{"Since", testSince},
		{"SinceTrimmed", testSinceTrimmed},
		{"SinceExpired", testSinceExpired},
		{"BatchAcrossChannels", testBatch},
		{"ConcurrentPublishers", testConcurrentPublishers},
		{"Tickets", testTickets},
		{"Revocations", testRevocations},
		{"RevocationExpires", testRevocationExpires},
		{"CursorKey", testCursorKey},
		{"Ready", testReady},
		{"Closed", testClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.f(t, newBroker) })
	}
}

// RunShared runs the tests of a deployment of several instances against the
// pairs newPair returns. A nil newPair skips them (single-process brokers).
func RunShared(t *testing.T, newPair NewPair) {
	if newPair == nil {
		t.Skip("broker has a single instance")
	}
	tests := []struct {
		name string
		f    func(*testing.T, NewPair)
	}{
		{"PublishReachesOtherInstance", testSharedPublish},
		{"HistoryShared", testSharedHistory},
		{"ConcurrentPublishers", testSharedConcurrent},
		{"SubscribeChurn", testSharedChurn},
		{"TicketsShared", testSharedTickets},
		{"RevocationsShared", testSharedRevocations},
		{"CursorKeyShared", testSharedCursorKey},
		{"IdempotentShared", testSharedIdempotent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.f(t, newPair) })
	}
}

// Helpers.

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), Timeout)
	t.Cleanup(cancel)
	return c
}

// tenant returns a new random tenant id (canonical UUID v4).
func tenant() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

var seq atomic.Uint64

// newChannel returns a channel no other test uses.
func newChannel(t *testing.T) channel.Name {
	t.Helper()
	ch, err := channel.Make("test", tenant(), fmt.Sprintf("r%d", seq.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func msg(ch channel.Name, i int) event.Message {
	return event.Message{Channel: ch, Type: "test.event", Data: fmt.Appendf(nil, `{"i":%d}`, i)}
}

func publish(t *testing.T, b broker.Broker, msgs ...event.Message) []event.Position {
	t.Helper()
	ps, err := b.Publish(ctx(t), msgs)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if len(ps) != len(msgs) {
		t.Fatalf("Publish returned %d positions for %d messages", len(ps), len(msgs))
	}
	return ps
}

func publishN(t *testing.T, b broker.Broker, ch channel.Name, from, n int) []event.Position {
	t.Helper()
	var out []event.Position
	for i := range n {
		out = append(out, publish(t, b, msg(ch, from+i))...)
	}
	return out
}

func heads(t *testing.T, b broker.Broker, chans ...channel.Name) []event.Position {
	t.Helper()
	ps, err := b.Heads(ctx(t), chans)
	if err != nil {
		t.Fatalf("Heads: %v", err)
	}
	if len(ps) != len(chans) {
		t.Fatalf("Heads returned %d positions for %d channels", len(ps), len(chans))
	}
	return ps
}

func subscribe(t *testing.T, b broker.Broker, s broker.Subscriber, chans ...channel.Name) broker.Subscription {
	t.Helper()
	sub, err := b.Subscribe(ctx(t), chans, s)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	t.Cleanup(sub.Close)
	return sub
}

// eventually polls cond until it holds or Timeout passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Recorder is a broker.Subscriber that keeps what it receives.
type Recorder struct {
	mu  sync.Mutex
	evs []*event.Event
}

// Deliver implements broker.Subscriber.
func (r *Recorder) Deliver(ev *event.Event) {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
}

// Events returns a copy of what r received, optionally only of chans.
func (r *Recorder) Events(chans ...channel.Name) []*event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(chans) == 0 {
		return slices.Clone(r.evs)
	}
	var out []*event.Event
	for _, ev := range r.evs {
		if slices.Contains(chans, ev.Channel) {
			out = append(out, ev)
		}
	}
	return out
}

// Wait waits until r has received at least n events of ch and returns them.
func (r *Recorder) Wait(t *testing.T, ch channel.Name, n int) []*event.Event {
	t.Helper()
	var evs []*event.Event
	eventually(t, fmt.Sprintf("%d events of %s", n, ch), func() bool {
		evs = r.Events(ch)
		return len(evs) >= n
	})
	return evs
}

// checkContiguous checks that evs are events of ch at offsets from, from+1, …
// of one epoch.
func checkContiguous(t *testing.T, evs []*event.Event, ch channel.Name, epoch, from uint64) {
	t.Helper()
	for i, ev := range evs {
		want := event.Position{Epoch: epoch, Offset: from + uint64(i)}
		if ev.Channel != ch || ev.Pos != want {
			t.Fatalf("event %d: %s at %v, want %s at %v", i, ev.Channel, ev.Pos, ch, want)
		}
	}
}

// Clock is a settable time source for broker.Options.Now.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock set to t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock forward by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
