package redis

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/sluicehq/sluice/broker/brokertest"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
	"github.com/sluicehq/sluice/internal/redistest"
)

// A gap fill whose history read is slow (here: blocked until the test lets
// it go) holds up its own channel only: live events of other channels keep
// being fanned out meanwhile, and the filled channel's events arrive in
// order once the read completes.
func TestSlowFillStallsOnlyItsChannel(t *testing.T) {
	url := redistest.URL(t, "the Redis broker tests")
	prefix := "sluicetest:" + redistest.Random() + ":"
	admin := redistest.Client(t, url)
	t.Cleanup(func() { redistest.DeleteKeys(t, admin, prefix) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := New(ctx, Config{URL: url, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	slow := channel.MustMake("test", "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "slow")
	fast := channel.MustMake("test", "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "fast")
	var rs, rf brokertest.Recorder
	if _, err := b.Subscribe(ctx, []channel.Name{slow}, &rs); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Subscribe(ctx, []channel.Name{fast}, &rf); err != nil {
		t.Fatal(err)
	}
	pub := func(ch channel.Name) event.Position {
		ps, err := b.Publish(ctx, []event.Message{{Channel: ch, Type: "test.event", Data: []byte(`1`)}})
		if err != nil {
			t.Fatal(err)
		}
		return ps[0]
	}
	first := pub(slow)
	rs.Wait(t, slow, 1)

	release := make(chan struct{})
	testHookFill = func(ch channel.Name) {
		if ch == slow {
			<-release
		}
	}
	t.Cleanup(func() { testHookFill = nil })
	// Events 2 and 3 reach history and this instance; 4 and 5 reach
	// history only (their Pub/Sub messages go elsewhere, as when messages
	// are lost); 6 arrives live, after the gap.
	pub(slow)
	pub(slow)
	rs.Wait(t, slow, 3)
	for range 2 {
		err := admin.Do(ctx, admin.B().Eval().Script(publish.src).Numkeys(2).
			Key(b.metaKey(slow.String()), b.streamKey(slow.String())).
			Arg("1", strconv.FormatInt(time.Now().UnixNano(), 10), "1000", "60000", "0",
				prefix+"nowhere", "test.event", `"history only"`).Build()).Error()
		if err != nil {
			t.Fatal(err)
		}
	}
	b.deliver(&event.Event{Channel: slow, Type: "test.event", Data: []byte(`"late"`),
		Pos: event.Position{Epoch: first.Epoch, Offset: 6}, Published: time.Now().UnixNano()})

	// The fill of slow is blocked; fast's live events flow.
	p := pub(fast)
	if evs := rf.Wait(t, fast, 1); evs[0].Pos != p {
		t.Fatalf("fast got %v, want %v", evs[0].Pos, p)
	}
	if n := len(rs.Events(slow)); n != 3 {
		t.Fatalf("slow got %d events while its fill was blocked, want 3", n)
	}
	close(release)
	// slow: 4 and 5 from history, then the held 6.
	evs := rs.Wait(t, slow, 6)
	for i, ev := range evs[:6] {
		if ev.Pos.Offset != uint64(i+1) {
			t.Fatalf("slow delivery %d at %v, want offset %d", i, ev.Pos, i+1)
		}
	}
}
