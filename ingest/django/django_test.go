package django_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/ingest/django"
	"github.com/sluicehq/sluice/internal/redistest"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/server"
)

const (
	tenant = "3f1c2a9e-8d4b-4c1e-9a7f-0b5e6d7c8a91"
	lease  = 600 * time.Millisecond
)

// testURL returns the Redis of the tests, or skips.
func testURL(tb testing.TB) string { return redistest.URL(tb, "the django ingest tests") }

func random() string { return redistest.Random() }

// admin returns a plain client on the tests' database.
func admin(tb testing.TB) valkey.Client { return redistest.Client(tb, testURL(tb)) }

// fixture is one test's Redis namespace, ingest channel and gateway: the
// gateway gives the ingest the validation of POST /publish.
type fixture struct {
	t       *testing.T
	url     string
	prefix  string
	channel string // the Pub/Sub channel django publishes to
	redis   valkey.Client
	gw      *server.Server

	mu        sync.Mutex
	published []string // "<channel> <event> <data>" of each accepted event
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{
		t:       t,
		url:     testURL(t),
		prefix:  "sluicetest:" + random() + ":",
		channel: "events_channel_" + random(),
		redis:   admin(t),
	}
	t.Cleanup(func() {
		ctx := context.Background()
		keys, err := f.redis.Do(ctx, f.redis.B().Keys().Pattern(f.prefix+"*").Build()).AsStrSlice()
		if err == nil && len(keys) > 0 {
			_ = f.redis.Do(ctx, f.redis.B().Del().Key(keys...).Build()).Error()
		}
	})
	cfg := server.DefaultConfig()
	cfg.JWTSecret = "test-secret-0123456789abcdef0123456789"
	cfg.LogLevel = "error"
	gw, err := server.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Close() })
	f.gw = gw
	return f
}

func (f *fixture) publish(ctx context.Context, ch, typ string, data json.RawMessage) error {
	if _, err := f.gw.PublishBatch(ctx, []sluice.Event{{Channel: ch, Type: typ, Data: data}}); err != nil {
		return err
	}
	var buf bytes.Buffer
	_ = json.Compact(&buf, data)
	f.mu.Lock()
	f.published = append(f.published, ch+" "+typ+" "+buf.String())
	f.mu.Unlock()
	return nil
}

func (f *fixture) accepted() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.published...)
}

// instance is one running ingest, as one gateway instance runs it.
type instance struct {
	in     *django.Ingester
	cancel context.CancelFunc
	done   chan struct{}
}

func (f *fixture) start() *instance {
	f.t.Helper()
	in, err := django.New(django.Config{
		RedisURL: f.url,
		Prefix:   f.prefix,
		Channel:  f.channel,
		Publish:  f.publish,
		Lease:    lease,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	i := &instance{in: in, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(i.done)
		if err := in.Run(ctx); err != nil {
			f.t.Errorf("Run: %v", err)
		}
	}()
	f.t.Cleanup(i.stop)
	return i
}

// stop cancels the instance and waits for Run to return.
func (i *instance) stop() {
	i.cancel()
	select {
	case <-i.done:
	case <-time.After(10 * time.Second):
		panic("django ingest: Run did not return 10 s after its context ended")
	}
}

// subscribers returns how many Redis clients are subscribed to the ingest
// channel.
func (f *fixture) subscribers() int64 {
	m, err := f.redis.Do(context.Background(), f.redis.B().PubsubNumsub().Channel(f.channel).Build()).AsIntMap()
	if err != nil {
		f.t.Fatal(err)
	}
	return m[f.channel]
}

// waitHolder waits until exactly one of is holds the lease and is
// subscribed, and returns it.
func (f *fixture) waitHolder(is ...*instance) *instance {
	f.t.Helper()
	var holder *instance
	testutil.Eventually(f.t, 5*time.Second, "one instance holds the lease and is subscribed", func() bool {
		holder = nil
		n := 0
		for _, i := range is {
			if i.in.Holding() {
				holder = i
				n++
			}
		}
		return n == 1 && f.subscribers() == 1
	})
	return holder
}

// django publishes msg as django-eventstream does and returns how many
// subscribers received it.
func (f *fixture) django(msg string) int64 {
	f.t.Helper()
	n, err := f.redis.Do(context.Background(), f.redis.B().Publish().Channel(f.channel).Message(msg).Build()).AsInt64()
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

func djangoMessage(ch, typ, data string) string {
	b, _ := json.Marshal(map[string]any{"channel": ch, "event_type": typ, "data": data, "pub_id": nil})
	return string(b)
}

func TestPublishedOnceWithTwoInstances(t *testing.T) {
	f := newFixture(t)
	a, b := f.start(), f.start()
	f.waitHolder(a, b)
	ch := "scan-progress:" + tenant + ":42"
	const n = 20
	for i := range n {
		if got := f.django(djangoMessage(ch, "scan.progress", fmt.Sprintf(`{"a":%d}`, i))); got != 1 {
			t.Fatalf("PUBLISH reached %d subscribers, want 1", got)
		}
	}
	// The documented raw form, as redis-cli would send it.
	f.django(`{"channel":"` + ch + `","event_type":"scan.done","data":"{\"a\":1}","pub_id":null}`)
	testutil.Eventually(t, 5*time.Second, "every event published", func() bool { return len(f.accepted()) >= n+1 })
	got := f.accepted()
	if len(got) != n+1 {
		t.Fatalf("published %d events, want %d: %q", len(got), n+1, got)
	}
	for i := range n {
		if want := fmt.Sprintf(`%s scan.progress {"a":%d}`, ch, i); got[i] != want {
			t.Errorf("event %d: %q, want %q", i, got[i], want)
		}
	}
	if want := ch + ` scan.done {"a":1}`; got[n] != want {
		t.Errorf("raw message: %q, want %q", got[n], want)
	}
	st := a.in.Stats()
	st2 := b.in.Stats()
	if st.Ingested+st2.Ingested != n+1 || st.Refused+st2.Refused != 0 || st.Failed+st2.Failed != 0 {
		t.Errorf("stats %+v and %+v, want %d ingested in all", st, st2, n+1)
	}
}

func TestRefusals(t *testing.T) {
	f := newFixture(t)
	i := f.start()
	f.waitHolder(i)
	ch := "scan-progress:" + tenant + ":42"
	bad := []string{
		``,
		`not json`,
		`[]`,
		`null`,
		`{"channel": 1, "event_type": "scan.progress", "data": "{}"}`,
		`{"event_type": "scan.progress", "data": "{}"}`,
		`{"channel": "` + ch + `", "data": "{}"}`,
		`{"channel": "` + ch + `", "event_type": "scan.progress"}`,
		djangoMessage("events", "scan.progress", `{}`),                                    // not a Sluice channel
		djangoMessage("scan-progress:"+tenant+":42:x", "scan.progress", `{}`),             // four segments
		djangoMessage("scan-progress:3F1C2A9E-8D4B-4C1E-9A7F-0B5E6D7C8A91:1", "a.b", `1`), // tenant not canonical
		djangoMessage(ch, "message", `{}`),                                                // django-eventstream's default type
		djangoMessage(ch, "stream-open.x", `{}`),
		djangoMessage(ch, "scan.progress", `not json`),
		djangoMessage(ch, "scan.progress", ``),
		`{"channel": "` + ch + `", "event_type": "scan.progress", "data": "\u0000{"}`,
		`{"channel": "` + ch + `", "event_type": "scan.progress", "data": "{}"`, // truncated
	}
	for _, m := range bad {
		f.django(m)
	}
	// A data member that is JSON rather than a string is taken as it is.
	f.django(`{"channel": "` + ch + `", "event_type": "scan.progress", "data": {"b": [1, 2]}}`)
	f.django(djangoMessage(ch, "scan.done", `{"ok": true}`))
	testutil.Eventually(t, 5*time.Second, "every message handled", func() bool {
		s := i.in.Stats()
		return s.Refused+s.Ingested >= uint64(len(bad)+2)
	})
	if s := i.in.Stats(); s.Refused != uint64(len(bad)) || s.Ingested != 2 || s.Failed != 0 {
		t.Errorf("stats %+v, want %d refused and 2 ingested", s, len(bad))
	}
	want := []string{ch + ` scan.progress {"b":[1,2]}`, ch + ` scan.done {"ok":true}`}
	if got := f.accepted(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("accepted %q, want %q", got, want)
	}
}

func TestHandoverWhenTheHolderStops(t *testing.T) {
	f := newFixture(t)
	a, b := f.start(), f.start()
	holder := f.waitHolder(a, b)
	other := a
	if holder == a {
		other = b
	}
	ch := "scan-progress:" + tenant + ":7"
	f.django(djangoMessage(ch, "scan.progress", `{"n":1}`))
	testutil.Eventually(t, 5*time.Second, "first event published", func() bool { return len(f.accepted()) == 1 })

	start := time.Now()
	holder.stop()
	f.waitHolder(other)
	if took := time.Since(start); took > lease {
		t.Errorf("handover took %v, more than the lease (%v)", took, lease)
	}
	owner, err := f.redis.Do(context.Background(), f.redis.B().Get().Key(other.in.LeaseKey()).Build()).ToString()
	if err != nil || owner == "" {
		t.Fatalf("lease key after handover: %q, %v", owner, err)
	}
	if got := f.django(djangoMessage(ch, "scan.progress", `{"n":2}`)); got != 1 {
		t.Fatalf("PUBLISH reached %d subscribers, want 1", got)
	}
	testutil.Eventually(t, 5*time.Second, "second event published", func() bool { return len(f.accepted()) == 2 })
	if s := other.in.Stats(); s.Ingested != 1 {
		t.Errorf("new holder stats %+v, want 1 ingested", s)
	}
	if s := holder.in.Stats(); s.Ingested != 1 {
		t.Errorf("old holder stats %+v, want 1 ingested", s)
	}
}

// A lease left by an instance that died (never released) is taken over once
// it expires.
func TestTakeoverAfterExpiry(t *testing.T) {
	f := newFixture(t)
	in, err := django.New(django.Config{RedisURL: f.url, Prefix: f.prefix, Channel: f.channel, Publish: f.publish, Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := f.redis.Do(ctx, f.redis.B().Set().Key(in.LeaseKey()).Value("dead-instance").Px(lease).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	i := f.start()
	f.waitHolder(i)
	took := time.Since(start)
	if took < lease*3/4 || took > lease+lease/2 {
		t.Errorf("took over after %v; the dead lease lived %v", took, lease)
	}
}

func TestConfigErrors(t *testing.T) {
	pub := func(context.Context, string, string, json.RawMessage) error { return nil }
	for _, c := range []django.Config{
		{RedisURL: "redis://127.0.0.1:6379/0", Publish: pub},
		{RedisURL: "redis://127.0.0.1:6379/0", Channel: "events_channel"},
		{RedisURL: "http://x", Channel: "events_channel", Publish: pub},
		{RedisURL: "redis://127.0.0.1:6379/0", Channel: "events_channel", Publish: pub, Lease: time.Millisecond},
	} {
		if _, err := django.New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

// Run returns promptly when its context ends, even while Redis is
// unreachable.
func TestRunReturnsWhileRedisIsUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- django.Run(ctx, django.Config{
			RedisURL: "redis://127.0.0.1:1/0?dial_timeout=100ms",
			Channel:  "events_channel",
			Publish:  func(context.Context, string, string, json.RawMessage) error { return nil },
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// A holder whose lease was taken by another stops subscribing at its next
// renewal, and takes the lease again once it is free.
func TestHolderStepsDownWhenTheLeaseIsTaken(t *testing.T) {
	f := newFixture(t)
	i := f.start()
	f.waitHolder(i)
	ctx := context.Background()
	if err := f.redis.Do(ctx, f.redis.B().Set().Key(i.in.LeaseKey()).Value("another-instance").Px(2*lease).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, lease, "the holder unsubscribes", func() bool { return !i.in.Holding() && f.subscribers() == 0 })
	f.waitHolder(i)
}
