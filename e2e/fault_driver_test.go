//go:build unix

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/client"
	"github.com/sluicehq/sluice/event"
	"github.com/sluicehq/sluice/internal/faultcheck"
	"github.com/sluicehq/sluice/internal/testutil"
)

// The fault tests (protocol.md §9: each acknowledged event reaches every open
// stream of its channel, or that stream gets stream-reset covering it) run
// real sluice processes on a redis-server of their own, subscribers that
// reconnect to any instance with Last-Event-ID, and a publisher of
// sequence-numbered events; a fault is injected mid-run and
// internal/faultcheck judges what every subscriber received.

// faultTest skips t unless the fault tests can run: not with -short, and only
// with redis-server on PATH. Like the other Redis tests of the package they
// run when SLUICE_TEST_REDIS_URL is set (CI sets it), though they use a Redis
// of their own.
func faultTest(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("fault test: skipped with -short")
	}
	redisURL(t)
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not on PATH; the fault tests run Redis processes of their own")
	}
}

// privateDeployment is a deployment on a Redis of the test's own, whose keys
// need no cleanup.
func privateDeployment(t *testing.T, redis string, env map[string]string) *deployment {
	d := &deployment{t: t, url: redis, prefix: "sluicefault:", env: map[string]string{
		"SLUICE_BROKER":       "redis",
		"SLUICE_REDIS_URL":    redis,
		"SLUICE_REDIS_PREFIX": "sluicefault:",
		"SLUICE_LOG_LEVEL":    "info",
		"SLUICE_RETRY":        "500ms",
		"SLUICE_KEEPALIVE":    "1s",
	}}
	for k, v := range env {
		d.env[k] = v
	}
	return d
}

// restart starts the process again, on the same port and with the same
// environment, once it has exited, and waits until /healthz answers.
func (p *proc) restart() *proc {
	p.t.Helper()
	if p.running() {
		p.t.Fatalf("%s: restart while pid %d still runs", p.name, p.cmd.Process.Pid)
	}
	return launch(p.t, p.name, p.cmd.Env, strings.TrimPrefix(p.url, "http://"))
}

// kill stops the process with SIGKILL and waits for it to exit.
func (p *proc) kill() {
	p.t.Helper()
	p.signal(os.Kill)
	p.wait(10 * time.Second)
}

// faultRun is one run of a fault scenario: subscribers, a publisher and the
// record of what they did.
type faultRun struct {
	t     *testing.T
	name  string
	urls  []string // the instances; a restart keeps an instance's port
	chans []string
	rec   *faultcheck.Recorder
	token string

	ctx    context.Context
	cancel context.CancelFunc
	subs   []*faultcheck.SubscriberRecorder
	subWG  sync.WaitGroup
	hc     *http.Client // streams

	pubStop chan struct{}
	pubDone chan struct{}
	pubHC   *http.Client

	// idempotent makes the publisher send an Idempotency-Key with every
	// publish, retry a publish of unknown outcome (or refused connection)
	// on the next instance with the same key, give up on every 25th
	// publish within 2 ms (an unknown outcome on purpose), and send every
	// tenth acknowledged publish again to another instance, as a client
	// whose answer was lost would; the repeat must answer the same ids.
	idempotent bool
	// sticky makes the publisher use one instance until it fails, then the
	// next; otherwise it goes round robin.
	sticky bool
	// tamper, when set, stands between subscriber i and its record: what
	// it returns for an event's data is recorded instead (the checker's
	// self-test).
	tamper func(i int, data string) []string

	began time.Time // for phase

	mu        sync.Mutex
	ends      map[string]int // why connections ended
	resets    map[string]int // stream-reset reasons
	bad       []string       // protocol faults seen by subscribers or the publisher
	replays   int            // idempotent repeats sent
	replayBad []string       // idempotent repeats that answered other ids
	retried   int            // publishes retried with their key
	pubErrs   map[string]int // why publishes were not acknowledged
}

// newFaultRun prepares a run over the instances at urls on chans (see
// faultChannels); nothing starts yet.
func newFaultRun(t *testing.T, name string, urls []string, chans []string) *faultRun {
	ctx, cancel := context.WithCancel(context.Background())
	r := &faultRun{
		t: t, name: name, urls: urls, rec: faultcheck.NewRecorder(), token: token(t, "user-1"),
		ctx: ctx, cancel: cancel,
		hc: &http.Client{Transport: &http.Transport{
			DisableCompression: true, ResponseHeaderTimeout: 5 * time.Second, MaxIdleConnsPerHost: 64,
		}},
		pubHC: &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 4, DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		}},
		ends: map[string]int{}, resets: map[string]int{}, pubErrs: map[string]int{},
		chans: chans, began: time.Now(),
	}
	t.Cleanup(func() {
		cancel()
		r.stopPublisher()
		r.subWG.Wait()
		r.hc.CloseIdleConnections()
		r.pubHC.CloseIdleConnections()
	})
	return r
}

func (r *faultRun) note(m map[string]int, k string) {
	r.mu.Lock()
	m[k]++
	r.mu.Unlock()
}

func (r *faultRun) fault(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bad) < 20 {
		r.bad = append(r.bad, fmt.Sprintf(format, args...))
	}
}

// phase logs a step of the scenario with the time since the run began.
func (r *faultRun) phase(what string) {
	r.t.Helper()
	r.t.Logf("faultcheck %s: %5.1fs %s (acked %d)", r.name, time.Since(r.began).Seconds(), what, r.rec.Counts()[faultcheck.Acked])
}

// faultChannels returns n new channels.
func faultChannels(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = newChannel("fault")
	}
	return out
}

// startSubscribers starts n subscribers, each on one channel, every fourth
// on three, and waits until each has opened a stream: the publisher must
// start only then.
func (r *faultRun) startSubscribers(n int) {
	r.t.Helper()
	for i := range n {
		chans := []string{r.chans[i%len(r.chans)]}
		if i%4 == 3 {
			chans = append(chans, r.chans[(i+1)%len(r.chans)], r.chans[(i+3)%len(r.chans)])
		}
		s := r.rec.Subscriber(fmt.Sprintf("sub%02d", i), chans...)
		r.subs = append(r.subs, s)
		r.subWG.Add(1)
		go r.subscribe(s, chans, i)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var closed []string
		for i, s := range r.subs {
			if !s.Opened() {
				closed = append(closed, fmt.Sprintf("sub%02d", i))
			}
		}
		if len(closed) == 0 {
			r.phase(fmt.Sprintf("%d subscribers open", n))
			return
		}
		if time.Now().After(deadline) {
			r.mu.Lock()
			ends := fmt.Sprint(r.ends)
			r.mu.Unlock()
			r.t.Fatalf("faultcheck %s: %d of %d subscribers could not open a stream within 20 s (%v); connection ends: %s",
				r.name, len(closed), n, closed, ends)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// subscribe reads streams of chans until the run ends, reconnecting on any
// end to a random instance with the last id seen.
func (r *faultRun) subscribe(s *faultcheck.SubscriberRecorder, chans []string, i int) {
	defer r.subWG.Done()
	var last string
	next := i % len(r.urls)
	for r.ctx.Err() == nil {
		why := r.stream(s, i, r.urls[next], chans, &last)
		if r.ctx.Err() != nil {
			return
		}
		s.End()
		r.note(r.ends, why)
		next = rand.IntN(len(r.urls))
		select {
		case <-r.ctx.Done():
		case <-time.After(time.Duration(20+rand.IntN(80)) * time.Millisecond):
		}
	}
}

// stream reads one connection and returns why it ended.
func (r *faultRun) stream(s *faultcheck.SubscriberRecorder, i int, base string, chans []string, last *string) string {
	req, _ := http.NewRequestWithContext(r.ctx, http.MethodGet, base+"/events?"+url.Values{"channel": chans}.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+r.token)
	if *last != "" {
		req.Header.Set("Last-Event-ID", *last)
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		if isDialError(err) {
			return "no connection"
		}
		return "request error"
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var p struct {
			Code string `json:"code"`
		}
		_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&p)
		return fmt.Sprintf("status %d %s", resp.StatusCode, p.Code)
	}
	rd := client.NewReader(resp.Body, 0)
	rd.SetLastEventID(*last)
	for {
		ev, err := rd.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return "EOF"
			}
			return "read error"
		}
		*last = rd.LastEventID()
		switch ev.Type {
		case event.TypeOpen:
			s.Open()
		case event.TypeReset:
			s.Reset(ev.Data)
			var d struct {
				Reason string `json:"reason"`
			}
			_ = json.Unmarshal([]byte(ev.Data), &d)
			r.note(r.resets, d.Reason)
		case event.TypeError:
			var d struct {
				Condition string `json:"condition"`
			}
			_ = json.Unmarshal([]byte(ev.Data), &d)
			return "stream-error " + d.Condition
		default:
			datas := []string{ev.Data}
			if r.tamper != nil {
				datas = r.tamper(i, ev.Data)
			}
			for _, d := range datas {
				if err := s.Event(d); err != nil {
					r.fault("subscriber got %s: %v", ev.Type, err)
				}
			}
		}
	}
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// startPublisher publishes about 200 events/s until stopPublisher: every
// 10 ms alternately one event and a batch of three on three channels.
func (r *faultRun) startPublisher() {
	r.pubStop, r.pubDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(r.pubDone)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		target := 0
		for n := 0; ; n++ {
			select {
			case <-r.pubStop:
				return
			case <-tick.C:
			}
			chans := []string{r.chans[(n/2)%len(r.chans)]}
			if n%2 == 1 {
				k := (n / 2) % len(r.chans)
				chans = []string{r.chans[k], r.chans[(k+1)%len(r.chans)], r.chans[(k+2)%len(r.chans)]}
			}
			if !r.sticky {
				target = n % len(r.urls)
			}
			target = r.publish(n, chans, target)
		}
	}()
}

// publish sends one request (a batch when chans has several) to the
// instance target and records its outcome; it returns the instance the next
// publish should go to.
func (r *faultRun) publish(n int, chans []string, target int) int {
	req := r.rec.Begin(chans...)
	evs := make([]map[string]any, len(chans))
	for i, ch := range chans {
		evs[i] = map[string]any{"channel": ch, "event": "fault.seq", "data": faultcheck.Payload{Seq: req.Seqs[i], Ch: ch}}
	}
	var body []byte
	if len(evs) == 1 {
		body, _ = json.Marshal(evs[0])
	} else {
		body, _ = json.Marshal(map[string]any{"events": evs})
	}
	key := ""
	if r.idempotent {
		key = fmt.Sprintf("fault-%s-%d", random(), n)
	}
	timeout := 5 * time.Second
	if r.idempotent && n%25 == 5 {
		// Cut short: the publish may or may not be applied, and the
		// retry below must settle it either way.
		timeout = time.Duration(100+rand.IntN(1900)) * time.Microsecond
	}
	outcome, ids, why := r.post(r.urls[target], body, key, len(chans), timeout)
	if outcome != faultcheck.Acked {
		r.note(r.pubErrs, why)
	}
	if r.idempotent {
		unknown := false
		for attempt := 1; outcome != faultcheck.Acked && attempt < 2*len(r.urls); attempt++ {
			if outcome == faultcheck.Unknown {
				unknown = true
			} else if why != "no connection" {
				break // refused by the server: the event was not published
			}
			target = (target + 1) % len(r.urls)
			r.mu.Lock()
			r.retried++
			r.mu.Unlock()
			time.Sleep(50 * time.Millisecond)
			outcome, ids, why = r.post(r.urls[target], body, key, len(chans), 5*time.Second)
		}
		if outcome != faultcheck.Acked && unknown {
			outcome = faultcheck.Unknown
		}
		if outcome == faultcheck.Acked && n%10 == 1 {
			// The answer "was lost": the same request again, elsewhere.
			other := (target + 1) % len(r.urls)
			o2, ids2, why2 := r.post(r.urls[other], body, key, len(chans), 5*time.Second)
			r.mu.Lock()
			r.replays++
			if o2 == faultcheck.Acked && !slices.Equal(ids, ids2) && len(r.replayBad) < 10 {
				r.replayBad = append(r.replayBad, fmt.Sprintf("ids %v, then %v", ids, ids2))
			}
			r.mu.Unlock()
			if o2 != faultcheck.Acked {
				r.note(r.pubErrs, "repeat: "+why2)
			}
		}
	}
	req.Settle(outcome)
	if outcome != faultcheck.Acked {
		target = (target + 1) % len(r.urls)
	}
	return target
}

// post sends a publish and classifies its answer: Acked (200 with one id per
// event), Failed (a problem answer, or no connection made: nothing was
// sent) or Unknown. The request gives up after timeout.
func (r *faultRun) post(base string, body []byte, key string, n int, timeout time.Duration) (faultcheck.Outcome, []string, string) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/publish", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+publishKey)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := r.pubHC.Do(req)
	if err != nil {
		if isDialError(err) {
			return faultcheck.Failed, nil, "no connection"
		}
		return faultcheck.Unknown, nil, "no answer"
	}
	defer resp.Body.Close()
	var reply struct {
		IDs  []string `json:"ids"`
		Code string   `json:"code"`
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return faultcheck.Unknown, nil, "answer cut"
	}
	jerr := json.Unmarshal(b, &reply)
	switch {
	case resp.StatusCode == http.StatusOK && jerr == nil && len(reply.IDs) == n:
		return faultcheck.Acked, reply.IDs, ""
	case resp.StatusCode == http.StatusOK:
		r.fault("publish: 200 with %.200q for %d events", b, n)
		return faultcheck.Unknown, nil, "bad 200"
	case strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") && jerr == nil && reply.Code != "":
		if resp.StatusCode != http.StatusServiceUnavailable {
			r.fault("publish: %d %s", resp.StatusCode, reply.Code)
		}
		return faultcheck.Failed, nil, strconv.Itoa(resp.StatusCode) + " " + reply.Code
	default:
		return faultcheck.Unknown, nil, "status " + strconv.Itoa(resp.StatusCode)
	}
}

// start starts the run's subscribers (faultSubscribers of them), then,
// once every one has opened a stream, the publisher, and returns when 600
// events have been acknowledged: the scenario's fault comes next.
func (r *faultRun) start() {
	r.t.Helper()
	r.startSubscribers(faultSubscribers)
	r.startPublisher()
	r.waitAcked(600, 20*time.Second)
}

// bounce kills instance p with SIGKILL, leaves it down for down while the
// run goes on, and returns it started again on its port.
func (r *faultRun) bounce(p *proc, down time.Duration) *proc {
	r.t.Helper()
	r.phase("SIGKILL " + p.name)
	p.kill()
	time.Sleep(down)
	p = p.restart()
	r.phase(p.name + " restarted")
	return p
}

// resetCount returns how many stream-resets the subscribers have received.
func (r *faultRun) resetCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.resets {
		n += c
	}
	return n
}

// stopPublisher stops the publisher and waits for its last publish.
func (r *faultRun) stopPublisher() {
	if r.pubStop == nil {
		return
	}
	select {
	case <-r.pubStop:
	default:
		close(r.pubStop)
	}
	<-r.pubDone
}

// waitAcked waits until n more events have been acknowledged, failing the
// test after d.
func (r *faultRun) waitAcked(n int, d time.Duration) {
	r.t.Helper()
	base := r.rec.Counts()[faultcheck.Acked]
	testutil.Eventually(r.t, d, fmt.Sprintf("%d more events acknowledged", n), func() bool {
		return r.rec.Counts()[faultcheck.Acked] >= base+n
	})
}

// finish checks the run (see check), and fails the test on silent loss,
// duplicates, reorders or phantoms, on resets unless resetsAllowed, and on
// protocol faults.
func (r *faultRun) finish(resetsAllowed bool) faultcheck.Report {
	r.t.Helper()
	rep := r.check()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !rep.OK() || (!resetsAllowed && rep.Resets > 0) {
		r.t.Errorf("faultcheck %s: the delivery promise broke (want silent_loss=0 duplicates=0 reorders=0 phantoms=0%s): %v; first faults:\n%s",
			r.name, map[bool]string{false: " resets=0", true: ""}[resetsAllowed], rep, strings.Join(rep.Examples, "\n"))
	}
	if len(r.bad) > 0 {
		r.t.Errorf("faultcheck %s: protocol faults:\n%s", r.name, strings.Join(r.bad, "\n"))
	}
	if len(r.replayBad) > 0 {
		r.t.Errorf("faultcheck %s: a repeated Idempotency-Key answered other ids: %q", r.name, r.replayBad)
	}
	if n := r.rec.Counts()[faultcheck.Acked]; n < 1000 {
		r.t.Errorf("faultcheck %s: only %d events acknowledged; the run proves little", r.name, n)
	}
	return rep
}

// check stops the publisher, waits until every subscriber has caught up
// with the last acknowledged event of its channels (or 20 s), lets late
// events arrive for half a second, stops the subscribers, checks the run
// and logs the report.
func (r *faultRun) check() faultcheck.Report {
	r.t.Helper()
	r.stopPublisher()
	r.phase("publisher stopped")
	deadline := time.Now().Add(20 * time.Second)
	lag := r.rec.Lagging()
	for len(lag) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		lag = r.rec.Lagging()
	}
	if len(lag) == 0 {
		r.phase("every subscriber caught up")
	}
	time.Sleep(500 * time.Millisecond) // quiet period: late duplicates arrive
	r.cancel()
	r.subWG.Wait()

	rep := faultcheck.Check(r.rec.Log())
	counts := r.rec.Counts()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.t.Logf("faultcheck %s: %v", r.name, rep)
	r.t.Logf("faultcheck %s: phantoms=%d unknown_missed=%d reconnects=%d; publishes: acked=%d failed=%d unknown=%d retried=%d repeats=%d (%v); connection ends %v; resets %v",
		r.name, rep.Phantoms, rep.UnknownMissed, rep.Reconnects, counts[faultcheck.Acked], counts[faultcheck.Failed], counts[faultcheck.Unknown],
		r.retried, r.replays, r.pubErrs, r.ends, r.resets)
	if len(lag) > 0 {
		r.t.Logf("faultcheck %s: %d subscribers had not caught up after 20 s: %q", r.name, len(lag), lag)
	}
	return rep
}
