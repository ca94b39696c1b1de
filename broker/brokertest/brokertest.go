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
package brokertest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/auth"
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

// Tests.

func testPublishOffsets(t *testing.T, nb NewBroker) {
	b := nb(t, broker.Options{})
	ch := newChannel(t)
	ps := publishN(t, b, ch, 0, 3)
	ps = append(ps, publish(t, b, msg(ch, 3), msg(ch, 4), msg(ch, 5))...)
	if ps[0].Epoch == 0 {
		t.Fatal("epoch 0")
	}
	for i, p := range ps {
		if want := (event.Position{Epoch: ps[0].Epoch, Offset: uint64(i + 1)}); p != want {
			t.Fatalf("position %d = %v, want %v", i, p, want)
		}
	}
	other := publish(t, b, msg(newChannel(t), 0))[0]
	if other.Offset != 1 {
		t.Fatalf("first offset of another channel = %d, want 1", other.Offset)
	}
}

func testHeads(t *testing.T, nb NewBroker) {
	b := nb(t, broker.Options{})
	ch, ch2 := newChannel(t), newChannel(t)
	// A channel nothing was published to has no history and holds no state:
	// its head is {0, 0}, however often it is asked for.
	h := heads(t, b, ch, ch2)
	if h[0] != (event.Position{}) || h[1] != (event.Position{}) {
		t.Fatalf("heads of fresh channels = %v, want {0, 0}", h)
	}
	if again := heads(t, b, ch); again[0] != h[0] {
		t.Fatalf("heads moved without publish: %v then %v", h[0], again[0])
	}
	p := publish(t, b, msg(ch, 1))[0]
	if p.Epoch == 0 || p.Offset != 1 {
		t.Fatalf("first event at %v, want offset 1 of an epoch", p)
	}
	publish(t, b, msg(ch, 2))
	h2 := heads(t, b, ch, ch2)
	if h2[0] != (event.Position{Epoch: p.Epoch, Offset: 2}) || h2[1] != h[1] {
		t.Fatalf("heads = %v, want [%v-2 {0 0}]", h2, p.Epoch)
	}
	// A cursor at the head {0, 0} of a channel that had no history resumes
	// from its first event.
	evs, ok, err := b.Since(ctx(t), ch, event.Position{}, 10)
	if err != nil || !ok || len(evs) != 2 {
		t.Fatalf("Since({0, 0}) = %d events, %v, %v; want 2, true", len(evs), ok, err)
	}
	checkContiguous(t, evs, ch, p.Epoch, 1)
	if evs, ok, err := b.Since(ctx(t), ch2, event.Position{}, 10); err != nil || !ok || len(evs) != 0 {
		t.Fatalf("Since({0, 0}) of a channel without history = %d events, %v, %v; want 0, true", len(evs), ok, err)
	}
}

// testHeadsAfterTrim: a cursor {0, 0} does not resume a channel whose first
// events are gone.
func testHeadsAfterTrim(t *testing.T, nb NewBroker) {
	b := nb(t, broker.Options{HistorySize: 3})
	ch := newChannel(t)
	publishN(t, b, ch, 0, 5)
	if _, ok, err := b.Since(ctx(t), ch, event.Position{}, 10); err != nil || ok {
		t.Fatalf("Since({0, 0}) after the first events were trimmed = %v, %v; want false", ok, err)
	}
}

// testIdempotent: a Publish repeated with the same idempotency key publishes
// nothing again and returns the first one's positions; a key reused for
// another batch is refused.
func testIdempotent(t *testing.T, nb NewBroker) {
	b := nb(t, broker.Options{})
	ch, ch2 := newChannel(t), newChannel(t)
	var r Recorder
	subscribe(t, b, &r, ch, ch2)
	key := "batch-" + tenant()
	batch := []event.Message{msg(ch, 1), msg(ch2, 2), msg(ch, 3)}
	first, err := b.PublishIdempotent(ctx(t), key, batch)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		again, err := b.PublishIdempotent(ctx(t), key, batch)
		if err != nil || !slices.Equal(again, first) {
			t.Fatalf("repeat = %v, %v; want %v", again, err, first)
		}
	}
	if _, err := b.PublishIdempotent(ctx(t), key, batch[:2]); !errors.Is(err, broker.ErrIdempotencyConflict) {
		t.Fatalf("key reused for another batch: err = %v, want ErrIdempotencyConflict", err)
	}
	other, err := b.PublishIdempotent(ctx(t), key+"-2", batch[:1])
	if err != nil || other[0].Offset != first[2].Offset+1 {
		t.Fatalf("another key = %v, %v; want the next offset", other, err)
	}
	evs := r.Wait(t, ch, 3)
	checkContiguous(t, evs, ch, first[0].Epoch, 1)
	if h := heads(t, b, ch, ch2); h[0].Offset != 3 || h[1].Offset != 1 {
		t.Fatalf("heads after repeats = %v, want offsets 3 and 1", h)
	}
}

// testIdempotentConcurrent: concurrent Publishes with one key publish once.
func testIdempotentConcurrent(t *testing.T, nb NewBroker) {
	b := nb(t, broker.Options{})
	ch := newChannel(t)
	key := "race-" + tenant()
	var wg sync.WaitGroup
	res := make([][]event.Position, 8)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ps, err := b.PublishIdempotent(t.Context(), key, []event.Message{msg(ch, 1), msg(ch, 2)})
			if err != nil {
				t.Errorf("publish %d: %v", i, err)
			}
			res[i] = ps
		}()
	}
	wg.Wait()
	for i := range res {
		if !slices.Equal(res[i], res[0]) {
			t.Fatalf("publish %d got %v, publish 0 %v", i, res[i], res[0])
		}
	}
	if h := heads(t, b, ch); h[0].Offset != 2 {
		t.Fatalf("head = %v, want offset 2: the batch was published more than once", h[0])
	}
}

func testSubscribeLive(t *testing.T, nb NewBroker) {
	b := nb(t, broker.Options{})
	ch, other := newChannel(t), newChannel(t)
	var r Recorder
	subscribe(t, b, &r, ch)
	// Published right after Subscribe returns: must arrive.
	ps := publishN(t, b, ch, 0, 5)
	publishN(t, b, other, 0, 3)
	evs := r.Wait(t, ch, 5)
	checkContiguous(t, evs, ch, ps[0].Epoch, 1)
	for i, ev := range evs {
		if ev.Type != "test.event" || string(ev.Data) != fmt.Sprintf(`{"i":%d}`, i) || ev.Published == 0 {
			t.Fatalf("event %d = %q %q published %d", i, ev.Type, ev.Data, ev.Published)
		}
	}
	// A second subscriber of a channel that already has one.
	var r2 Recorder
	subscribe(t, b, &r2, ch)
	publish(t, b, msg(ch, 5))
	r2.Wait(t, ch, 1)
	r.Wait(t, ch, 6)
	if n := len(r.Events(other)); n != 0 {
		t.Fatalf("received %d events of a channel not subscribed", n)
	}
}

func testSubscribeSeveral(t *testing.T, nb NewBroker) {
	b := nb(t, broker.Options{})
	c1, c2 := newChannel(t), newChannel(t)
	var r Recorder
	subscribe(t, b, &r, c1, c2)
	var p1, p2 []event.Position
	for i := range 4 {
		p1 = append(p1, publish(t, b, msg(c1, i))...)
		p2 = append(p2, publish(t, b, msg(c2, i))...)
	}
	checkContiguous(t, r.Wait(t, c1, 4), c1, p1[0].Epoch, 1)
	checkContiguous(t, r.Wait(t, c2, 4), c2, p2[0].Epoch, 1)
}

func testSubscriptionClose(t *testing.T, nb NewBroker) {
	b := nb(t, broker.Options{})
	ch := newChannel(t)
	var closed, open Recorder
	sub := subscribe(t, b, &closed, ch)
	subscribe(t, b, &open, ch)
	publish(t, b, msg(ch, 0))
	closed.Wait(t, ch, 1)
	sub.Close()
	sub.Close() // idempotent
	publish(t, b, msg(ch, 1))
	// Fan-out hands an event to every subscriber at once: once the open one
	// has it, the closed one would have too.
	open.Wait(t, ch, 2)
	if n := len(closed.Events()); n != 1 {
		t.Fatalf("closed subscription received %d events, want 1", n)
	}
	// The last subscriber leaving and a new one arriving.
	var again Recorder
	open2 := subscribe(t, b, &again, ch)
	publish(t, b, msg(ch, 2))
	again.Wait(t, ch, 1)
	open2.Close()
}

// Subscriptions coming and going concurrently on one channel, each one the
// first or the last local subscriber in turn: each receives what is
// published after its Subscribe returns.
func testSubscribeChurn(t *testing.T, nb NewBroker) {
	b := nb(t, broker.Options{})
	churn(t, b, b)
}

// churn subscribes on sb and publishes on pb.
func churn(t *testing.T, pb, sb broker.Broker) {
	ch := newChannel(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				r := &Recorder{}
				sub, err := sb.Subscribe(t.Context(), []channel.Name{ch}, r)
				if err != nil {
					errs <- err
					return
				}
				ps, err := pb.Publish(t.Context(), []event.Message{msg(ch, g*100+i)})
				if err != nil {
					errs <- err
					return
				}
				deadline := time.Now().Add(Timeout)
				for !slices.ContainsFunc(r.Events(), func(ev *event.Event) bool { return ev.Pos == ps[0] }) {
					if time.Now().After(deadline) {
						errs <- fmt.Errorf("event %v published after Subscribe returned never arrived", ps[0])
						sub.Close()
						return
					}
					time.Sleep(time.Millisecond)
				}
				sub.Close()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func testSince(t *testing.T, nb NewBroker) {
	b := nb(t, broker.Options{HistorySize: 100})
	ch := newChannel(t)
	ps := publishN(t, b, ch, 0, 10)
	e := ps[0].Epoch
	tests := []struct {
		name  string
		after event.Position
		limit int
		from  uint64 // first offset expected
		n     int
		ok    bool
	}{
		{"from start", event.Position{Epoch: e}, 100, 1, 10, true},
		{"middle", event.Position{Epoch: e, Offset: 5}, 100, 6, 5, true},
		{"at head", event.Position{Epoch: e, Offset: 10}, 100, 0, 0, true},
		{"limit", event.Position{Epoch: e, Offset: 2}, 3, 3, 3, true},
		{"limit 1", event.Position{Epoch: e, Offset: 9}, 1, 10, 1, true},
		{"other epoch", event.Position{Epoch: e + 1, Offset: 5}, 100, 0, 0, false},
		{"beyond head", event.Position{Epoch: e, Offset: 11}, 100, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, ok, err := b.Since(ctx(t), ch, tt.after, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.ok || len(evs) != tt.n {
				t.Fatalf("Since(%v, %d) = %d events, ok %v; want %d, %v", tt.after, tt.limit, len(evs), ok, tt.n, tt.ok)
			}
			checkContiguous(t, evs, ch, e, tt.from)
			for _, ev := range evs {
				if want := fmt.Sprintf(`{"i":%d}`, ev.Pos.Offset-1); string(ev.Data) != want || ev.Type != "test.event" {
					t.Fatalf("event %v = %q %q, want data %s", ev.Pos, ev.Type, ev.Data, want)
				}
			}
		})
	}
	t.Run("unknown channel", func(t *testing.T) {
		_, ok, err := b.Since(ctx(t), newChannel(t), event.Position{Epoch: e, Offset: 1}, 10)
		if err != nil || ok {
			t.Fatalf("Since on a channel without history = %v, %v; want false", ok, err)
		}
		_, ok, err = b.Since(ctx(t), newChannel(t), event.Position{Epoch: e}, 10)
		if err != nil || ok {
			t.Fatalf("Since on a channel without history = %v, %v; want false", ok, err)
		}
	})
}

func testSinceTrimmed(t *testing.T, nb NewBroker) {
	b := nb(t, broker.Options{HistorySize: 5})
	ch := newChannel(t)
	ps := publishN(t, b, ch, 0, 8) // keeps 4..8
	e := ps[0].Epoch
	for _, tt := range []struct {
		after uint64
		n     int
		ok    bool
	}{{0, 0, false}, {2, 0, false}, {3, 5, true}, {6, 2, true}, {8, 0, true}} {
		evs, ok, err := b.Since(ctx(t), ch, event.Position{Epoch: e, Offset: tt.after}, 100)
		if err != nil || ok != tt.ok || len(evs) != tt.n {
			t.Fatalf("Since(after %d) = %d events, %v, %v; want %d, %v", tt.after, len(evs), ok, err, tt.n, tt.ok)
		}
		checkContiguous(t, evs, ch, e, tt.after+1)
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

func testSinceExpired(t *testing.T, nb NewBroker) {
	c := NewClock(time.Now())
	b := nb(t, broker.Options{HistoryTTL: time.Minute, Now: c.Now})
	ch := newChannel(t)
	ps := publishN(t, b, ch, 0, 2)
	c.Add(2 * time.Minute)
	publish(t, b, msg(ch, 2))
	e := ps[0].Epoch
	for _, tt := range []struct {
		after uint64
		n     int
		ok    bool
	}{{0, 0, false}, {1, 0, false}, {2, 1, true}, {3, 0, true}} {
		evs, ok, err := b.Since(ctx(t), ch, event.Position{Epoch: e, Offset: tt.after}, 100)
		if err != nil || ok != tt.ok || len(evs) != tt.n {
			t.Fatalf("Since(after %d) = %d events, %v, %v; want %d, %v", tt.after, len(evs), ok, err, tt.n, tt.ok)
		}
		checkContiguous(t, evs, ch, e, tt.after+1)
	}
}

func testBatch(t *testing.T, nb NewBroker) {
	b := nb(t, broker.Options{})
	c1, c2 := newChannel(t), newChannel(t)
	var r Recorder
	subscribe(t, b, &r, c1, c2)
	ps := publish(t, b, msg(c1, 0), msg(c2, 0), msg(c1, 1), msg(c2, 1), msg(c1, 2))
	want := []uint64{1, 1, 2, 2, 3}
	for i, p := range ps {
		if p.Offset != want[i] {
			t.Fatalf("batch positions %v, want offsets %v", ps, want)
		}
	}
	if ps[0].Epoch != ps[2].Epoch || ps[1].Epoch != ps[3].Epoch {
		t.Fatalf("epochs differ within a channel: %v", ps)
	}
	checkContiguous(t, r.Wait(t, c1, 3), c1, ps[0].Epoch, 1)
	checkContiguous(t, r.Wait(t, c2, 2), c2, ps[1].Epoch, 1)
	if _, err := b.Publish(ctx(t), nil); err != nil {
		t.Fatalf("empty Publish: %v", err)
	}

	// A large batch, interleaving three channels (one of them new), keeps
	// every channel's offsets contiguous and in batch order.
	c3 := newChannel(t)
	subscribe(t, b, &r, c3)
	chans := []channel.Name{c1, c2, c3}
	next := []uint64{4, 3, 1}
	var big []event.Message
	var wantCh []int
	for i := range 700 {
		k := (i * 7 / 3) % 3
		big = append(big, msg(chans[k], i))
		wantCh = append(wantCh, k)
	}
	ps = publish(t, b, big...)
	for i, p := range ps {
		k := wantCh[i]
		if p.Offset != next[k] {
			t.Fatalf("event %d of the large batch at offset %d, want %d", i, p.Offset, next[k])
		}
		next[k]++
	}
	checkContiguous(t, r.Wait(t, c3, int(next[2]-1)), c3, ps[slices.Index(wantCh, 2)].Epoch, 1)
	checkContiguous(t, r.Wait(t, c1, int(next[0]-1)), c1, ps[0].Epoch, 1)
}

// concurrent publishes n events from each of pubs goroutines, spread over
// the brokers, and checks that every subscriber receives them all in offset
// order without a gap.
func concurrent(t *testing.T, pubs []broker.Broker, subs []broker.Broker) {
	ch := newChannel(t)
	const perPublisher = 50
	const publishers = 8
	rs := make([]*Recorder, 2*len(subs))
	for i := range rs {
		rs[i] = &Recorder{}
		subscribe(t, subs[i%len(subs)], rs[i], ch)
	}
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		wg.Go(func() {
			b := pubs[p%len(pubs)]
			for i := range perPublisher {
				if _, err := b.Publish(t.Context(), []event.Message{msg(ch, p*perPublisher+i)}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	epoch := heads(t, pubs[0], ch)[0].Epoch
	for _, r := range rs {
		checkContiguous(t, r.Wait(t, ch, publishers*perPublisher), ch, epoch, 1)
	}
}

func testConcurrentPublishers(t *testing.T, nb NewBroker) {
	b := nb(t, broker.Options{})
	concurrent(t, []broker.Broker{b}, []broker.Broker{b})
}

func principal() auth.Principal {
	now := time.Now().Truncate(time.Millisecond)
	return auth.Principal{
		User:       "user-1",
		Tenant:     tenant(),
		Kind:       auth.KindTicket,
		Expiry:     now.Add(time.Hour),
		IssuedAt:   now,
		Credential: "Bearer x.y.z",
	}
}

func samePrincipal(a, b auth.Principal) bool {
	return a.User == b.User && a.Tenant == b.Tenant && a.Kind == b.Kind && a.Expiry.Equal(b.Expiry) &&
		a.IssuedAt.Equal(b.IssuedAt) && a.Credential == b.Credential
}

func testTickets(t *testing.T, nb NewBroker) {
	b := nb(t, broker.Options{})
	checkTickets(t, b, b)
	t.Run("expired", func(t *testing.T) {
		if err := b.PutTicket(ctx(t), "t-short", principal(), 5*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		// Waiting for the ticket's lifetime to pass, not for another goroutine.
		time.Sleep(50 * time.Millisecond)
		if _, ok, err := b.TakeTicket(ctx(t), "t-short"); err != nil || ok {
			t.Fatalf("TakeTicket after expiry = %v, %v; want false", ok, err)
		}
	})
}

// checkTickets puts a ticket on a and takes it on b, once.
func checkTickets(t *testing.T, a, b broker.Broker) {
	t.Helper()
	p := principal()
	id := "t-" + tenant()
	if err := a.PutTicket(ctx(t), id, p, 30*time.Second); err != nil {
		t.Fatalf("PutTicket: %v", err)
	}
	got, ok, err := b.TakeTicket(ctx(t), id)
	if err != nil || !ok || !samePrincipal(got, p) {
		t.Fatalf("TakeTicket = %#v, %v, %v; want %#v", got, ok, err, p)
	}
	for _, x := range []broker.Broker{a, b} {
		if _, ok, err := x.TakeTicket(ctx(t), id); err != nil || ok {
			t.Fatalf("second TakeTicket = %v, %v; want false", ok, err)
		}
	}
	if _, ok, err := b.TakeTicket(ctx(t), "unknown"); err != nil || ok {
		t.Fatalf("TakeTicket(unknown) = %v, %v; want false", ok, err)
	}
}

// revocations records what OnRevoke reports.
type revocations struct {
	mu  sync.Mutex
	got []broker.Revocation
}

func (r *revocations) add(rv broker.Revocation) {
	r.mu.Lock()
	r.got = append(r.got, rv)
	r.mu.Unlock()
}

func (r *revocations) wait(t *testing.T, want broker.Revocation) {
	t.Helper()
	eventually(t, fmt.Sprintf("OnRevoke(%v)", want), func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, g := range r.got {
			if g.Tenant == want.Tenant && g.User == want.User && g.At.Equal(want.At) {
				return true
			}
		}
		return false
	})
}

func revokedAt(t *testing.T, b broker.Broker, tenant, user string) (time.Time, bool) {
	t.Helper()
	at, ok, err := b.RevokedAt(ctx(t), tenant, user)
	if err != nil {
		t.Fatalf("RevokedAt: %v", err)
	}
	return at, ok
}

func testRevocations(t *testing.T, nb NewBroker) {
	b := nb(t, broker.Options{})
	checkRevocations(t, b, b)
}

// checkRevocations revokes on a and checks on b.
func checkRevocations(t *testing.T, a, b broker.Broker) {
	t.Helper()
	var seenA, seenB revocations
	a.OnRevoke(seenA.add)
	if b != a {
		b.OnRevoke(seenB.add)
	}
	ten := tenant()
	t0 := time.Now().Truncate(time.Second)
	t1, t2 := t0.Add(time.Second), t0.Add(2*time.Second)
	if _, ok := revokedAt(t, b, ten, "u1"); ok {
		t.Fatal("revoked before any revocation")
	}
	check := func(user string, want time.Time) {
		t.Helper()
		at, ok := revokedAt(t, b, ten, user)
		if want.IsZero() != !ok || !at.Equal(want) {
			t.Fatalf("RevokedAt(%s) = %v, %v; want %v", user, at, ok, want)
		}
	}

	r := broker.Revocation{Tenant: ten, User: "u1", At: t1}
	if err := a.Revoke(ctx(t), r, time.Hour); err != nil {
		t.Fatal(err)
	}
	seenA.wait(t, r)
	if b != a {
		seenB.wait(t, r)
	}
	check("u1", t1)
	check("u2", time.Time{})

	// The tenant, later: it covers every user and wins over u1's.
	r = broker.Revocation{Tenant: ten, At: t2}
	if err := a.Revoke(ctx(t), r, time.Hour); err != nil {
		t.Fatal(err)
	}
	seenA.wait(t, r)
	check("u1", t2)
	check("u2", t2)

	// An earlier revocation does not hide a later one.
	if err := a.Revoke(ctx(t), broker.Revocation{Tenant: ten, User: "u1", At: t0}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := a.Revoke(ctx(t), broker.Revocation{Tenant: ten, At: t0}, time.Hour); err != nil {
		t.Fatal(err)
	}
	check("u1", t2)
	check("u2", t2)
	if _, ok := revokedAt(t, b, tenant(), "u1"); ok {
		t.Fatal("revocation leaked into another tenant")
	}
}

func testRevocationExpires(t *testing.T, nb NewBroker) {
	b := nb(t, broker.Options{})
	ten := tenant()
	if err := b.Revoke(ctx(t), broker.Revocation{Tenant: ten, User: "u", At: time.Now()}, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the revocation to expire", func() bool {
		_, ok := revokedAt(t, b, ten, "u")
		return !ok
	})
}

func testCursorKey(t *testing.T, nb NewBroker) {
	b := nb(t, broker.Options{})
	k1, err := b.CursorKey(ctx(t))
	if err != nil || len(k1) < 16 {
		t.Fatalf("CursorKey = %x, %v; want at least 16 bytes", k1, err)
	}
	k2, err := b.CursorKey(ctx(t))
	if err != nil || string(k1) != string(k2) {
		t.Fatalf("CursorKey changed: %x then %x (%v)", k1, k2, err)
	}
}

func testReady(t *testing.T, nb NewBroker) {
	b := nb(t, broker.Options{})
	if err := b.Ready(ctx(t)); err != nil {
		t.Fatalf("Ready: %v", err)
	}
}

func testClosed(t *testing.T, nb NewBroker) {
	b := nb(t, broker.Options{})
	ch := newChannel(t)
	var r Recorder
	subscribe(t, b, &r, ch)
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := b.Publish(ctx(t), []event.Message{msg(ch, 0)}); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("Publish after Close = %v, want ErrClosed", err)
	}
	if _, err := b.Subscribe(ctx(t), []channel.Name{ch}, &r); err == nil {
		t.Fatal("Subscribe after Close succeeded")
	}
	if err := b.Ready(ctx(t)); err == nil {
		t.Fatal("Ready after Close succeeded")
	}
}

// Shared tests.

func testSharedPublish(t *testing.T, np NewPair) {
	a, b := np(t, broker.Options{})
	ch := newChannel(t)
	var ra, rb Recorder
	subscribe(t, a, &ra, ch)
	subscribe(t, b, &rb, ch)
	ps := publish(t, a, msg(ch, 0))
	ps = append(ps, publish(t, b, msg(ch, 1))...)
	checkContiguous(t, rb.Wait(t, ch, 2), ch, ps[0].Epoch, 1)
	checkContiguous(t, ra.Wait(t, ch, 2), ch, ps[0].Epoch, 1)
}

func testSharedHistory(t *testing.T, np NewPair) {
	a, b := np(t, broker.Options{})
	ch := newChannel(t)
	h := heads(t, b, ch)[0] // {0, 0}: no history yet
	ps := publishN(t, a, ch, 0, 3)
	ha, hb := heads(t, a, ch)[0], heads(t, b, ch)[0]
	if ha != hb || ha != ps[2] {
		t.Fatalf("heads a %v, b %v, last publish %v", ha, hb, ps[2])
	}
	evs, ok, err := b.Since(ctx(t), ch, h, 10)
	if err != nil || !ok {
		t.Fatalf("Since on b = %v, %v", ok, err)
	}
	checkContiguous(t, evs, ch, ps[0].Epoch, 1)
	if len(evs) != 3 {
		t.Fatalf("Since on b = %d events, want 3", len(evs))
	}
}

func testSharedConcurrent(t *testing.T, np NewPair) {
	a, b := np(t, broker.Options{})
	concurrent(t, []broker.Broker{a, b}, []broker.Broker{a, b})
}

func testSharedChurn(t *testing.T, np NewPair) {
	a, b := np(t, broker.Options{})
	churn(t, a, b)
}

func testSharedTickets(t *testing.T, np NewPair) {
	a, b := np(t, broker.Options{})
	checkTickets(t, a, b)
}

func testSharedRevocations(t *testing.T, np NewPair) {
	a, b := np(t, broker.Options{})
	checkRevocations(t, a, b)
}

func testSharedCursorKey(t *testing.T, np NewPair) {
	a, b := np(t, broker.Options{})
	ka, err := a.CursorKey(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	kb, err := b.CursorKey(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(ka) == 0 || string(ka) != string(kb) {
		t.Fatalf("cursor keys differ: %x and %x", ka, kb)
	}
}

// testSharedIdempotent: a retry on another instance with the same key
// publishes nothing again.
func testSharedIdempotent(t *testing.T, np NewPair) {
	a, b := np(t, broker.Options{})
	ch := newChannel(t)
	key := "shared-" + tenant()
	first, err := a.PublishIdempotent(ctx(t), key, []event.Message{msg(ch, 1)})
	if err != nil {
		t.Fatal(err)
	}
	again, err := b.PublishIdempotent(ctx(t), key, []event.Message{msg(ch, 1)})
	if err != nil || !slices.Equal(again, first) {
		t.Fatalf("retry on the other instance = %v, %v; want %v", again, err, first)
	}
	if h := heads(t, b, ch); h[0].Offset != 1 {
		t.Fatalf("head = %v, want offset 1", h[0])
	}
}
