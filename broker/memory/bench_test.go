package memory

import (
	"context"
	"strconv"
	"testing"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
)

// benchBatch is a batch of n events of one channel with a subscriber.
func benchBatch(b *testing.B, n int) (*Broker, []event.Message) {
	br := New(broker.Options{})
	b.Cleanup(func() { br.Close() })
	ch, err := channel.Make("bench", tenant, "r1")
	if err != nil {
		b.Fatal(err)
	}
	sub, err := br.Subscribe(context.Background(), []channel.Name{ch}, nop{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(sub.Close)
	msgs := make([]event.Message, n)
	for i := range msgs {
		msgs[i] = event.Message{Channel: ch, Type: "scan.progress", Data: []byte(`{"percent":` + strconv.Itoa(i) + `}`)}
	}
	return br, msgs
}

// BenchmarkPublish is the hot path: a publish without an idempotency key.
func BenchmarkPublish(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			br, msgs := benchBatch(b, n)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := br.Publish(context.Background(), msgs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPublishIdempotent publishes under a new key each time.
func BenchmarkPublishIdempotent(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			br, msgs := benchBatch(b, n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if _, err := br.PublishIdempotent(context.Background(), "k"+strconv.Itoa(i), msgs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
