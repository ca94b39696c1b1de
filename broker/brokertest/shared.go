package brokertest

import (
	"slices"
	"testing"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/event"
)

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
	checkTickets(t, ticketStore(t, a, true), ticketStore(t, b, true))
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
