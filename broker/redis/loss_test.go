package redis_test

import (
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/broker/brokertest"
	redisbroker "github.com/sluicehq/sluice/broker/redis"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
	"github.com/sluicehq/sluice/internal/testutil"
)

// behindProxy returns a broker whose connections go through a proxy the
// test can cut, and the proxy.
func behindProxy(t *testing.T, prefix string) (*redisbroker.Broker, *proxy) {
	u, err := url.Parse(testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	px := newProxy(t, u.Host)
	u.Host = px.addr
	q := u.Query()
	q.Set("dial_timeout", "200ms")
	u.RawQuery = q.Encode()
	return newBroker(t, u.String(), prefix, broker.Options{}), px
}

// Redis loses its data (a restart without persistence) while an instance's
// Pub/Sub connection is down, and another instance publishes into the new,
// empty history meanwhile. When the instance is back, its subscribers must
// learn that the old epoch's events are gone (a Lost notice) and then get
// every event of the new epoch from its start, although nothing more is
// published: no acknowledged event may be missed silently.
func TestHistoryLossWhileDisconnected(t *testing.T) {
	prefix := newPrefix(t)
	b, px := behindProxy(t, prefix)
	other := newBroker(t, testURL(t), prefix, broker.Options{})
	ch := channel.MustMake("test", "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "loss-disconnected")
	var r brokertest.Recorder
	if _, err := b.Subscribe(t.Context(), []channel.Name{ch}, &r); err != nil {
		t.Fatal(err)
	}
	old := publish(t, other, ch)
	r.Wait(t, ch, 1)

	px.down()
	testutil.Eventually(t, 15*time.Second, "b to see Redis gone", func() bool { return errors.Is(b.Ready(t.Context()), broker.ErrUnavailable) })
	deleteKeys(t, admin(t), prefix+"m:") // Redis restarted empty
	deleteKeys(t, admin(t), prefix+"s:")
	var fresh []event.Position
	for range 3 {
		fresh = append(fresh, publish(t, other, ch))
	}
	if fresh[0].Epoch == old.Epoch || fresh[0].Offset != 1 {
		t.Fatalf("first publish after the loss at %v, want offset 1 of a new epoch", fresh[0])
	}
	px.up()

	evs := r.Wait(t, ch, 5)
	want := []struct {
		pos  event.Position
		lost bool
	}{
		{old, false},
		{event.Position{Epoch: fresh[0].Epoch}, true},
		{fresh[0], false}, {fresh[1], false}, {fresh[2], false},
	}
	for i, w := range want {
		if evs[i].Pos != w.pos || evs[i].Lost != w.lost {
			t.Fatalf("delivery %d: %v lost=%v, want %v lost=%v", i, evs[i].Pos, evs[i].Lost, w.pos, w.lost)
		}
	}
}

// Events published by another instance while an instance's Pub/Sub
// connection is down reach its subscribers from history once it is back,
// even on a channel where nothing is published afterwards, and even when
// nothing had reached the subscriber before the outage.
func TestCatchUpQuietChannel(t *testing.T) {
	prefix := newPrefix(t)
	b, px := behindProxy(t, prefix)
	other := newBroker(t, testURL(t), prefix, broker.Options{})
	ch := channel.MustMake("test", "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "quiet")
	first := publish(t, other, ch)
	var r brokertest.Recorder
	if _, err := b.Subscribe(t.Context(), []channel.Name{ch}, &r); err != nil {
		t.Fatal(err)
	}
	// What a stream does right after subscribing: read where it starts.
	if hs, err := b.Heads(t.Context(), []channel.Name{ch}); err != nil || hs[0] != first {
		t.Fatalf("Heads = %v, %v; want %v", hs, err, first)
	}
	px.down()
	testutil.Eventually(t, 15*time.Second, "b to see Redis gone", func() bool { return errors.Is(b.Ready(t.Context()), broker.ErrUnavailable) })
	var missed []event.Position
	for range 3 {
		missed = append(missed, publish(t, other, ch))
	}
	px.up()
	evs := r.Wait(t, ch, 3)
	for i, ev := range evs {
		if ev.Pos != missed[i] || ev.Lost {
			t.Fatalf("delivery %d: %v lost=%v, want %v", i, ev.Pos, ev.Lost, missed[i])
		}
	}
}
