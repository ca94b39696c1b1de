package memory

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/broker/brokertest"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
)

func newBroker(t *testing.T, o broker.Options) broker.Broker {
	b := New(o)
	t.Cleanup(func() { b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	brokertest.Run(t, newBroker)
}

func TestConformanceShared(t *testing.T) {
	brokertest.RunShared(t, nil) // one process: nothing to share
}

const tenant = "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"

func publishOne(t *testing.T, b *Broker, ch channel.Name) event.Position {
	t.Helper()
	ps, err := b.Publish(context.Background(), []event.Message{{Channel: ch, Type: "test.event", Data: []byte(`{}`)}})
	if err != nil {
		t.Fatal(err)
	}
	return ps[0]
}

func head(t *testing.T, b *Broker, ch channel.Name) event.Position {
	t.Helper()
	hs, err := b.Heads(context.Background(), []channel.Name{ch})
	if err != nil {
		t.Fatal(err)
	}
	return hs[0]
}

type nop struct{}

func (nop) Deliver(*event.Event) {}

// The janitor forgets channels whose events have all expired and that have
// no local subscriber; such a channel starts a new epoch.
func TestSweepForgetsIdleChannels(t *testing.T) {
	c := brokertest.NewClock(time.Now())
	b := New(broker.Options{HistoryTTL: time.Minute, Now: c.Now})
	defer b.Close()
	idle := channel.MustMake("test", tenant, "idle")
	watched := channel.MustMake("test", tenant, "watched")
	recent := channel.MustMake("test", tenant, "recent")
	sub, err := b.Subscribe(context.Background(), []channel.Name{watched}, nop{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	pi, pw := publishOne(t, b, idle), publishOne(t, b, watched)
	c.Add(50 * time.Second)
	pr := publishOne(t, b, recent)
	c.Add(20 * time.Second) // idle and watched expired, recent not
	b.sweep()

	if h := head(t, b, idle); h.Epoch == pi.Epoch || h.Offset != 0 {
		t.Errorf("idle channel after sweep: head %v, want a new epoch (old %v)", h, pi)
	}
	if h := head(t, b, watched); h != pw {
		t.Errorf("subscribed channel after sweep: head %v, want %v", h, pw)
	}
	if h := head(t, b, recent); h != pr {
		t.Errorf("channel with a live event after sweep: head %v, want %v", h, pr)
	}
	if _, ok, _ := b.Since(context.Background(), idle, pi, 10); ok {
		t.Error("Since resumed a forgotten epoch")
	}
	if p := publishOne(t, b, idle); p.Epoch == pi.Epoch || p.Offset != 1 {
		t.Errorf("publish after sweep at %v, want offset 1 of a new epoch", p)
	}
}

// known reports whether b holds state for ch, without touching it.
func known(b *Broker, ch channel.Name) bool {
	sh := b.shard(ch.String())
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.chans[ch.String()] != nil
}

// A channel that was only read (a stream opened, nothing published) keeps
// its epoch for a whole HistoryTTL after the last reader left, so a cursor
// at offset 0 resumes without a reset.
func TestSweepKeepsRecentlyReadChannels(t *testing.T) {
	c := brokertest.NewClock(time.Now())
	b := New(broker.Options{HistoryTTL: time.Minute, Now: c.Now})
	defer b.Close()
	ch := channel.MustMake("test", tenant, "read-only")
	h := head(t, b, ch)
	c.Add(30 * time.Second)
	b.sweep()
	if _, ok, _ := b.Since(context.Background(), ch, h, 10); !ok {
		t.Fatal("a cursor at offset 0 of a recently read channel was not resumable")
	}
	c.Add(31 * time.Second)
	b.sweep()
	if known(b, ch) {
		t.Fatal("a channel idle for a whole HistoryTTL was kept")
	}
}

// The janitor goroutine runs the sweep by itself.
func TestJanitorRuns(t *testing.T) {
	c := brokertest.NewClock(time.Now())
	b := New(broker.Options{HistoryTTL: 2 * time.Second, Now: c.Now}) // sweeps every second
	defer b.Close()
	ch := channel.MustMake("test", tenant, "janitor")
	p := publishOne(t, b, ch)
	if _, err := b.PublishIdempotent(context.Background(), "k", []event.Message{{Channel: ch, Type: "t", Data: []byte("{}")}}); err != nil {
		t.Fatal(err)
	}
	c.Add(time.Hour)
	deadline := time.Now().Add(10 * time.Second)
	for known(b, ch) { // (Heads would count as a use and keep it)
		if time.Now().After(deadline) {
			t.Fatal("janitor did not forget the idle channel")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for head(t, b, ch).Epoch == p.Epoch {
		if time.Now().After(deadline) {
			t.Fatal("janitor did not forget the idle channel")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.imu.Lock()
	n := len(b.done)
	b.imu.Unlock()
	if n != 0 {
		t.Errorf("%d expired idempotency keys kept", n)
	}
}

// step of a history scenario: publish n events, or let time pass.
type step struct {
	publish int
	advance time.Duration
}

// TestHistoryRing drives the ring through growth, wrap-around, trimming and
// expiry, and checks Since from every position against a model.
func TestHistoryRing(t *testing.T) {
	tests := []struct {
		name  string
		size  int
		steps []step
	}{
		{"size 1", 1, []step{{publish: 5}}},
		{"below first capacity", 10, []step{{publish: 7}}},
		{"exactly first capacity", 16, []step{{publish: 16}}},
		{"grow past first capacity", 100, []step{{publish: 40}}},
		{"grow to size then wrap", 17, []step{{publish: 17}, {publish: 1}, {publish: 30}}},
		{"wrap many times", 50, []step{{publish: 1003}}},
		{"default size", 0, []step{{publish: 1500}}},
		{"expire part then grow from offset start", 64, []step{
			{publish: 10}, {advance: 30 * time.Second}, {publish: 10}, {advance: 31 * time.Second},
			{publish: 1},  // expires the first 10: ring starts mid-slice
			{publish: 40}, // grows while start != 0
		}},
		{"expire all then publish", 8, []step{{publish: 20}, {advance: 2 * time.Minute}, {publish: 3}}},
		{"expire part after wrap", 8, []step{
			{publish: 13}, {advance: 40 * time.Second}, {publish: 3}, {advance: 30 * time.Second}, {publish: 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := brokertest.NewClock(time.Now())
			b := New(broker.Options{HistorySize: tt.size, HistoryTTL: time.Minute, Now: c.Now})
			defer b.Close()
			size := b.opts.HistorySize
			ch := channel.MustMake("test", tenant, "ring")
			var published []time.Time // by offset-1
			var epoch uint64
			for _, s := range tt.steps {
				c.Add(s.advance)
				for range s.publish {
					p := publishOne(t, b, ch)
					epoch = p.Epoch
					published = append(published, c.Now())
					if p.Offset != uint64(len(published)) {
						t.Fatalf("offset %d, want %d", p.Offset, len(published))
					}
				}
				checkRing(t, b, ch, epoch, size, published, c.Now())
			}
		})
	}
}

// checkRing checks Since from every position against the model: retained
// are the last size events not older than the TTL.
func checkRing(t *testing.T, b *Broker, ch channel.Name, epoch uint64, size int, published []time.Time, now time.Time) {
	t.Helper()
	headOff := uint64(len(published))
	first := headOff + 1 // oldest retained offset
	for off := headOff; off >= 1 && int(headOff-off) < size && !published[off-1].Before(now.Add(-time.Minute)); off-- {
		first = off
	}
	for after := uint64(0); after <= headOff+1; after++ {
		evs, ok, err := b.Since(context.Background(), ch, event.Position{Epoch: epoch, Offset: after}, size+10)
		if err != nil {
			t.Fatal(err)
		}
		wantOK := after <= headOff && after+1 >= first
		if ok != wantOK {
			t.Fatalf("Since(after %d) ok = %v, want %v (head %d, oldest retained %d)", after, ok, wantOK, headOff, first)
		}
		if !ok {
			continue
		}
		if uint64(len(evs)) != headOff-after {
			t.Fatalf("Since(after %d) = %d events, want %d", after, len(evs), headOff-after)
		}
		for i, ev := range evs {
			if ev.Pos.Offset != after+1+uint64(i) {
				t.Fatalf("Since(after %d)[%d] at offset %d", after, i, ev.Pos.Offset)
			}
		}
	}
	h := b.lock(ch.String(), false)
	defer h.mu.Unlock()
	if len(h.ring) > size || h.n != int(headOff-first+1) {
		t.Fatalf("ring len %d holding %d, history size %d, want %d held", len(h.ring), h.n, size, headOff-first+1)
	}
}

func TestSinceLimit(t *testing.T) {
	b := New(broker.Options{HistorySize: 20})
	defer b.Close()
	ch := channel.MustMake("test", tenant, "limit")
	for range 30 {
		publishOne(t, b, ch)
	}
	for _, tt := range []struct{ after, limit, n int }{{10, 5, 5}, {10, 100, 20}, {25, 0, 0}, {29, 1, 1}} {
		t.Run(fmt.Sprint(tt), func(t *testing.T) {
			evs, ok, err := b.Since(context.Background(), ch, event.Position{Epoch: head(t, b, ch).Epoch, Offset: uint64(tt.after)}, tt.limit)
			if err != nil || !ok || len(evs) != tt.n {
				t.Fatalf("got %d events, %v, %v; want %d", len(evs), ok, err, tt.n)
			}
		})
	}
}
