package stream

// Parking. Once its opening block is flushed, an HTTP/1.1 stream over a plain
// socket is hijacked from net/http and handed to the Server's poller, and its
// handler goroutine returns. A parked stream is a file descriptor, its conn
// and writer, and an entry in the poller's table: no goroutine, no timer, no
// buffer, not even a net.Conn (the poller keeps a duplicate of the socket's
// descriptor and closes the net.Conn, which leaves Go's netpoller). The
// response stays what net/http began: chunked transfer coding, one chunk per
// write, and the last chunk before the connection is closed. What a chunk
// holds is decided by the stream's writer (writer.next, writer.go), as for
// a stream on its own goroutine: the poller only moves the bytes.
//
// The poller runs a fixed set of goroutines for every parked stream:
//
//   - writers (GOMAXPROCS of them, poller_linux.go) take streams from the
//     ready queue and write, without ever waiting, what writer.next gives
//     (queued events, a keep-alive or the final event), several frames to a
//     write; every 500 µs of writing a
//     writer yields to the network (yield_linux.go), each through a goroutine
//     of its own;
//   - the epoll loop (epoll_linux.go) learns that a client went away (EPOLLRDHUP, EOF) and
//     that a full socket takes bytes again (EPOLLOUT, asked for only while a
//     stream has bytes left over from a short write);
//   - the ticker, every 250 ms, marks keep-alives due, ends streams whose
//     credential expired, cuts streams whose socket stayed full for
//     WriteTimeout, and measures the unread output (SIOCOUTQ) of streams
//     that wrote 64 KiB since their last measure (measureUnread);
//   - a timer re-queues streams written to less than WriteCoalesce ago, so
//     that a busy stream gets one write per window, not one per event; a
//     write made more than a window after it was due (behind a long
//     fan-out) counts from when it was due, so it does not delay the next.
//     A stream whose queue reaches QueueSize while its socket takes bytes
//     is not left to its window: it is promoted to the ready queue (its
//     entry in the delayed list goes stale by generation), since events the
//     server holds back are not the client's debt.
//
// Concurrency contract:
//
//   - c.mu guards the scheduling state of a parked stream: queued, blocked,
//     pendingLen, hurried, closed, flags and due. Anyone may add flags and
//     call scheduleLocked. poller.mu guards where a queued stream waits
//     (where) and its delayed-list generation (gen).
//   - A stream is serviced by at most one writer at a time. queued is set
//     when the stream enters the ready queue or the delayed list, and cleared
//     only by the writer servicing it, under c.mu, when nothing is left to
//     do; while it is set, others only add flags, which that writer reads
//     before it clears queued.
//   - The poller owns the descriptor. Only the writer servicing a stream
//     writes to it, changes its epoll registration or closes it (closePark,
//     once, under c.mu, setting closed). The epoll loop reads from it only to
//     discard what a client sends, under c.mu and only while closed is
//     unset, so it never reads a descriptor number that was closed and
//     reused; it finds streams by id, never by descriptor.
//   - pending and the writer state wr belong to the writer servicing the
//     stream.
//   - Lock order: poller table shard, then c.mu, then poller.mu.

import (
	"errors"
	"net"
	"net/http"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluicehq/sluice/event"
)

type parkResult int

const (
	notParked    parkResult = iota // serve the stream on the handler goroutine
	parkedOK                       // the poller owns the stream
	hijackedOnly                   // the connection is hijacked but not a socket
)

const (
	tick      = 250 * time.Millisecond // keep-alive, expiry and stall checks
	outqEvery = 64 << 10               // bytes written between two measures of unread output
	outqFloor = 256 << 10              // unread output below this never counts as QueueSize events
	chunkRoom = 10                     // chunk header room: 8 hex digits and CRLF
	maxInput  = 64                     // reads of 512 bytes a client may send
)

// Reasons to service a parked stream besides its queue.
const (
	flagKeepAlive uint8 = 1 << iota // nothing written for KeepAlive
	flagWritable                    // EPOLLOUT: a full socket drained
	flagGone                        // the client went away
	flagStalled                     // the socket stayed full for WriteTimeout
)

// parked is a stream served by the poller.
type parked struct {
	// What the ticker reads of every stream on every scan comes first, on
	// one cache line, so that a scan of thousands of streams touches one
	// line per stream.
	expiry int64 // credential expiry plus leeway, Unix ns; 0: never
	// Written by the servicing writer, read by the ticker and, with
	// lastDue, under c.mu by nextDue.
	lastWrite atomic.Int64 // Unix ns
	lastDue   atomic.Int64 // Unix ns: when the last write was due
	blockedAt atomic.Int64 // Unix ns; 0 when not blocked
	// Set by the servicing writer once outqEvery bytes were written since
	// the ticker last measured the socket's unread output; read and
	// cleared by the ticker.
	measure atomic.Bool

	pl     *poller
	c      *conn
	fd     int // non-blocking socket, owned by the poller
	wr     *writer
	opened time.Time

	// Guarded by c.mu.
	queued     bool
	blocked    bool // pending holds bytes a short write left over
	pendingLen int  // len(pending) while blocked
	hurried    bool // promoted out of the delayed list since last serviced
	closed     bool
	flags      uint8
	// due is when the events queued now were first free to be written
	// (Unix ns), set when they were scheduled; 0: at their write.
	due int64

	// Guarded by poller.mu: where the stream waits, and the generation of
	// its entry in the delayed list (an entry of an older one is stale).
	where uint8
	gen   uint32

	// The stream's mean bytes per event when measure was last set.
	perEvent atomic.Int64
	sent     atomic.Int64 // bytes the socket took in all
	// Ticker only: the bytes the client had acknowledged at the last
	// measure, and the measures in a row that found the unread output past
	// the bound with no progress.
	acked   int64
	strikes uint8

	// Owned by the servicing writer.
	pending    []byte
	unmeasured int  // bytes written since measure was last set
	final      bool // pending ends with the last chunk
}

// poller serves the parked streams of one Server.
type poller struct {
	s        *Server
	ep       int   // epoll instance
	evfd     int   // eventfd that stops the epoll loop
	coalesce int64 // least time between two writes to one stream, ns

	table [16]struct {
		mu sync.Mutex
		m  map[uint64]*parked
	}

	mu      sync.Mutex
	ready   []*parked // ready[head:] wait for a writer, in order
	head    int
	idle    int           // writers waiting on wake
	wake    chan struct{} // a token per wake-up; closed to stop
	delayed []delayedPark // delayed[dhead:], by due time
	dhead   int
	armed   bool
	timer   *time.Timer
	stopped bool

	// life orders add against stopPoller: once stopping is set (under the
	// write lock) no stream is added, so the final sweep closes them all
	// and the epoll instance is never used after it is closed.
	life     sync.RWMutex
	stopping bool

	yielders  []*yielder // one a writer
	scanYield *yielder   // the ticker's, between shards of a scan

	stop chan struct{}
	wg   sync.WaitGroup
}

var errStopping = errors.New("stream: the server is closed")

func (pl *poller) isStopping() bool {
	pl.life.RLock()
	defer pl.life.RUnlock()
	return pl.stopping
}

type delayedPark struct {
	p   *parked
	due int64
	gen uint32 // p.gen when queued: the entry is stale once p was promoted
}

func newPoller(s *Server) (*poller, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(ep)
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN} // id 0: conn ids start at 1
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		_ = unix.Close(ep)
		_ = unix.Close(evfd)
		return nil, err
	}
	n := runtime.GOMAXPROCS(0)
	pl := &poller{s: s, ep: ep, evfd: evfd, coalesce: int64(max(s.cfg.WriteCoalesce, 0)),
		wake: make(chan struct{}, n), stop: make(chan struct{})}
	for range n {
		y, err := newYielder(yieldEvery)
		if err != nil {
			pl.closeYielders()
			_ = unix.Close(ep)
			_ = unix.Close(evfd)
			return nil, err
		}
		pl.yielders = append(pl.yielders, y)
	}
	sy, err := newYielder(scanYieldEvery)
	if err != nil {
		pl.closeYielders()
		_ = unix.Close(ep)
		_ = unix.Close(evfd)
		return nil, err
	}
	pl.scanYield = sy
	for i := range pl.table {
		pl.table[i].m = make(map[uint64]*parked)
	}
	pl.timer = time.AfterFunc(time.Hour, pl.fire)
	pl.timer.Stop()
	pl.wg.Add(n + 2)
	for _, y := range pl.yielders {
		go pl.writer(y)
	}
	go pl.epollLoop()
	go pl.tickLoop()
	return pl, nil
}

// poller returns the Server's poller, started on first use; nil if it
// cannot run (streams then keep their goroutine).
func (s *Server) poller() *poller {
	s.plOnce.Do(func() {
		pl, err := newPoller(s)
		if err != nil {
			s.cfg.Logger.Warn("streams will not be parked", "err", err)
			return
		}
		s.pl.Store(pl)
	})
	return s.pl.Load()
}

// parkedCount returns the number of parked streams.
func (s *Server) parkedCount() int {
	pl := s.pl.Load()
	if pl == nil {
		return 0
	}
	n := 0
	for i := range pl.table {
		sh := &pl.table[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// park hijacks the connection of a stream whose opening block is flushed and
// hands it to the poller. It parks only a GET over HTTP/1.1 without TLS,
// answered by net/http's own response writer (no wrapper that re-encodes the
// body) over a socket: a *net.TCPConn, or a listener's wrapper of one that
// exposes it through syscall.Conn and so declares that bytes may be
// written to the socket directly (sluice.ProblemListener's connections
// do; a wrapper that transforms what is written must not). Anything else
// keeps its goroutine, as does every stream with DisablePark.
func (s *Server) park(w http.ResponseWriter, rc *http.ResponseController, r *http.Request, c *conn, wr *writer, opened time.Time) parkResult {
	if s.cfg.DisablePark || r.ProtoMajor != 1 || r.ProtoMinor < 1 || r.TLS != nil || r.Method != http.MethodGet ||
		!plainResponse(w) {
		return notParked
	}
	pl := s.poller()
	if pl == nil || pl.isStopping() { // after Close, streams keep their goroutine
		return notParked
	}
	nc, _, err := rc.Hijack() // unread client bytes in the reader are dropped
	if err != nil {
		return notParked
	}
	_ = nc.SetDeadline(time.Time{}) // the opening flush set one; writes never wait now
	fd := dupSocket(nc)
	if fd < 0 {
		wr.out = &chunkOutput{nc: nc}
		return hijackedOnly
	}
	_ = nc.Close() // the duplicate keeps the connection open
	wr.out, wr.buf = nil, nil
	p := &parked{pl: pl, c: c, fd: fd, wr: wr, opened: opened}
	if c.p.Expires() {
		p.expiry = c.p.Expiry.Add(s.cfg.Leeway).UnixNano()
	}
	p.lastWrite.Store(time.Now().UnixNano())
	p.lastDue.Store(p.lastWrite.Load())
	if err := pl.add(p); err != nil { // the connection is ours: end it
		_ = unix.Close(fd)
		reason := event.EndServerClosed
		if !errors.Is(err, errStopping) {
			reason = event.EndWriteError
			s.cfg.Logger.Error("stream not parked", "err", err)
		}
		s.closed(c, wr, opened, reason)
		s.detach(c)
		s.active.Done()
		return parkedOK // ended; the handler has nothing left to do
	}
	c.mu.Lock()
	c.pk = p
	c.notify = nil                    // the poller wakes itself
	if len(c.q) > 0 || c.cond != "" { // arrived while the opening block was written
		p.scheduleLocked()
	}
	c.mu.Unlock()
	return parkedOK
}

func (pl *poller) shard(id uint64) int { return int(id % uint64(len(pl.table))) }

// add registers p in the table and with epoll.
func (pl *poller) add(p *parked) error {
	pl.life.RLock()
	defer pl.life.RUnlock()
	if pl.stopping {
		return errStopping
	}
	id := p.c.id
	sh := &pl.table[pl.shard(id)]
	sh.mu.Lock()
	sh.m[id] = p
	sh.mu.Unlock()
	if err := p.control(unix.EPOLL_CTL_ADD, 0); err != nil {
		sh.mu.Lock()
		delete(sh.m, id)
		sh.mu.Unlock()
		return err
	}
	return nil
}

// plainResponse reports whether w is net/http's own HTTP/1.1 response
// writer, not a wrapper: one that re-encodes the body (compression, a
// recorder) would be bypassed by writing to the socket.
func plainResponse(w http.ResponseWriter) bool {
	return reflect.TypeOf(w).String() == "*http.response"
}

// dupSocket returns a duplicate of nc's descriptor, or -1 when nc is not a
// socket (or the descriptor is blocking, which a net.Conn's never is).
func dupSocket(nc net.Conn) int {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	_ = rc.Control(func(s uintptr) {
		fl, err := unix.FcntlInt(s, unix.F_GETFL, 0)
		if err != nil || fl&unix.O_NONBLOCK == 0 {
			return
		}
		if d, err := unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0); err == nil {
			fd = d
		}
	})
	return fd
}

// control adds, modifies or removes p's epoll registration: always the
// client's input and hang-up, edge-triggered, and extra (EPOLLOUT) when a
// short write left bytes over.
func (p *parked) control(op int, extra uint32) error {
	id := p.c.id
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET | extra,
		Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	return unix.EpollCtl(p.pl.ep, op, p.fd, &ev)
}

func (pl *poller) lookup(id uint64) *parked {
	sh := &pl.table[pl.shard(id)]
	sh.mu.Lock()
	p := sh.m[id]
	sh.mu.Unlock()
	return p
}

// stopPoller stops the poller's goroutines. Streams still parked are closed
// without a final event (Drain tells them first); later streams are not
// parked.
func (s *Server) stopPoller() {
	s.plOnce.Do(func() {})
	pl := s.pl.Load()
	if pl == nil {
		return
	}
	pl.life.Lock()
	pl.stopping = true
	pl.life.Unlock()
	close(pl.stop)
	var one [8]byte
	one[0] = 1
	_, _ = unix.Write(pl.evfd, one[:])
	pl.mu.Lock()
	pl.stopped = true
	pl.timer.Stop()
	close(pl.wake)
	pl.mu.Unlock()
	pl.wg.Wait()
	var left []*parked
	for i := range pl.table {
		sh := &pl.table[i]
		sh.mu.Lock()
		for _, p := range sh.m {
			left = append(left, p)
		}
		sh.mu.Unlock()
	}
	for _, p := range left {
		pl.closePark(p, "server-closed")
	}
	pl.closeYielders()
	_ = unix.Close(pl.ep)
	_ = unix.Close(pl.evfd)
}

func (pl *poller) closeYielders() {
	for _, y := range pl.yielders {
		y.close()
	}
	if pl.scanYield != nil {
		pl.scanYield.close()
	}
}
