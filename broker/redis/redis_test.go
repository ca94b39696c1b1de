package redis_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/broker/brokertest"
	redisbroker "github.com/sluicehq/sluice/broker/redis"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
	"github.com/sluicehq/sluice/internal/redistest"
	"github.com/sluicehq/sluice/internal/testutil"
)

// testURL returns the Redis of the tests, or skips.
func testURL(tb testing.TB) string { return redistest.URL(tb, "the Redis broker tests") }

func random() string { return redistest.Random() }

// admin returns a plain client on the tests' database.
func admin(tb testing.TB) valkey.Client { return redistest.Client(tb, testURL(tb)) }

func deleteKeys(tb testing.TB, c valkey.Client, prefix string) { redistest.DeleteKeys(tb, c, prefix) }

// newPrefix returns a key prefix of the test's own, deleted at cleanup.
func newPrefix(tb testing.TB) string {
	p := "sluicetest:" + random() + ":"
	c := admin(tb)
	tb.Cleanup(func() { deleteKeys(tb, c, p) })
	return p
}

// withClientName returns the tests' URL naming the connections name.
func withClientName(tb testing.TB, name string) string {
	u, err := url.Parse(testURL(tb))
	if err != nil {
		tb.Fatal(err)
	}
	q := u.Query()
	q.Set("client_name", name)
	u.RawQuery = q.Encode()
	return u.String()
}

func newBroker(tb testing.TB, url, prefix string, o broker.Options) *redisbroker.Broker {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := redisbroker.New(ctx, redisbroker.Config{URL: url, Prefix: prefix, Options: o})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	url := testURL(t)
	brokertest.Run(t, func(t *testing.T, o broker.Options) broker.Broker {
		return newBroker(t, url, newPrefix(t), o)
	})
}

func TestConformanceShared(t *testing.T) {
	url := testURL(t)
	brokertest.RunShared(t, func(t *testing.T, o broker.Options) (broker.Broker, broker.Broker) {
		p := newPrefix(t)
		return newBroker(t, url, p, o), newBroker(t, url, p, o)
	})
}

// Brokers with different prefixes on one Redis share nothing.
func TestPrefixIsolates(t *testing.T) {
	url := testURL(t)
	a := newBroker(t, url, newPrefix(t), broker.Options{})
	b := newBroker(t, url, newPrefix(t), broker.Options{})
	ch := channel.MustMake("test", "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "iso")
	var r brokertest.Recorder
	if _, err := b.Subscribe(t.Context(), []channel.Name{ch}, &r); err != nil {
		t.Fatal(err)
	}
	pa := publish(t, a, ch)
	hb, err := b.Heads(t.Context(), []channel.Name{ch})
	if err != nil {
		t.Fatal(err)
	}
	if hb[0].Offset != 0 || hb[0].Epoch == pa.Epoch {
		t.Fatalf("b sees a's channel: head %v, a published at %v", hb[0], pa)
	}
	// b's own publish is the first event it receives.
	pb := publish(t, b, ch)
	evs := r.Wait(t, ch, 1)
	if evs[0].Pos != pb {
		t.Fatalf("b received %v first, want its own %v", evs[0].Pos, pb)
	}
	ka, _ := a.CursorKey(t.Context())
	kb, _ := b.CursorKey(t.Context())
	if string(ka) == string(kb) {
		t.Fatal("cursor keys shared across prefixes")
	}
}

func publish(t *testing.T, b broker.Broker, ch channel.Name) event.Position {
	t.Helper()
	ps, err := b.Publish(t.Context(), []event.Message{{Channel: ch, Type: "test.event", Data: []byte(`{"x":1}`)}})
	if err != nil {
		t.Fatal(err)
	}
	return ps[0]
}

func TestNewFailsFast(t *testing.T) {
	testURL(t)
	for _, tt := range []struct{ name, url string }{
		{"bad scheme", "http://127.0.0.1:6379/0"},
		{"bad db", "redis://127.0.0.1:6379/x"},
		{"unreachable", "redis://127.0.0.1:1/0?dial_timeout=200ms"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			b, err := redisbroker.New(ctx, redisbroker.Config{URL: tt.url})
			if err == nil {
				b.Close()
				t.Fatal("New succeeded")
			}
			if !strings.HasPrefix(err.Error(), "redis broker: ") {
				t.Fatalf("error %q does not say where it comes from", err)
			}
		})
	}
}

// When the history is lost (FLUSHDB, expiry, a new Redis), old cursors are
// refused and the channel starts a new epoch.
func TestHistoryLoss(t *testing.T) {
	url := testURL(t)
	prefix := newPrefix(t)
	b := newBroker(t, url, prefix, broker.Options{})
	ch := channel.MustMake("test", "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "loss")
	var r brokertest.Recorder
	if _, err := b.Subscribe(t.Context(), []channel.Name{ch}, &r); err != nil {
		t.Fatal(err)
	}
	p1 := publish(t, b, ch)
	publish(t, b, ch)
	deleteKeys(t, admin(t), prefix+"m:")
	deleteKeys(t, admin(t), prefix+"s:")

	if _, ok, err := b.Since(t.Context(), ch, p1, 10); err != nil || ok {
		t.Fatalf("Since(old cursor) after loss = %v, %v; want false", ok, err)
	}
	p3 := publish(t, b, ch)
	if p3.Epoch == p1.Epoch || p3.Offset != 1 {
		t.Fatalf("publish after loss at %v, want offset 1 of a new epoch (old %v)", p3, p1)
	}
	if _, ok, _ := b.Since(t.Context(), ch, p1, 10); ok {
		t.Fatal("old epoch resumable after new publish")
	}
	// Live subscribers get the new epoch's events.
	evs := r.Wait(t, ch, 3)
	if evs[2].Pos != p3 {
		t.Fatalf("third live event at %v, want %v", evs[2].Pos, p3)
	}
}

// Losing the connections to Redis: publishing recovers, subscriptions are
// restored without a new Subscribe, and events published while the Pub/Sub
// connection was down are delivered from history.
func TestReconnect(t *testing.T) {
	name := "sluicetest-" + random()
	url := withClientName(t, name)
	prefix := newPrefix(t)
	b := newBroker(t, url, prefix, broker.Options{})
	other := newBroker(t, testURL(t), prefix, broker.Options{}) // keeps its connections
	ch := channel.MustMake("test", "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "reconnect")
	var r brokertest.Recorder
	if _, err := b.Subscribe(t.Context(), []channel.Name{ch}, &r); err != nil {
		t.Fatal(err)
	}
	var revoked atomic.Int32
	b.OnRevoke(func(broker.Revocation) { revoked.Add(1) })
	first := publish(t, other, ch)
	r.Wait(t, ch, 1)

	killed := killClients(t, name, 2)
	if killed < 2 {
		t.Fatalf("killed %d connections, want the command and the Pub/Sub ones", killed)
	}
	// Published by the other instance while b may be reconnecting.
	for range 5 {
		publish(t, other, ch)
	}
	// b's own publishing comes back.
	testutil.Eventually(t, 15*time.Second, "publish on b to succeed", func() bool {
		_, err := b.Publish(t.Context(), []event.Message{{Channel: ch, Type: "test.event", Data: []byte(`1`)}})
		if err != nil && !errors.Is(err, broker.ErrUnavailable) {
			t.Fatalf("publish error %v is not ErrUnavailable", err)
		}
		return err == nil
	})
	testutil.Eventually(t, 15*time.Second, "b to be ready", func() bool { return b.Ready(t.Context()) == nil })
	last := publish(t, other, ch)
	// Every event, in order, without a gap and without a duplicate.
	evs := r.Wait(t, ch, int(last.Offset))
	for i, ev := range evs {
		if ev.Pos != (event.Position{Epoch: first.Epoch, Offset: uint64(i + 1)}) {
			t.Fatalf("event %d at %v", i, ev.Pos)
		}
	}
	// The control channel is back too.
	if err := other.Revoke(t.Context(), broker.Revocation{Tenant: "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", At: time.Now()}, time.Minute); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, "the revocation to reach b", func() bool { return revoked.Load() > 0 })
}

// killClients waits until at least want connections are named name (a
// client may still be dialling one), kills them all and returns how many.
func killClients(t *testing.T, name string, want int) int {
	c := admin(t)
	var ids []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		list, err := c.Do(t.Context(), c.B().ClientList().Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		ids = ids[:0]
		for _, line := range strings.Split(list, "\n") {
			if !strings.Contains(line, " name="+name+" ") {
				continue
			}
			for _, f := range strings.Fields(line) {
				if id, ok := strings.CutPrefix(f, "id="); ok {
					ids = append(ids, id)
				}
			}
		}
		if len(ids) >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, id := range ids {
		if err := c.Do(t.Context(), c.B().Arbitrary("CLIENT", "KILL", "ID", id).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	return len(ids)
}

type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) BrokerRoundTrip(op string, d time.Duration) {
	if d >= 0 && (op == "publish" || op == "since" || op == "heads") {
		r.n.Add(1)
	}
}

func TestMetrics(t *testing.T) {
	var m roundTrips
	b, err := redisbroker.New(t.Context(), redisbroker.Config{URL: testURL(t), Prefix: newPrefix(t), Metrics: &m})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ch := channel.MustMake("test", "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "metrics")
	p := publish(t, b, ch)
	if _, err := b.Heads(t.Context(), []channel.Name{ch}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Since(t.Context(), ch, p, 1); err != nil {
		t.Fatal(err)
	}
	if n := m.n.Load(); n != 3 {
		t.Fatalf("%d round trips recorded, want 3", n)
	}
}

// Garbage on the broker's Pub/Sub channels is dropped, never fatal.
func TestGarbageDropped(t *testing.T) {
	prefix := newPrefix(t)
	b := newBroker(t, testURL(t), prefix, broker.Options{})
	ch := channel.MustMake("test", "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "garbage")
	var r brokertest.Recorder
	if _, err := b.Subscribe(t.Context(), []channel.Name{ch}, &r); err != nil {
		t.Fatal(err)
	}
	c := admin(t)
	for _, m := range []string{"", "1", "1\nx\n1\n1\nt\n", "2\n1\n1\n1\nt\nd", "1\n0\n1\n1\nt\nd", "\xff\xfe"} {
		if err := c.Do(t.Context(), c.B().Publish().Channel(prefix+"ch:"+ch.String()).Message(m).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []string{"{", `{"tenant":""}`, "null"} {
		if err := c.Do(t.Context(), c.B().Publish().Channel(prefix+"control").Message(m).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	p := publish(t, b, ch)
	if evs := r.Wait(t, ch, 1); len(evs) != 1 || evs[0].Pos != p {
		t.Fatalf("received %d events, first at %v; want only %v", len(evs), evs[0].Pos, p)
	}
	testutil.Eventually(t, 15*time.Second, "the garbage to be counted", func() bool { return b.Dropped() == 9 })
}

// BenchmarkPublish measures single-event publishes from parallel goroutines
// (auto-pipelined on the client's connection), over 64 channels.
func BenchmarkPublish(b *testing.B) {
	url := testURL(b)
	br := newBroker(b, url, newPrefix(b), broker.Options{HistorySize: 100})
	chans := make([]channel.Name, 64)
	for i := range chans {
		chans[i] = channel.MustMake("bench", "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "r"+random())
	}
	data := []byte(`{"progress":42,"status":"running","note":"a typical small event payload"}`)
	var next atomic.Uint64
	b.SetParallelism(16) // many concurrent publishers, as behind an HTTP server
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		ch := chans[next.Add(1)%uint64(len(chans))]
		msgs := []event.Message{{Channel: ch, Type: "scan.progress", Data: data}}
		for pb.Next() {
			if _, err := br.Publish(context.Background(), msgs); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "publishes/s")
}

// BenchmarkPublishBatch measures batches of 500 events spread over 500
// channels, one batch at a time, as a publisher sending large batches to one
// instance does; the metric is events per second.
func BenchmarkPublishBatch(b *testing.B) {
	benchPublishBatch(b, func(int) string { return "r" + random() })
}

// BenchmarkPublishBatchOneChannel publishes batches of 500 events of one
// channel: four script runs that must apply in order, so sent with EVAL.
func BenchmarkPublishBatchOneChannel(b *testing.B) {
	res := "r" + random()
	benchPublishBatch(b, func(int) string { return res })
}

// benchPublishBatch publishes batches of 500 events, the i-th to resource
// res(i), one batch at a time, and reports events per second.
func benchPublishBatch(b *testing.B, res func(i int) string) {
	url := testURL(b)
	br := newBroker(b, url, newPrefix(b), broker.Options{HistorySize: 100})
	data := []byte(`{"progress":42,"status":"running","note":"a typical small event payload"}`)
	msgs := make([]event.Message, 500)
	for i := range msgs {
		ch := channel.MustMake("bench", "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", res(i))
		msgs[i] = event.Message{Channel: ch, Type: "scan.progress", Data: data}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		if _, err := br.Publish(context.Background(), msgs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(msgs))/time.Since(start).Seconds(), "events/s")
}

// proxy forwards TCP connections to Redis until it is taken down.
type proxy struct {
	t      *testing.T
	addr   string // its own
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, target: target}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.down)
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, r)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(r, c); r.Close() }()
			go func() { _, _ = io.Copy(c, r); c.Close() }()
		}
	}()
}

// down closes the listener and every connection: Redis is unreachable.
func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// up listens again on the same address.
func (p *proxy) up() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.serve(ln)
}

// While Redis is unreachable, Ready and Publish fail with ErrUnavailable and
// local subscriptions stay; when it is back, they are restored.
func TestRedisUnreachable(t *testing.T) {
	prefix := newPrefix(t)
	b, px := behindProxy(t, prefix)
	other := newBroker(t, testURL(t), prefix, broker.Options{})
	ch := channel.MustMake("test", "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "unreachable")
	var r brokertest.Recorder
	if _, err := b.Subscribe(t.Context(), []channel.Name{ch}, &r); err != nil {
		t.Fatal(err)
	}
	first := publish(t, other, ch)
	r.Wait(t, ch, 1)

	px.down()
	testutil.Eventually(t, 15*time.Second, "Ready to fail", func() bool { return errors.Is(b.Ready(t.Context()), broker.ErrUnavailable) })
	_, err := b.Publish(t.Context(), []event.Message{{Channel: ch, Type: "test.event", Data: []byte(`1`)}})
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Publish while unreachable = %v, want ErrUnavailable", err)
	}
	var r2 brokertest.Recorder
	if _, err := b.Subscribe(t.Context(), []channel.Name{channel.MustMake("test", "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "new")}, &r2); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Subscribe to a new channel while unreachable = %v, want ErrUnavailable", err)
	}
	for range 3 {
		publish(t, other, ch) // missed live, kept in history
	}

	px.up()
	testutil.Eventually(t, 15*time.Second, "Ready again", func() bool { return b.Ready(t.Context()) == nil })
	last := publish(t, other, ch)
	evs := r.Wait(t, ch, int(last.Offset))
	for i, ev := range evs {
		if ev.Pos != (event.Position{Epoch: first.Epoch, Offset: uint64(i + 1)}) {
			t.Fatalf("event %d at %v", i, ev.Pos)
		}
	}
	testutil.Eventually(t, 15*time.Second, "publish to succeed", func() bool {
		_, err := b.Publish(t.Context(), []event.Message{{Channel: ch, Type: "test.event", Data: []byte(`2`)}})
		return err == nil
	})
}
