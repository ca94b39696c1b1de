package brokertest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
)

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
