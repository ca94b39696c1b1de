package brokertest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
)

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

// idempotentBatch publishes a batch across two channels, ch and ch2 (events
// 1 and 3 of ch, 2 of ch2), under a new idempotency key, on a new broker
// whose Recorder is subscribed to both channels; first is the positions.
func idempotentBatch(t *testing.T, nb NewBroker) (b broker.Broker, r *Recorder, ch, ch2 channel.Name, key string, batch []event.Message, first []event.Position) {
	t.Helper()
	b = nb(t, broker.Options{})
	ch, ch2 = newChannel(t), newChannel(t)
	r = new(Recorder)
	subscribe(t, b, r, ch, ch2)
	key = "batch-" + tenant()
	batch = []event.Message{msg(ch, 1), msg(ch2, 2), msg(ch, 3)}
	first, err := b.PublishIdempotent(ctx(t), key, batch)
	if err != nil {
		t.Fatal(err)
	}
	return b, r, ch, ch2, key, batch, first
}

// testIdempotent: a Publish repeated with the same idempotency key publishes
// nothing again and returns the first one's positions; a key reused for
// another batch is refused.
func testIdempotent(t *testing.T, nb NewBroker) {
	b, r, ch, ch2, key, batch, first := idempotentBatch(t, nb)
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

// testIdempotentOtherBatch: a key reused for another batch of the same
// length is refused and publishes nothing, whatever differs: an event's data
// or type, one channel's part of the batch, the order, or only where one
// event's data ends and the next one's begins. The first batch repeated
// still answers its positions.
func testIdempotentOtherBatch(t *testing.T, nb NewBroker) {
	b, r, ch, ch2, key, batch, first := idempotentBatch(t, nb)
	change := func(i int, f func(*event.Message)) []event.Message {
		c := slices.Clone(batch)
		f(&c[i])
		return c
	}
	others := map[string][]event.Message{
		"data":               change(0, func(m *event.Message) { m.Data = []byte(`{"i":10}`) }),
		"type":               change(2, func(m *event.Message) { m.Type = "test.other" }),
		"one channel's part": change(1, func(m *event.Message) { m.Data = []byte(`{"i":20}`) }),
		"order":              {batch[2], batch[1], batch[0]},
	}
	for name, other := range others {
		if ps, err := b.PublishIdempotent(ctx(t), key, other); !errors.Is(err, broker.ErrIdempotencyConflict) {
			t.Fatalf("key reused for a batch with another %s: %v, %v; want ErrIdempotencyConflict", name, ps, err)
		}
	}
	again, err := b.PublishIdempotent(ctx(t), key, batch)
	if err != nil || !slices.Equal(again, first) {
		t.Fatalf("repeat after conflicts = %v, %v; want %v", again, err, first)
	}

	// The same bytes of data, cut elsewhere: another batch.
	key2 := "cut-" + tenant()
	cut := func(a, b string) []event.Message {
		return []event.Message{
			{Channel: ch, Type: "test.event", Data: []byte(a)},
			{Channel: ch, Type: "test.event", Data: []byte(b)},
		}
	}
	if _, err := b.PublishIdempotent(ctx(t), key2, cut(`1`, `23`)); err != nil {
		t.Fatal(err)
	}
	if ps, err := b.PublishIdempotent(ctx(t), key2, cut(`12`, `3`)); !errors.Is(err, broker.ErrIdempotencyConflict) {
		t.Fatalf("key reused with the data cut elsewhere: %v, %v; want ErrIdempotencyConflict", ps, err)
	}

	// Nothing of the refused batches was published or delivered.
	if h := heads(t, b, ch, ch2); h[0].Offset != 4 || h[1].Offset != 1 {
		t.Fatalf("heads = %v, want offsets 4 and 1", h)
	}
	publish(t, b, msg(ch, 99), msg(ch2, 99))
	evs := r.Wait(t, ch, 5)
	evs2 := r.Wait(t, ch2, 2)
	var got []string
	for _, ev := range append(evs, evs2...) {
		got = append(got, string(ev.Data))
	}
	want := []string{`{"i":1}`, `{"i":3}`, `1`, `23`, `{"i":99}`, `{"i":2}`, `{"i":99}`}
	if !slices.Equal(got, want) {
		t.Fatalf("delivered %q, want %q", got, want)
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
