// Package stream serves Sluice's Server-Sent Events streams (protocol.md §4–§6): it
// authenticates a request, resolves and gates its channels, subscribes, replays
// from the client's cursor, and writes live events until the stream ends.
//
// A stream never skips events silently. When the events it receives for a
// channel do not follow from where it is there (a gap in offsets, a new
// epoch, a broker's notice that history was lost, or a replay cut short by
// ReplayLimit), it writes a stream-reset with reason history-unavailable
// before going on. Unlike the reset right after stream-open, such a
// mid-stream reset carries an id: the stream's cursor with that channel at
// the position where the stream goes on, so that a client reconnecting right
// after it resumes from there.
//
// A stream is cut as a slow consumer (stream-error slow-consumer) only for
// what its client has not accepted: events queued while its socket is full
// (QueueSize, MaxPendingBytes), output its socket took but the client has
// not read for two ticks without progress (parked streams), or a socket
// that took nothing for WriteTimeout. Events the server holds back itself,
// for write coalescing or behind a fan-out, never count: a queue that
// reaches QueueSize while the client reads is written at once.
//
// A resume replays history a chunk at a time as the client takes it, so
// that resuming from an old cursor costs a chunk of memory, not the history.
//
// One Server serves every stream endpoint of a process. The generic
// GET /events endpoint and a service's own feature endpoints are all built
// with Server.Handler and differ only in their ChannelsFunc.
package stream

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
	"github.com/sluicehq/sluice/metrics"
	"github.com/sluicehq/sluice/problem"
	"github.com/sluicehq/sluice/tenant"
)

// ChannelsFunc resolves the channels a request may read (protocol.md §3, layer 1):
// from the query for the generic endpoint, from a resource lookup and the
// service's own access rules for a feature endpoint. It runs after
// authentication. Errors it returns that are (or wrap) a *problem.Problem are
// sent as they are (e.g. 404 when the resource does not exist, 403 when the
// principal's role may not read it); any other error is a 500. The tenant gate
// runs on its result in every case.
type ChannelsFunc func(r *http.Request, p auth.Principal) ([]channel.Name, error)

// Authenticator turns a request into a principal (package auth implements it).
type Authenticator interface {
	// Authenticate returns the request's principal, a *problem.Problem (401)
	// for a refused credential, or another error for a fault.
	Authenticate(r *http.Request, o auth.Options) (auth.Principal, error)
	// StillValid re-checks a principal of an open stream against revocations.
	StillValid(ctx context.Context, p auth.Principal) error
}

// Gate is the tenant gate (protocol.md §3, layer 2; package tenant implements it).
type Gate interface {
	// Check returns nil when p may read every channel of chans, a
	// *problem.Problem (403) when it may not, or another error for a fault.
	Check(ctx context.Context, p auth.Principal, chans []channel.Name) error
}

// CredentialBlind is implemented by a Gate to say whether its rechecks of
// open streams read Principal.Credential (a membership source that forwards
// it to a backend does). When RechecksWithoutCredential reports true, an
// open stream drops its credential once the channels hook and the gate have
// run, instead of holding a token of up to kilobytes for its whole life;
// otherwise it keeps it. tenant.Gate implements it.
type CredentialBlind interface {
	RechecksWithoutCredential() bool
}

// Admitter decides whether a principal may open one more stream (connection
// limits). Admit returns a release function to call when the stream ends, or
// a *problem.Problem (429).
type Admitter interface {
	Admit(r *http.Request, p auth.Principal) (release func(), err error)
}

// Config configures a Server. Broker, Auth, Gate and Codec are required; zero
// durations and sizes take the defaults of protocol.md §10.
type Config struct {
	Broker broker.Broker
	Auth   Authenticator
	Gate   Gate
	Codec  *event.Codec
	Admit  Admitter // optional

	Retry       time.Duration // retry hint sent to clients (2s)
	KeepAlive   time.Duration // keep-alive comment interval (15s)
	MaxChannels int           // channels per stream (16)
	// QueueSize bounds the events pending towards a client that does not
	// accept them (its socket is full) before the stream ends with
	// slow-consumer (1024). Events the server holds back itself (write
	// coalescing, a fan-out not yet at the stream) do not count.
	QueueSize int
	// MaxPendingBytes bounds the same in bytes: the queued events' data
	// plus what a short write left over (4 MiB).
	MaxPendingBytes int
	ReplayLimit     int           // events replayed per channel at most (10000)
	Leeway          time.Duration // added to a credential's expiry (0)
	RecheckInterval time.Duration // membership recheck on open streams (60s)
	DrainSpread     time.Duration // upper bound of drain retry hints (10s)
	WriteTimeout    time.Duration // one write to a client may take at most (10s)
	// WriteCoalesce is, for streams served without a goroutine of their own
	// (HTTP/1.1 on Linux), how far apart writes to one client are due:
	// events arriving faster share a write. A write the server made more
	// than a window after it was due (behind a large fan-out) does not delay
	// the next: the window then counts from when it was due. 0 means 30ms;
	// negative, no delay. On loopback a write costs the server about 8µs of kernel time
	// whatever its size, so at 200 events/s per client a 30ms window cuts
	// the CPU per delivered event about fourfold (docs/benchmarks.md); an
	// event arriving after a quiet spell is written at once.
	WriteCoalesce time.Duration
	// DisablePark keeps every stream on a goroutine of its own, as streams
	// over HTTP/2, TLS or on other platforms are, instead of parking
	// HTTP/1.1 streams on Linux (see park_linux.go).
	DisablePark bool

	Logger  *slog.Logger
	Metrics metrics.Recorder
}

func (c *Config) defaults() {
	if c.Retry <= 0 {
		c.Retry = 2 * time.Second
	}
	if c.KeepAlive <= 0 {
		c.KeepAlive = 15 * time.Second
	}
	if c.MaxChannels <= 0 {
		c.MaxChannels = 16
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 1024
	}
	if c.MaxPendingBytes <= 0 {
		c.MaxPendingBytes = 4 << 20
	}
	if c.ReplayLimit <= 0 {
		c.ReplayLimit = 10000
	}
	if c.RecheckInterval <= 0 {
		c.RecheckInterval = 60 * time.Second
	}
	if c.DrainSpread < c.Retry {
		c.DrainSpread = max(c.Retry, 10*time.Second)
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.WriteCoalesce == 0 {
		c.WriteCoalesce = 30 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = metrics.Nop{}
	}
}

// Server serves streams and keeps track of the open ones, so that
// revocations, membership rechecks and the drain reach them.
type Server struct {
	cfg      Config
	reg      *registry
	draining atomic.Bool
	drainMu  sync.RWMutex  // orders the start of a drain with streams being counted
	revs     atomic.Uint64 // revocations seen, to close the open-vs-revoke race
	active   sync.WaitGroup
	stop     chan struct{}
	stopped  chan struct{}
	stopOnce sync.Once

	plOnce sync.Once
	pl     atomic.Pointer[poller] // serves parked streams; started by the first
}

// New returns a Server and starts its membership recheck loop; Close stops it.
func New(cfg Config) (*Server, error) {
	if cfg.Broker == nil || cfg.Auth == nil || cfg.Gate == nil || cfg.Codec == nil {
		return nil, errors.New("stream: Broker, Auth, Gate and Codec are required")
	}
	cfg.defaults()
	s := &Server{cfg: cfg, reg: newRegistry(), stop: make(chan struct{}), stopped: make(chan struct{})}
	cfg.Broker.OnRevoke(s.revoked)
	go s.recheckLoop()
	return s, nil
}

// Open returns the number of open streams.
func (s *Server) Open() int { return int(s.reg.n.Load()) }

// Handler returns the stream endpoint whose channels resolve uses.
func (s *Server) Handler(resolve ChannelsFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, resolve) })
}

// QueryChannels is the ChannelsFunc of the generic endpoint: the channel query
// parameters, each parsed by channel.Parse (protocol.md §4).
func QueryChannels(r *http.Request, _ auth.Principal) ([]channel.Name, error) {
	vals := r.URL.Query()["channel"]
	if len(vals) == 0 {
		return nil, problem.New(http.StatusBadRequest, problem.CodeNoChannel, "at least one channel query parameter is required")
	}
	out := make([]channel.Name, 0, len(vals))
	for _, v := range vals {
		n, err := channel.Parse(v)
		if err != nil {
			return nil, problem.New(http.StatusBadRequest, problem.CodeMalformedChan, err.Error())
		}
		out = append(out, n)
	}
	return out, nil
}

// refuse answers a request that will not get a stream.
func (s *Server) refuse(w http.ResponseWriter, err error) {
	p, ok := problem.As(err)
	if !ok {
		switch {
		case errors.Is(err, broker.ErrUnavailable) || errors.Is(err, broker.ErrClosed) || errors.Is(err, context.DeadlineExceeded):
			p = problem.New(http.StatusServiceUnavailable, problem.CodeBrokerUnavailable, "the event broker is unavailable; retry later")
		case errors.Is(err, tenant.ErrUnavailable):
			// Fail closed: no stream without a membership answer.
			s.cfg.Logger.Warn("stream refused: membership source unavailable", "err", err)
			p = problem.New(http.StatusServiceUnavailable, problem.CodeMembershipUnavailable, "the membership source is unavailable; retry later")
		default:
			s.cfg.Logger.Error("stream refused on a fault", "err", err)
			p = problem.New(http.StatusInternalServerError, problem.CodeInternal, "internal error")
		}
	}
	if d, ok := problem.RetryAfter(err); ok {
		w.Header().Set("Retry-After", problem.RetryAfterSeconds(d))
	}
	s.cfg.Metrics.StreamRefused(p.Code)
	problem.Write(w, p)
}

// dedupe collapses repeated channels, keeping the first occurrence's order.
func dedupe(chans []channel.Name) []channel.Name {
	out := chans[:0:0]
	for i, c := range chans {
		dup := false
		for _, d := range chans[:i] {
			if d == c {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, c)
		}
	}
	return out
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, resolve ChannelsFunc) {
	if s.draining.Load() {
		s.writeDrain(w)
		return
	}
	ctx := r.Context()
	// Revocations seen before authentication: one that lands between here and
	// the registration below would find no stream to end, so it is checked
	// again once the stream is registered.
	seen := s.revs.Load()
	p, err := s.cfg.Auth.Authenticate(r, auth.Options{Query: true})
	if err != nil {
		s.refuse(w, err)
		return
	}
	chans, err := resolve(r, p)
	if err != nil {
		s.refuse(w, err)
		return
	}
	chans = dedupe(chans)
	switch {
	case len(chans) == 0:
		s.refuse(w, problem.New(http.StatusBadRequest, problem.CodeNoChannel, "the request names no channel"))
		return
	case len(chans) > s.cfg.MaxChannels:
		s.refuse(w, problem.New(http.StatusBadRequest, problem.CodeTooManyChannels,
			"a stream may read at most "+strconv.Itoa(s.cfg.MaxChannels)+" channels"))
		return
	}
	if err := s.cfg.Gate.Check(ctx, p, chans); err != nil {
		s.refuse(w, err)
		return
	}
	var release func()
	if s.cfg.Admit != nil {
		rel, err := s.cfg.Admit.Admit(r, p)
		if err != nil {
			s.refuse(w, err)
			return
		}
		release = rel
	}

	if cb, ok := s.cfg.Gate.(CredentialBlind); ok && cb.RechecksWithoutCredential() {
		p.Credential = ""
	}
	c := newConn(p, chans, s.cfg.QueueSize, s.cfg.MaxPendingBytes)
	c.release = release
	s.reg.add(c)
	parked := false // once parked, the poller detaches c when the stream ends
	defer func() {
		if !parked {
			s.detach(c)
		}
	}()
	if s.revs.Load() != seen { // a revocation raced with this open
		if err := s.cfg.Auth.StillValid(ctx, p); err != nil {
			s.refuse(w, err)
			return
		}
	}
	sub, err := s.cfg.Broker.Subscribe(ctx, chans, c)
	if err != nil {
		s.refuse(w, err)
		return
	}
	c.sub = sub
	heads, err := s.cfg.Broker.Heads(ctx, chans)
	if err != nil {
		s.refuse(w, err)
		return
	}
	st, err := s.resume(ctx, r, chans, heads)
	if err != nil {
		s.refuse(w, err)
		return
	}
	// The drain check and the count are one step against Drain's start, so
	// that Drain either waits for this stream or this stream sees the drain,
	// and Add never runs concurrently with Wait.
	s.drainMu.RLock()
	if s.draining.Load() { // the drain began while this stream was opening
		s.drainMu.RUnlock()
		s.writeDrain(w)
		return
	}
	s.active.Add(1) // done when the stream has been told why it ends
	s.drainMu.RUnlock()
	if parked = s.run(w, r, c, st); !parked {
		s.active.Done()
	}
}

// detach undoes what serve set up for c: its subscription, its registration
// and its admission. It runs once, after the stream's last write.
func (s *Server) detach(c *conn) { s.detachAsync(c, false) }

// detachAsync is detach, with the subscription closed on a goroutine of its
// own when async: closing it may wait on the broker (a Redis UNSUBSCRIBE),
// which the poller's writers must never do. The stream stops counting as
// open at once either way.
func (s *Server) detachAsync(c *conn, async bool) {
	if sub := c.sub; sub != nil {
		if async {
			go sub.Close()
		} else {
			sub.Close()
		}
	}
	s.reg.remove(c)
	if c.release != nil {
		c.release()
	}
}

// start is where a stream begins: the position per channel, the first
// chunk of what to replay (the writer fetches the rest as the client takes
// it) and, when the cursor could not be honoured, why.
type start struct {
	pos    []event.Position
	replay [][]*event.Event
	reset  string
}

// Reasons of stream-reset.
const (
	ResetCursorUnreadable   = "cursor-unreadable"
	ResetHistoryUnavailable = "history-unavailable"
)

func (s *Server) resume(ctx context.Context, r *http.Request, chans []channel.Name, heads []event.Position) (start, error) {
	// The header wins when present, even empty (an empty value means no
	// cursor); the query is for clients that cannot set it.
	var cursor string
	if v, ok := r.Header["Last-Event-Id"]; ok && len(v) > 0 {
		cursor = v[0]
	} else {
		cursor = r.URL.Query().Get("lastEventId")
	}
	if cursor == "" {
		return start{pos: heads}, nil
	}
	cpos, named, err := s.cfg.Codec.Decode(cursor, chans)
	if err != nil {
		return start{pos: heads, reset: ResetCursorUnreadable}, nil
	}
	st := start{pos: append([]event.Position(nil), heads...), replay: make([][]*event.Event, len(chans))}
	for i, ch := range chans {
		if !named[i] {
			continue
		}
		evs, ok, err := s.cfg.Broker.Since(ctx, ch, cpos[i], s.replayChunk(len(chans)))
		if err != nil {
			return start{}, err
		}
		if !ok {
			return start{pos: heads, reset: ResetHistoryUnavailable}, nil
		}
		st.pos[i] = cpos[i]
		st.replay[i] = evs
	}
	return st, nil
}

// revoked ends the open streams a revocation covers (broker.OnRevoke).
func (s *Server) revoked(rv broker.Revocation) {
	s.revs.Add(1)
	s.reg.each(func(c *conn) {
		if rv.Covers(c.p.Tenant, c.p.User) {
			c.finish(event.EndAccessRevoked, 0)
		}
	})
}

// Drain ends every open stream with shutting-down, each with a retry hint
// drawn between Retry and DrainSpread, and answers new requests the same way
// (protocol.md §6). It returns once every stream has been told, or when ctx ends.
func (s *Server) Drain(ctx context.Context) error {
	s.drainMu.Lock()
	s.draining.Store(true)
	s.drainMu.Unlock()
	s.reg.each(func(c *conn) { c.finish(event.EndShuttingDown, s.drainRetry()) })
	done := make(chan struct{})
	go func() { s.active.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Draining reports whether Drain has begun.
func (s *Server) Draining() bool { return s.draining.Load() }

// Close stops the recheck loop and the goroutines serving parked streams.
// It does not tell open streams why they end; see Drain: streams still
// parked are closed without a final event, the others stay open.
func (s *Server) Close() {
	s.stopOnce.Do(func() {
		close(s.stop)
		s.stopPoller()
	})
	<-s.stopped
}

func (s *Server) drainRetry() int64 {
	lo, hi := s.cfg.Retry.Milliseconds(), s.cfg.DrainSpread.Milliseconds()
	if hi <= lo {
		return lo
	}
	return lo + mrand.Int64N(hi-lo+1)
}

func setStreamHeaders(h http.Header) {
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Del("Content-Length")
}

// writeDrain answers a stream request during the drain: status 200 (an
// EventSource gives up on an error status), a spread-out retry hint and
// stream-error shutting-down.
func (s *Server) writeDrain(w http.ResponseWriter) {
	setStreamHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	b := event.AppendRetry(nil, s.drainRetry())
	b = append(b, '\n')
	b = appendStreamError(b, event.EndShuttingDown)
	_, _ = w.Write(b)
	_ = http.NewResponseController(w).Flush()
}

var conditionText = map[event.EndReason]string{
	event.EndTokenExpired:  "the credential expired; reconnect with a fresh one",
	event.EndAccessRevoked: "access to this stream was withdrawn",
	event.EndSlowConsumer:  "the client did not keep up; resume from the last id",
	event.EndShuttingDown:  "the server is shutting down; reconnect",
}

func appendStreamError(b []byte, cond event.EndReason) []byte {
	data, _ := json.Marshal(struct {
		Condition event.EndReason `json:"condition"`
		Text      string          `json:"text"`
	}{cond, conditionText[cond]})
	return event.AppendBlock(b, "", event.TypeError, data)
}
