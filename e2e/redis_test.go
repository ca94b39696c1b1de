package e2e

import (
	"context"
	"fmt"
	"github.com/sluicehq/sluice/internal/testutil"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A subscriber of instance A, killed with SIGKILL while a publisher keeps
// publishing to B, resumes on B from the last id it saw and gets every
// acknowledged event exactly once, in order.
func TestResumeOnAnotherInstanceAfterKill(t *testing.T) {
	d := newDeployment(t, redisURL(t), nil)
	a, b := d.start("A"), d.start("B")
	ch := newChannel("orders")

	sa := a.open("stream on A", "", ch)
	sa.expectOpen()
	b.mustPublish(ch, "order.created", map[string]int{"n": 0})
	if got := seqs(t, sa.events(1, 10*time.Second)); got[0] != 0 {
		t.Fatalf("A received %v, want [0]", got)
	}

	// The publisher goes on until it has had 100 publishes acknowledged
	// after the kill (at most 900 in all, within the history size).
	var (
		mu       sync.Mutex
		acked    = []int{0}
		failures []string
	)
	killed := make(chan struct{})
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		after := 0
		for n := 1; n <= 900 && after < 100; n++ {
			st, s := b.publish(ch, "order.updated", map[string]int{"n": n})
			mu.Lock()
			if st == http.StatusOK {
				acked = append(acked, n)
			} else {
				failures = append(failures, fmt.Sprintf("publish %d: %d %s", n, st, s))
			}
			mu.Unlock()
			select {
			case <-killed:
				after++
			default:
			}
		}
	}()

	// A delivers a while, then dies; everything it sent before dying counts.
	got := []int{0}
	for len(got) < 30 {
		got = append(got, seqs(t, sa.events(1, 10*time.Second))...)
	}
	a.signal(syscall.SIGKILL)
	close(killed)
	a.wait(10 * time.Second)
	for {
		bl, ok := sa.tryNext(10 * time.Second)
		if !ok {
			break
		}
		if !bl.KeepAlive() {
			got = append(got, seqs(t, []block{bl})...)
		}
	}
	if sa.ended() == nil {
		t.Fatal("the stream of the killed instance did not end")
	}
	cursor := sa.lastID

	select {
	case <-pubDone:
	case <-time.After(60 * time.Second):
		t.Fatal("the publisher did not finish within 60 s")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failures) > 0 {
		t.Fatalf("publishes to B failed: %v", failures)
	}
	if !slices.Equal(got, acked[:len(got)]) {
		t.Fatalf("A delivered %v, not a prefix of the acknowledged %v", got, acked)
	}

	sb := b.open("resumed on B", cursor, ch)
	sb.expectOpen()
	rest := acked[len(got):]
	resumed := seqs(t, sb.events(len(rest), 20*time.Second))
	if !slices.Equal(resumed, rest) {
		t.Fatalf("B replayed %v, want %v", resumed, rest)
	}
	sb.quiet(300 * time.Millisecond)
	t.Logf("%d events before the kill, %d replayed on B", len(got), len(rest))
}

// With three instances, an event published on any one reaches the
// subscribers of every one, in publish order.
func TestCrossInstanceDelivery(t *testing.T) {
	d := newDeployment(t, redisURL(t), nil)
	ps := []*proc{d.start("A"), d.start("B"), d.start("C")}
	ch := newChannel("chat")
	var ss []*sseStream
	for _, p := range ps {
		s := p.open("stream on "+p.name, "", ch)
		s.expectOpen()
		ss = append(ss, s)
	}
	const rounds = 3
	var want []int
	for r := range rounds {
		for i, p := range ps {
			n := r*len(ps) + i
			p.mustPublish(ch, "message.sent", map[string]any{"n": n, "from": p.name})
			want = append(want, n)
		}
	}
	for _, s := range ss {
		if got := seqs(t, s.events(len(want), 10*time.Second)); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", s.name, got, want)
		}
		s.quiet(200 * time.Millisecond)
	}
}

// When the deployment's keys are lost (as with FLUSHDB), a client resuming
// with a cursor from before gets stream-reset, and live events go on.
func TestHistoryLossResets(t *testing.T) {
	d := newDeployment(t, redisURL(t), nil)
	a, b := d.start("A"), d.start("B")
	ch := newChannel("orders")
	live := a.open("live on A", "", ch)
	live.expectOpen()
	for n := range 3 {
		b.mustPublish(ch, "order.updated", map[string]int{"n": n})
	}
	live.events(3, 10*time.Second)
	cursor := live.lastID

	if n := deleteKeys(t, redisClient(t, d.url), d.prefix); n == 0 {
		t.Fatal("no key under the test's prefix")
	}
	for _, p := range []*proc{a, b} {
		s := p.open("resumed on "+p.name, cursor, ch)
		s.expectOpen()
		if r := s.expectReset(); r != "history-unavailable" {
			t.Errorf("%s: reset reason %q", s.name, r)
		}
		b.mustPublish(ch, "order.updated", map[string]int{"n": 10})
		if got := seqs(t, s.events(1, 10*time.Second)); got[0] != 10 {
			t.Errorf("%s: %v after the reset, want [10]", s.name, got)
		}
		s.close()
	}
	// The open stream is told that the history it was in is gone, then
	// gets every event of the new one.
	if r := live.expectMidReset(); r != "history-unavailable" {
		t.Errorf("open stream: reset reason %q", r)
	}
	if got := seqs(t, live.events(2, 10*time.Second)); !slices.Equal(got, []int{10, 10}) {
		t.Errorf("open stream: %v, want [10 10]", got)
	}
	// After a publish, history has a new epoch: the old cursor is still
	// not a position in it.
	s := b.open("resumed on B after a publish", cursor, ch)
	s.expectOpen()
	if r := s.expectReset(); r != "history-unavailable" {
		t.Errorf("reset reason %q", r)
	}
}

// keepAlives reads n keep-alive comments, failing on any other block or on
// the end of the response.
func (s *sseStream) keepAlives(n int, d time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for i := 0; i < n; i++ {
		b := s.next(time.Until(deadline))
		if !b.KeepAlive() {
			s.t.Fatalf("%s: %v while waiting for keep-alives", s.name, b)
		}
	}
}

// Redis, a redis-server of the test's own without persistence, is killed
// and restarted under open streams.
func TestRedisRestart(t *testing.T) {
	redisURL(t) // the test runs with the others
	rs := startRedisServer(t)
	port := rs.Port
	djch := "events_channel_" + random()
	d := newDeployment(t, fmt.Sprintf("redis://127.0.0.1:%d/9", port), map[string]string{
		"SLUICE_KEEPALIVE":     "200ms",
		"SLUICE_DJANGO_INGEST": djch,
	})
	a, b := d.start("A"), d.start("B")
	ch := newChannel("jobs")
	s1, s2 := a.open("stream on A", "", ch), b.open("stream on B", "", ch)
	s1.expectOpen()
	s2.expectOpen()
	for n := range 3 {
		a.mustPublish(ch, "job.progress", map[string]int{"n": n})
	}
	for _, s := range []*sseStream{s1, s2} {
		if got := seqs(t, s.events(3, 10*time.Second)); !slices.Equal(got, []int{0, 1, 2}) {
			t.Fatalf("%s: %v, want [0 1 2]", s.name, got)
		}
	}
	before := s1.lastID

	rs.Kill()
	for _, p := range []*proc{a, b} {
		testutil.Eventually(t, 10*time.Second, p.name+": /readyz answers 503 broker_unavailable", func() bool {
			st, code, _ := p.get("/readyz")
			return st == http.StatusServiceUnavailable && code == "broker_unavailable"
		})
		testutil.Eventually(t, 10*time.Second, p.name+": POST /publish answers 503 broker_unavailable", func() bool {
			st, code := p.publish(ch, "job.progress", map[string]int{"n": -1})
			if st == http.StatusOK {
				t.Fatalf("%s: a publish was acknowledged while Redis was down", p.name)
			}
			return st == http.StatusServiceUnavailable && code == "broker_unavailable"
		})
	}
	// A new stream cannot open without the broker: a prompt 503, not a hang.
	for _, p := range []*proc{a, b} {
		q := url.Values{"channel": {ch}, "access_token": {token(t, "user-1")}}
		start := time.Now()
		st, code, err := p.get("/events?" + q.Encode())
		if err != nil || st != http.StatusServiceUnavailable || code != "broker_unavailable" {
			t.Fatalf("%s: new stream while Redis is down: %d %q %v", p.name, st, code, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("%s: the 503 took %v", p.name, d)
		}
	}
	// The streams stay open: keep-alives go on, nothing else comes.
	s1.keepAlives(3, 5*time.Second)
	s2.keepAlives(3, 5*time.Second)

	rs.Start()
	for _, p := range []*proc{a, b} {
		testutil.Eventually(t, 20*time.Second, p.name+": /readyz answers 200 after the restart", func() bool {
			st, _, _ := p.get("/readyz")
			return st == http.StatusOK
		})
	}
	for n := 3; n < 6; n++ {
		b.mustPublish(ch, "job.progress", map[string]int{"n": n})
	}
	var after []block
	for _, s := range []*sseStream{s1, s2} {
		// Redis lost the history the stream was in: it is told so, then
		// gets the new history from its first event.
		if r := s.expectMidReset(); r != "history-unavailable" {
			t.Fatalf("%s: reset reason %q", s.name, r)
		}
		evs := s.events(3, 10*time.Second)
		if got := seqs(t, evs); !slices.Equal(got, []int{3, 4, 5}) {
			t.Fatalf("%s: %v after the restart, want [3 4 5]", s.name, got)
		}
		after = evs
	}

	// Resuming from a cursor of after the restart: exactly what followed.
	s1.close()
	r1 := b.open("s1 resumed on B", s1.lastID, ch)
	r1.expectOpen()
	r2 := a.open("resumed on A after 3", after[0].ID, ch)
	r2.expectOpen()
	a.mustPublish(ch, "job.progress", map[string]int{"n": 6})
	if got := seqs(t, r1.events(1, 10*time.Second)); !slices.Equal(got, []int{6}) {
		t.Errorf("%s: %v, want [6]", r1.name, got)
	}
	if got := seqs(t, r2.events(3, 10*time.Second)); !slices.Equal(got, []int{4, 5, 6}) {
		t.Errorf("%s: %v, want [4 5 6]", r2.name, got)
	}
	if got := seqs(t, s2.events(1, 10*time.Second)); !slices.Equal(got, []int{6}) {
		t.Errorf("%s: %v, want [6]", s2.name, got)
	}

	// A cursor of before the restart: the restarted Redis has no history
	// (no persistence), so protocol.md §9: stream-reset, then live.
	old := a.open("resumed from before the restart", before, ch)
	old.expectOpen()
	if r := old.expectReset(); r != "history-unavailable" {
		t.Errorf("reset reason %q", r)
	}
	b.mustPublish(ch, "job.progress", map[string]int{"n": 7})
	for _, s := range []*sseStream{old, r1, r2, s2} {
		if got := seqs(t, s.events(1, 10*time.Second)); !slices.Equal(got, []int{7}) {
			t.Errorf("%s: %v, want [7]", s.name, got)
		}
	}

	// The django ingest lease was lost with the data; one instance takes
	// it again and ingests, once.
	rc := redisClient(t, d.url)
	ctx := context.Background()
	testutil.Eventually(t, 15*time.Second, "one instance subscribes to the ingest channel again", func() bool {
		m, err := rc.Do(ctx, rc.B().PubsubNumsub().Channel(djch).Build()).AsIntMap()
		return err == nil && m[djch] == 1
	})
	msg := fmt.Sprintf(`{"channel": %q, "event_type": "job.progress", "data": "{\"n\": 8}", "pub_id": null}`, ch)
	if n, err := rc.Do(ctx, rc.B().Publish().Channel(djch).Message(msg).Build()).AsInt64(); err != nil || n != 1 {
		t.Fatalf("django message: %d subscribers, %v", n, err)
	}
	for _, s := range []*sseStream{old, r1, r2, s2} {
		if got := seqs(t, s.events(1, 10*time.Second)); !slices.Equal(got, []int{8}) {
			t.Errorf("%s: %v, want [8]", s.name, got)
		}
		s.quiet(200 * time.Millisecond)
	}
}

// django-eventstream's messages on a Redis Pub/Sub channel reach Sluice
// streams once, with two instances ingesting; when the holder of the lease
// dies, the other takes over.
func TestDjangoIngest(t *testing.T) {
	url := redisURL(t)
	djch := "events_channel_" + random()
	d := newDeployment(t, url, map[string]string{"SLUICE_DJANGO_INGEST": djch})
	rc := redisClient(t, url)
	ctx := context.Background()
	subscribers := func() int64 {
		m, err := rc.Do(ctx, rc.B().PubsubNumsub().Channel(djch).Build()).AsIntMap()
		if err != nil {
			t.Fatal(err)
		}
		return m[djch]
	}
	django := func(msg string) int64 {
		n, err := rc.Do(ctx, rc.B().Publish().Channel(djch).Message(msg).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	message := func(ch, typ string, n int) string {
		return fmt.Sprintf(`{"channel": %q, "event_type": %q, "data": "{\"n\": %d}", "pub_id": null}`, ch, typ, n)
	}

	a := d.start("A")
	testutil.Eventually(t, 10*time.Second, "A subscribes to the ingest channel", func() bool { return subscribers() == 1 })
	b := d.start("B")
	lease, err := rc.Do(ctx, rc.B().Get().Key(d.prefix+"ingest-lease:"+djch).Build()).ToString()
	if err != nil || lease == "" {
		t.Fatalf("lease key %q: %q, %v", d.prefix+"ingest-lease:"+djch, lease, err)
	}

	ch := newChannel("scan-progress")
	sa, sb := a.open("stream on A", "", ch), b.open("stream on B", "", ch)
	sa.expectOpen()
	sb.expectOpen()
	if n := django(message(ch, "scan.progress", 0)); n != 1 {
		t.Fatalf("the django message reached %d subscribers, want 1", n)
	}
	django(`{"channel": "not a channel", "event_type": "scan.progress", "data": "{}"}`)
	django(message(ch, "message", 99)) // django-eventstream's default type: refused
	django(`garbage`)
	django(message(ch, "scan.progress", 1))
	for _, s := range []*sseStream{sa, sb} {
		evs := s.events(2, 10*time.Second)
		if got := seqs(t, evs); !slices.Equal(got, []int{0, 1}) || evs[0].Event != "scan.progress" {
			t.Fatalf("%s: %v, want scan.progress 0 and 1", s.name, evs)
		}
	}
	// The ingest is asynchronous to PUBLISH: only now is a direct publish
	// certain to come after the ingested events.
	b.mustPublish(ch, "scan.done", map[string]int{"n": 2})
	for _, s := range []*sseStream{sa, sb} {
		if got := seqs(t, s.events(1, 10*time.Second)); !slices.Equal(got, []int{2}) {
			t.Fatalf("%s: %v, want [2]", s.name, got)
		}
	}

	// A holds the lease; it dies and B takes over within the lease (4 s).
	a.signal(syscall.SIGKILL)
	a.wait(10 * time.Second)
	start := time.Now()
	testutil.Eventually(t, 10*time.Second, "B subscribes to the ingest channel", func() bool { return subscribers() == 1 })
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("B took over after %v", took)
	}
	if n := django(message(ch, "scan.progress", 3)); n != 1 {
		t.Fatalf("the django message reached %d subscribers, want 1", n)
	}
	if got := seqs(t, sb.events(1, 10*time.Second)); !slices.Equal(got, []int{3}) {
		t.Fatalf("%s: %v, want [3]", sb.name, got)
	}
	sb.quiet(300 * time.Millisecond)
}
