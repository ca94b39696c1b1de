package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const lanes = 16 // latency histogram shards

type bench struct {
	cfg    config
	ip     net.IP
	addr   string   // ip:port to dial
	host   string   // Host header
	paths  []string // request path and query per channel
	chans  []string
	tokens []string // subscriber JWTs, one per user; stream i uses tokens[i%len]
	hc     *http.Client

	nextSrc atomic.Uint32

	lat      [lanes]histogram // publish→receive of events published after the warm-up
	warmLat  [lanes]histogram // the same during the warm-up
	steady   atomic.Int64     // Unix ns: events published before it are warm-up; 0 until publishing starts
	openLat  histogram        // request → stream-open, initial opening
	churnLat histogram        // the same for streams reopened by churn
	firstLat histogram        // resume-storm: request → first replayed event
	resets   atomic.Int64
	ended    atomic.Int64

	errMu  sync.Mutex
	errs   map[string]int
	opened atomic.Int64

	publishURL    string
	published     []uint64 // per channel; each written only by the publisher owning the channel
	publishCalls  atomic.Int64
	publishErrors atomic.Int64
}

// publisher is one publishing loop. It owns its channels: no other loop
// publishes to them, so each channel's events are sent, and numbered, in
// order however many loops run at once.
type publisher struct {
	chans []int // indexes into bench.chans
	rr    int   // next element of chans to publish to
	buf   []byte
}

func newBench(c config) (*bench, error) {
	u, ip, err := loopbackTarget(c.url)
	if err != nil {
		return nil, err
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	b := &bench{cfg: c, ip: ip, addr: net.JoinHostPort(ip.String(), port), host: u.Host, errs: map[string]int{}}
	now := time.Now()
	users := c.users
	if users <= 0 || users > c.streams {
		users = c.streams
	}
	for i := range users {
		sub := c.user
		if users > 1 {
			sub += "-" + strconv.Itoa(i)
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": sub, "tenant_id": c.tenant, "iat": now.Unix(),
			"exp": now.Add(c.deadline + time.Minute).Unix(),
		})
		s, err := tok.SignedString([]byte(c.secret))
		if err != nil {
			return nil, err
		}
		b.tokens = append(b.tokens, s)
	}
	nch := 1
	if c.shape == "many-channels" {
		nch = c.streams
	}
	base := strings.TrimSuffix(u.Path, "/")
	for i := range nch {
		name := "bench:" + c.tenant + ":" + strconv.Itoa(i)
		b.chans = append(b.chans, name)
		b.paths = append(b.paths, base+"/events?channel="+url.QueryEscape(name))
	}
	b.published = make([]uint64, nch)
	dial := net.Dialer{Timeout: 10 * time.Second}
	b.hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dial.DialContext(ctx, "tcp", b.addr) // never anything but the checked address
		},
		MaxIdleConnsPerHost: 64, // one per publishing loop
	}}
	b.publishURL = u.Scheme + "://" + u.Host + base + "/publish"
	return b, nil
}

func (b *bench) fail(err error) {
	key := err.Error()
	var ne net.Error
	switch {
	case errors.Is(err, errStatus), errors.Is(err, errEnded):
	case errors.Is(err, io.EOF):
		key = "closed by server"
	case errors.As(err, &ne) && ne.Timeout():
		key = "timeout"
	default:
		if len(key) > 80 {
			key = key[:80]
		}
	}
	b.errMu.Lock()
	b.errs[key]++
	b.errMu.Unlock()
}

func (b *bench) errorCount() (n int64) {
	b.errMu.Lock()
	defer b.errMu.Unlock()
	for _, v := range b.errs {
		n += int64(v)
	}
	return n
}

// start runs s in its own goroutine until ctx ends or the stream does.
// settled is called exactly once, when the stream opened or failed to.
func (b *bench) start(ctx context.Context, s *sub, settled func()) {
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		var once sync.Once
		settle := func() {
			if settled != nil {
				once.Do(settled)
			}
		}
		defer settle()
		err := b.subscribe(ctx, s, func() { b.opened.Add(1); settle() })
		if err != nil && ctx.Err() == nil {
			b.fail(err)
		}
	}()
}

// openAll starts one subscriber per element of subs at --ramp per second and
// waits until each opened or failed.
func (b *bench) openAll(ctx context.Context, subs []*sub) error {
	var wg sync.WaitGroup
	wg.Add(len(subs))
	interval := time.Duration(float64(time.Second) / b.cfg.ramp)
	began := time.Now()
	for i, s := range subs {
		if d := time.Until(began.Add(time.Duration(i) * interval)); d > 0 {
			if !sleep(ctx, d) {
				wg.Add(i - len(subs)) // never started
				break
			}
		}
		b.start(ctx, s, wg.Done)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return errors.New("deadline reached while opening streams")
	}
}

func stopAll(subs []*sub) {
	for _, s := range subs {
		if s.cancel != nil {
			s.cancel()
		}
	}
	for _, s := range subs {
		if s.done != nil {
			<-s.done
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// publish sends n events in one batch, the k-th to p's channel
// chans[(rr+k) mod len], and advances the per-channel sequence numbers only
// on success, so a refused batch leaves no gap for subscribers to count as
// lost.
func (b *bench) publish(ctx context.Context, p *publisher, n int) bool {
	buf := append(p.buf[:0], `{"events":[`...)
	ts := time.Now().UnixNano()
	seen := map[int]uint64{}
	for k := range n {
		ch := p.chans[(p.rr+k)%len(p.chans)]
		if k > 0 {
			buf = append(buf, ',')
		}
		buf = appendEvent(buf, b.chans[ch], b.published[ch]+seen[ch], ts)
		seen[ch]++
	}
	buf = append(buf, "]}"...)
	p.buf = buf
	b.publishCalls.Add(1)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.publishURL, bytes.NewReader(buf))
	if err != nil {
		b.publishErrors.Add(1)
		return false
	}
	req.Header.Set("Authorization", "Bearer "+b.cfg.publishKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.hc.Do(req)
	if err != nil {
		b.publishErrors.Add(1)
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		if b.publishErrors.Add(1) == 1 {
			fmt.Fprintf(os.Stderr, "sluice-bench: publish refused: HTTP %d\n", resp.StatusCode)
		}
		return false
	}
	for ch, k := range seen {
		b.published[ch] += k
	}
	p.rr = (p.rr + n) % len(p.chans)
	return true
}

// publishers splits the channels over n publishing loops, round-robin.
func (b *bench) publishers(n int) []*publisher {
	ps := make([]*publisher, min(n, len(b.chans)))
	for i := range ps {
		ps[i] = &publisher{}
	}
	for ch := range b.chans {
		p := ps[ch%len(ps)]
		p.chans = append(p.chans, ch)
	}
	return ps
}

// publishFor publishes at --rate events per second in all, round-robin over
// the channels, for d, from --publishers loops that each own a share of the
// channels and of the rate and have one request in flight at a time.
func (b *bench) publishFor(ctx context.Context, d time.Duration) {
	ps := b.publishers(b.cfg.publishers)
	rate := b.cfg.rate / float64(len(ps))
	start := time.Now()
	b.steady.Store(start.Add(b.cfg.warmup).UnixNano())
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() { b.publishLoop(ctx, p, rate, start, d) })
	}
	wg.Wait()
}

func (b *bench) publishLoop(ctx context.Context, p *publisher, rate float64, start time.Time, d time.Duration) {
	tick := 10 * time.Millisecond
	if rate < 100 || b.cfg.batch == 1 {
		// One event a tick: publishes spread evenly, as independent
		// publishers would send them.
		tick = max(time.Duration(float64(time.Second)/rate), 100*time.Microsecond)
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	var sent int64
	for {
		el := time.Since(start)
		if el >= d {
			return
		}
		due := int64(el.Seconds()*rate) + 1 - sent
		for due > 0 && ctx.Err() == nil {
			n := int(min(due, int64(b.cfg.batch)))
			if !b.publish(ctx, p, n) {
				break
			}
			sent, due = sent+int64(n), due-int64(n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// drain waits up to --settle until every subscriber received every event of
// its channel.
func (b *bench) drain(ctx context.Context, subs []*sub) {
	end := time.Now().Add(b.cfg.settle)
	for time.Now().Before(end) {
		var want, got uint64
		for _, s := range subs {
			want += b.published[s.ch]
			got += s.got.Load()
		}
		if got >= want || !sleep(ctx, 20*time.Millisecond) {
			return
		}
	}
}

func newSubs(n int, perChannel bool, open *histogram) []*sub {
	subs := make([]*sub, n)
	for i := range subs {
		subs[i] = &sub{idx: i, openHist: open}
		if perChannel {
			subs[i].ch = i
		}
	}
	return subs
}

func run(parent context.Context, c config) (*result, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	b, err := newBench(c)
	if err != nil {
		return nil, err
	}
	nofile, err := raiseNoFile()
	if err != nil {
		return nil, fmt.Errorf("raising RLIMIT_NOFILE: %w", err)
	}
	if nofile > 0 && uint64(c.streams)+64 > nofile {
		return nil, fmt.Errorf("--streams %d exceeds the open-file limit %d", c.streams, nofile)
	}
	ctx, cancel := context.WithTimeout(parent, c.deadline)
	defer cancel()

	r := &result{Streams: int64(c.streams)}
	k0 := readSockstat()
	p0, _ := readProc(c.pid)
	subs := newSubs(c.streams, c.shape == "many-channels", &b.openLat)
	defer stopAll(subs)
	if err := b.openAll(ctx, subs); err != nil {
		return nil, err
	}
	r.StreamsOpened = b.opened.Load()
	sleep(ctx, c.settle)
	p1, _ := readProc(c.pid)
	self1, _ := readProc(os.Getpid())
	began := time.Now()

	switch c.shape {
	case "idle":
		sleep(ctx, c.duration)
	case "fanout", "many-channels":
		b.publishFor(ctx, c.duration)
		b.drain(ctx, subs)
	case "churn":
		r.ChurnOpens = b.churn(ctx, subs)
	case "resume-storm":
		stopAll(subs)
		p := b.publishers(1)[0]
		for left, fails := c.events, 0; left > 0 && fails < 10 && ctx.Err() == nil; {
			n := min(left, 1000)
			if b.publish(ctx, p, n) {
				left, fails = left-n, 0
			} else if fails++; !sleep(ctx, 100*time.Millisecond) {
				break
			}
		}
		began = time.Now()
		for _, s := range subs {
			s.firstHist = &b.firstLat
			b.start(ctx, s, nil)
		}
		b.drain(ctx, subs)
	}
	wall := time.Since(began)
	p2, _ := readProc(c.pid)
	self2, _ := readProc(os.Getpid())
	k2 := readSockstat()
	stopAll(subs)
	if ctx.Err() != nil && parent.Err() == nil {
		fmt.Fprintln(os.Stderr, "sluice-bench: hard deadline reached; results are partial")
	}
	b.fill(r, subs, p0, p1, p2, began, wall)
	r.KernelTCPBeforeKB, r.KernelTCPAfterKB = k0, k2
	r.ClientCPUCorePct = -1
	if self1.ok && self2.ok && wall > 0 {
		r.ClientCPUCorePct = round(float64((self2.cpuTicks-self1.cpuTicks)*1e6/clockTicks) / float64(wall.Microseconds()) * 100)
	}
	if k0 >= 0 && k2 >= 0 && r.StreamsOpened > 0 {
		r.KernelTCPPerStreamB = round(float64(k2-k0) * 1024 / float64(r.StreamsOpened))
	}
	b.errMu.Lock()
	defer b.errMu.Unlock()
	for k, v := range b.errs {
		fmt.Fprintf(os.Stderr, "  error ×%d: %s\n", v, k)
	}
	return r, nil
}

// churn closes and reopens --churn random streams per second for --duration.
func (b *bench) churn(ctx context.Context, subs []*sub) int64 {
	t := time.NewTicker(time.Duration(float64(time.Second) / b.cfg.churn))
	defer t.Stop()
	end := time.After(b.cfg.duration)
	var n int64
	for {
		select {
		case <-ctx.Done():
			return n
		case <-end:
			return n
		case <-t.C:
		}
		s := subs[rand.IntN(len(subs))]
		s.cancel()
		<-s.done
		s.lastID, s.openHist = s.lastID[:0], &b.churnLat
		b.start(ctx, s, nil)
		n++
	}
}
