package redis_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
)

// On a Redis Cluster an idempotency key is recorded per channel, with the
// fingerprint of that channel's part of the batch: a retry of a batch of
// which one channel's part was applied (what a PartialError reports)
// applies the rest and answers every position; a later batch under the key
// with one channel's part changed is refused.
func TestClusterIdempotentRetryAfterPartial(t *testing.T) {
	b := newBroker(t, clusterOf(t), "sluicetest:"+random()+":", broker.Options{})
	ctx := context.Background()
	ch, err := channel.Make("test", "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "idem-"+random())
	if err != nil {
		t.Fatal(err)
	}
	ch2, err := channel.Make("test", "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "idem2-"+random())
	if err != nil {
		t.Fatal(err)
	}
	m := func(ch channel.Name, data string) event.Message {
		return event.Message{Channel: ch, Type: "test.event", Data: []byte(data)}
	}
	batch := []event.Message{m(ch, "1"), m(ch2, "2"), m(ch, "3")}
	key := "partial-" + random()
	// As if the run of ch2 had failed: only ch's part applied under the key.
	part, err := b.PublishIdempotent(ctx, key, []event.Message{batch[0], batch[2]})
	if err != nil {
		t.Fatal(err)
	}
	all, err := b.PublishIdempotent(ctx, key, batch)
	if err != nil {
		t.Fatalf("retry of the whole batch: %v", err)
	}
	if all[0] != part[0] || all[2] != part[1] || all[1].Offset != 1 {
		t.Fatalf("retry answered %v; want ch's first positions %v and ch2 at offset 1", all, part)
	}
	if again, err := b.PublishIdempotent(ctx, key, batch); err != nil || !slices.Equal(again, all) {
		t.Fatalf("repeat = %v, %v; want %v", again, err, all)
	}
	other := slices.Clone(batch)
	other[1] = m(ch2, "20")
	if ps, err := b.PublishIdempotent(ctx, key, other); !errors.Is(err, broker.ErrIdempotencyConflict) {
		t.Fatalf("key reused with ch2's part changed: %v, %v; want ErrIdempotencyConflict", ps, err)
	}
	hs, err := b.Heads(ctx, []channel.Name{ch, ch2})
	if err != nil || hs[0].Offset != 2 || hs[1].Offset != 1 {
		t.Fatalf("heads = %v, %v; want offsets 2 and 1", hs, err)
	}
}
