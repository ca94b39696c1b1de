package redis_test

import (
	"strconv"
	"testing"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/broker/brokertest"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
)

// A batch that Redis refuses part-way (here: one channel's position key
// holds a value of another type) is applied all or nothing on one Redis:
// none of its events is in history or reaches a subscriber.
func TestBatchAllOrNothing(t *testing.T) {
	prefix := newPrefix(t)
	b := newBroker(t, testURL(t), prefix, broker.Options{})
	a := channel.MustMake("test", "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "atomic-a")
	bad := channel.MustMake("test", "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "atomic-bad")
	var r brokertest.Recorder
	if _, err := b.Subscribe(t.Context(), []channel.Name{a}, &r); err != nil {
		t.Fatal(err)
	}
	c := admin(t)
	if err := c.Do(t.Context(), c.B().Set().Key(prefix+"m:{"+bad.String()+"}").Value("not a hash").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	var msgs []event.Message
	for i := range 300 {
		ch := a
		if i >= 290 {
			ch = bad
		}
		msgs = append(msgs, event.Message{Channel: ch, Type: "test.event", Data: []byte(strconv.Itoa(i))})
	}
	if _, err := b.Publish(t.Context(), msgs); err == nil {
		t.Fatal("a batch Redis refuses part-way was acknowledged")
	}
	if hs, err := b.Heads(t.Context(), []channel.Name{a}); err != nil || hs[0].Offset != 0 {
		t.Fatalf("after the refused batch, head of %s = %v, %v; want nothing published", a, hs, err)
	}
	// Nothing reached the subscriber either: the next event it gets is the
	// next one published.
	p := publish(t, b, a)
	evs := r.Wait(t, a, 1)
	if evs[0].Pos != p {
		t.Fatalf("first live event at %v, want %v (the refused batch leaked)", evs[0].Pos, p)
	}
}
