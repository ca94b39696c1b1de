package stream

// Parking. Once its opening block is flushed, an HTTP/1.1 stream over a plain
// socket is hijacked from net/http and handed to the Server's poller, and its
// handler goroutine returns. A parked stream is a file descriptor, its conn
// and writer, and an entry in the poller's table: no goroutine, no timer, no
// buffer, not even a net.Conn (the poller keeps a duplicate of the socket's
// descriptor and closes the net.Conn, which leaves Go's netpoller). The response stays what net/http began: chunked transfer coding,
// one chunk per write, and the last chunk before the connection is closed.
//
// The poller runs a fixed set of goroutines for every parked stream:
//
//   - writers (GOMAXPROCS of them) take streams from the ready queue and
//     write, without ever waiting, their queued events, a keep-alive or the
//     final event, several frames to a write; every 500 µs of writing a
//     writer yields to the network (yield_linux.go), each through a goroutine
//     of its own;
//   - the epoll loop learns that a client went away (EPOLLRDHUP, EOF) and
//     that a full socket takes bytes again (EPOLLOUT, asked for only while a
//     stream has bytes left over from a short write);
//   - the ticker, every 250 ms, marks keep-alives due, ends streams whose
//     credential expired and cuts streams whose socket stayed full for
//     WriteTimeout;
//   - a timer re-queues streams written to less than WriteCoalesce ago, so
//     that a busy stream gets one write per window, not one per event; a
//     write made more than a window after it was due (behind a long
//     fan-out) counts from when it was due, so it does not delay the next.
//
// Concurrency contract:
//
//   - c.mu guards the scheduling state of a parked stream: queued, blocked,
//     closed, flags and due. Anyone may add flags and call scheduleLocked.
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
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

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
	pl     *poller
	c      *conn
	fd     int // non-blocking socket, owned by the poller
	wr     *writer
	opened time.Time
	expiry int64 // credential expiry plus leeway, Unix ns; 0: never

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

	// Written by the servicing writer, read by the ticker and, with
	// lastDue, under c.mu by nextDue.
	lastWrite atomic.Int64 // Unix ns
	lastDue   atomic.Int64 // Unix ns: when the last write was due
	blockedAt atomic.Int64 // Unix ns; 0 when not blocked

	// Guarded by poller.mu: where the stream waits, and the generation of
	// its entry in the delayed list (an entry of an older one is stale).
	where uint8
	gen   uint32

	// Set by the servicing writer once outqEvery bytes were written since
	// the ticker last measured the socket's unread output; read and
	// cleared by the ticker. perEvent is the stream's mean bytes per event
	// then.
	measure  atomic.Bool
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

// Where a queued stream waits (parked.where).
const (
	whereNone    uint8 = iota // being serviced, or not queued
	whereReady                // in the ready queue
	whereDelayed              // in the delayed list
)

// scheduleLocked queues p for a writer unless it is queued already, closed,
// or blocked with nothing that cannot wait for EPOLLOUT. A stream whose
// pending events reach the slow-consumer bound while its client is not
// blocked is not left to its coalescing window: it is written at once,
// promoted out of the delayed list if it waits there. c.mu is held.
func (p *parked) scheduleLocked() {
	if p.closed {
		return
	}
	if p.queued {
		if !p.hurried && !p.blocked && p.c.fullLocked() {
			p.hurried = true
			p.pl.promote(p)
		}
		return
	}
	urgent := p.c.cond != "" || p.flags&(flagGone|flagStalled) != 0
	if p.blocked && !urgent && p.flags&flagWritable == 0 {
		return
	}
	p.queued = true
	p.due = 0
	if !urgent && p.flags == 0 && p.pl.coalesce > 0 && !p.c.fullLocked() {
		now := time.Now().UnixNano()
		if p.due = p.nextDue(); p.due > now {
			p.pl.later(p, p.due, now)
			return
		}
		p.due = now
	}
	p.pl.push(p)
}

// nextDue is when the next write to p may be made: a window after the last
// write, or, if that write was made more than a window after it was due
// (it waited behind a long fan-out), a window after it was due, so that
// the delay is not passed on to the next event.
func (p *parked) nextDue() int64 {
	w := p.pl.coalesce
	written, due := p.lastWrite.Load(), p.lastDue.Load()
	if written-due > w {
		return due + w
	}
	return written + w
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

	yielders []*yielder // one a writer

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
		y, err := newYielder()
		if err != nil {
			pl.closeYielders()
			_ = unix.Close(ep)
			_ = unix.Close(evfd)
			return nil, err
		}
		pl.yielders = append(pl.yielders, y)
	}
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
// hands it to the poller. It parks only HTTP/1.1 over a plain socket, where
// net/http chunks the response; anything else keeps its goroutine.
func (s *Server) park(rc *http.ResponseController, r *http.Request, c *conn, wr *writer, opened time.Time) parkResult {
	if s.cfg.DisablePark || r.ProtoMajor != 1 || r.ProtoMinor < 1 || r.TLS != nil || r.Method != http.MethodGet {
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
		reason := "server-closed"
		if !errors.Is(err, errStopping) {
			reason = "write-error"
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

// push appends p to the ready queue and wakes an idle writer.
func (pl *poller) push(p *parked) {
	pl.mu.Lock()
	if !pl.stopped {
		p.where = whereReady
		pl.ready = append(pl.ready, p)
		if pl.idle > 0 {
			select {
			case pl.wake <- struct{}{}:
			default:
			}
		}
	}
	pl.mu.Unlock()
}

// promote moves p from the delayed list to the ready queue, if it waits
// there; its entry in the list goes stale. p.c.mu is held.
func (pl *poller) promote(p *parked) {
	pl.mu.Lock()
	if !pl.stopped && p.where == whereDelayed {
		p.gen++
		p.where = whereReady
		pl.ready = append(pl.ready, p)
		if pl.idle > 0 {
			select {
			case pl.wake <- struct{}{}:
			default:
			}
		}
	}
	pl.mu.Unlock()
}

// later queues p for due (Unix ns). p.c.mu is held. Streams are delayed by the same window
// after their last write, so the list is nearly in due order; one served a
// little early is only written a little early.
func (pl *poller) later(p *parked, due, now int64) {
	pl.mu.Lock()
	p.hurried = false // a later promotion is needed again
	if !pl.stopped {
		p.where = whereDelayed
		pl.delayed = append(pl.delayed, delayedPark{p, due, p.gen})
		if !pl.armed {
			pl.armed = true
			pl.timer.Reset(time.Duration(due - now))
		}
	}
	pl.mu.Unlock()
}

// fire moves the delayed streams that are due to the ready queue.
func (pl *poller) fire() {
	now := time.Now().UnixNano()
	pl.mu.Lock()
	defer pl.mu.Unlock()
	moved := 0
	for pl.dhead < len(pl.delayed) && pl.delayed[pl.dhead].due <= now {
		if d := pl.delayed[pl.dhead]; d.gen == d.p.gen && d.p.where == whereDelayed {
			d.p.where = whereReady
			pl.ready = append(pl.ready, d.p)
			moved++
		}
		pl.delayed[pl.dhead] = delayedPark{}
		pl.dhead++
	}
	if pl.dhead == len(pl.delayed) {
		pl.delayed, pl.dhead, pl.armed = pl.delayed[:0], 0, false
	} else {
		if pl.dhead > len(pl.delayed)/2 { // under steady traffic the list never empties
			n := copy(pl.delayed, pl.delayed[pl.dhead:])
			clear(pl.delayed[n:])
			pl.delayed, pl.dhead = pl.delayed[:n], 0
		}
		pl.timer.Reset(time.Duration(pl.delayed[pl.dhead].due - now))
	}
	for i := 0; i < min(moved, pl.idle) && !pl.stopped; i++ {
		select {
		case pl.wake <- struct{}{}:
		default:
		}
	}
}

// writer services ready streams, a batch at a time, until the poller stops.
func (pl *poller) writer(y *yielder) {
	defer pl.wg.Done()
	var batch []*parked
	var buf []byte
	for {
		pl.mu.Lock()
		for pl.head == len(pl.ready) {
			if pl.stopped {
				pl.mu.Unlock()
				return
			}
			pl.idle++
			pl.mu.Unlock()
			<-pl.wake
			y.rested(time.Now().UnixNano())
			pl.mu.Lock()
			pl.idle--
		}
		n := min(len(pl.ready)-pl.head, 64)
		batch = append(batch[:0], pl.ready[pl.head:pl.head+n]...)
		for _, p := range batch {
			p.where = whereNone
		}
		clear(pl.ready[pl.head : pl.head+n])
		if pl.head += n; pl.head == len(pl.ready) {
			pl.ready, pl.head = pl.ready[:0], 0
		}
		pl.mu.Unlock()
		for _, p := range batch {
			buf = pl.service(p, buf)
			y.maybe(time.Now().UnixNano())
		}
		clear(batch)
	}
}

// service writes what p has to write and returns the writer's buffer. It
// runs on one writer at a time per stream (p.queued).
func (pl *poller) service(p *parked, buf []byte) []byte {
	c, wr := p.c, p.wr
	for {
		c.mu.Lock()
		fl, due := p.flags, p.due
		p.flags, p.due, p.hurried = 0, 0, false
		cond, retry := c.cond, c.retryMS
		c.mu.Unlock()
		ending := "write-error" // the reason if writing fails from here
		if cond != "" {
			ending = cond
		}
		switch {
		case fl&flagGone != 0:
			pl.closePark(p, "client-gone")
			return buf
		case fl&flagStalled != 0:
			pl.closePark(p, ending)
			return buf
		}

		if len(p.pending) > 0 { // left over from a short write
			n, err := p.write(p.pending)
			p.sent.Add(int64(n))
			if err != nil {
				pl.closePark(p, ending)
				return buf
			}
			if p.pending = p.pending[n:]; len(p.pending) > 0 {
				c.mu.Lock()
				p.pendingLen = len(p.pending)
				c.mu.Unlock()
				if pl.idleOrAgain(p) {
					continue
				}
				return buf
			}
			p.pending = nil
			p.unblock()
			// A write finished by a slow client counts as made on time now.
			now := time.Now().UnixNano()
			p.lastDue.Store(now)
			p.lastWrite.Store(now)
			if p.final {
				pl.closePark(p, ending)
				return buf
			}
		}

		// Everything queued, or the final blocks, or a keep-alive, as one
		// chunk (the goroutine path writes the same blocks: see loop).
		wr.buf = slices.Grow(buf[:0], 512)[:chunkRoom]
		if cond == "" || cond == CondShuttingDown {
			wr.appendQueued(c)
		}
		if cond != "" {
			if cond == CondShuttingDown {
				wr.buf = event.AppendRetry(wr.buf, retry)
				wr.buf = append(wr.buf, '\n')
			}
			wr.buf = appendStreamError(wr.buf, cond)
		} else if len(wr.buf) == chunkRoom && fl&flagKeepAlive != 0 {
			wr.buf = append(wr.buf, event.KeepAlive...)
		}
		payload := len(wr.buf) - chunkRoom
		final := cond != ""
		full, start := frameChunk(wr.buf, final)
		out := full[start:]
		buf, wr.buf = full[:0], nil
		if cap(buf) > 1<<20 {
			buf = nil // do not keep a burst's buffer
		}
		if len(out) > 0 {
			n, err := p.write(out)
			p.sent.Add(int64(n))
			wr.bytes += payload
			pl.s.cfg.Metrics.Delivered(wr.unrep, payload)
			wr.unrep = 0
			if err != nil {
				pl.closePark(p, ending)
				return buf
			}
			now := time.Now().UnixNano()
			if n < len(out) {
				p.pending = append(p.pending[:0], out[n:]...)
				p.final = final
				p.block(now)
				if pl.idleOrAgain(p) {
					continue
				}
				return buf
			}
			if due == 0 {
				due = now
			}
			p.lastDue.Store(due)
			p.lastWrite.Store(now)
			if p.unmeasured += n; p.unmeasured >= outqEvery && wr.evs > 0 {
				p.unmeasured = 0
				p.perEvent.Store(int64(max(wr.bytes/wr.evs, 1)))
				p.measure.Store(true)
			}
		}
		if final {
			pl.closePark(p, ending)
			return buf
		}
		if pl.idleOrAgain(p) {
			continue
		}
		return buf
	}
}

// idleOrAgain decides, once a write is done, whether the writer goes on with
// p (true) or lets it go: it does not when p waits for EPOLLOUT, is idle, or
// has more events that the coalescing window delays.
func (pl *poller) idleOrAgain(p *parked) bool {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.flags != 0 || (c.cond != "" && !p.blocked) {
		return true // something new: gone, stalled, writable, keep-alive, an end
	}
	if p.blocked || len(c.q) == 0 {
		p.queued = false
		return false
	}
	p.due = 0
	if pl.coalesce > 0 && !c.fullLocked() {
		now := time.Now().UnixNano()
		if p.due = p.nextDue(); p.due > now {
			pl.later(p, p.due, now)
			return false // stays queued, in the delayed list
		}
		p.due = now
	}
	pl.push(p) // stays queued, behind the other ready streams
	return false
}

// block records a short write: p waits for EPOLLOUT, or the stall cut.
func (p *parked) block(now int64) {
	p.blockedAt.Store(now)
	p.c.mu.Lock()
	p.blocked = true
	p.pendingLen = len(p.pending)
	p.c.mu.Unlock()
	_ = p.control(unix.EPOLL_CTL_MOD, unix.EPOLLOUT)
}

func (p *parked) unblock() {
	p.c.mu.Lock()
	p.blocked = false
	p.pendingLen = 0
	p.c.mu.Unlock()
	p.blockedAt.Store(0)
	_ = p.control(unix.EPOLL_CTL_MOD, 0)
}

// write writes as much of b as the socket takes now, never waiting.
func (p *parked) write(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := rawWrite(p.fd, b[n:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return n, nil
		case err != nil:
			return n, err
		}
		n += m
	}
	return n, nil
}

// rawWrite is send(2) without telling the scheduler: the call never waits
// (MSG_DONTWAIT, on a non-blocking descriptor anyway), and a P kept through
// a few microseconds in the kernel costs less than handing it off and back
// (entersyscall/exitsyscall, sysmon retakes) for every write. send rather
// than write skips the file layer (vfs_write and fdget_pos, 8 % of the
// server's samples under perf, though an A/B run could not tell the two
// apart through the noise) and, with MSG_NOSIGNAL, raises no SIGPIPE on a
// connection the client reset.
func rawWrite(fd int, b []byte) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)),
		unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// frameChunk turns buf, chunkRoom reserved bytes then the payload, into one
// chunk, followed by the last chunk when final. It returns the buffer (which
// appending may have moved) and where the bytes to write start in it:
// nothing is to be written for an empty payload that is not final.
func frameChunk(buf []byte, final bool) ([]byte, int) {
	start := chunkRoom
	if n := len(buf) - chunkRoom; n > 0 {
		var room [chunkRoom]byte
		h := appendChunkHeader(room[:0], n)
		start -= len(h)
		copy(buf[start:], h)
		buf = append(buf, crlf...)
	}
	if final {
		buf = append(buf, lastChunk...)
	}
	return buf, start
}

// closePark ends a parked stream: the socket is closed and everything the
// stream held released. Only the writer servicing p calls it (or shutdown,
// once the writers are gone).
func (pl *poller) closePark(p *parked, reason string) {
	c := p.c
	c.mu.Lock()
	p.closed = true
	_ = unix.Close(p.fd) // also leaves the epoll set
	clear(c.q)
	c.q, c.spare = nil, nil
	c.mu.Unlock()
	sh := &pl.table[pl.shard(c.id)]
	sh.mu.Lock()
	delete(sh.m, c.id)
	sh.mu.Unlock()
	p.pending = nil
	pl.s.closed(c, p.wr, p.opened, reason)
	pl.s.detachAsync(c, true) // a writer never waits on the broker
	pl.s.active.Done()
}

// epollLoop turns socket readiness into flags on parked streams.
func (pl *poller) epollLoop() {
	defer pl.wg.Done()
	evs := make([]unix.EpollEvent, 256)
	scratch := make([]byte, 512)
	for {
		n, err := unix.EpollWait(pl.ep, evs, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			pl.s.cfg.Logger.Error("stream poller stopped", "err", err)
			return
		}
		for i := range evs[:n] {
			e := &evs[i]
			id := uint64(uint32(e.Fd)) | uint64(uint32(e.Pad))<<32
			if id == 0 {
				return // shutdown
			}
			p := pl.lookup(id)
			if p == nil {
				continue // closed since
			}
			var fl uint8
			if e.Events&unix.EPOLLOUT != 0 {
				fl |= flagWritable
			}
			p.c.mu.Lock()
			if e.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				fl |= flagGone
			} else if e.Events&unix.EPOLLIN != 0 && !p.closed && p.discardInput(scratch) {
				fl |= flagGone
			}
			if fl != 0 {
				p.flags |= fl
				p.scheduleLocked()
			}
			p.c.mu.Unlock()
		}
	}
}

// discardInput reads and drops what the client sent (an SSE client sends
// nothing after its request) and reports whether the client is gone: EOF, an
// error, or more input than any client has reason to send. c.mu is held
// and p is not closed.
func (p *parked) discardInput(buf []byte) (gone bool) {
	for range maxInput {
		n, err := unix.Read(p.fd, buf)
		switch {
		case err == unix.EAGAIN:
			return false
		case err == unix.EINTR:
			continue
		case err != nil || n == 0:
			return true
		}
	}
	return true
}

// tickLoop runs scan every tick.
func (pl *poller) tickLoop() {
	defer pl.wg.Done()
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-pl.stop:
			return
		case now := <-t.C:
			pl.scan(now.UnixNano())
		}
	}
}

// scan marks keep-alives due, ends streams whose credential expired (SPEC §6:
// within a tick after expiry plus leeway) and cuts stalled writes.
func (pl *poller) scan(now int64) {
	ka, wt := int64(pl.s.cfg.KeepAlive), int64(pl.s.cfg.WriteTimeout)
	for i := range pl.table {
		sh := &pl.table[i]
		sh.mu.Lock()
		for _, p := range sh.m {
			expired := p.expiry != 0 && now >= p.expiry
			if p.measure.Load() {
				p.measureUnread()
			}
			var fl uint8
			if b := p.blockedAt.Load(); b != 0 {
				if now-b >= wt {
					fl = flagStalled
				}
			} else if now-p.lastWrite.Load() >= ka {
				fl = flagKeepAlive
			}
			if !expired && fl == 0 {
				continue
			}
			p.c.mu.Lock()
			if fl == flagStalled && !p.blocked {
				fl = 0 // the write caught up since blockedAt was read
			}
			if fl == flagStalled {
				p.c.finishLocked(CondSlowConsumer, 0) // unless it ends already
			}
			if expired {
				p.c.finishLocked(CondTokenExpired, 0)
				if p.blocked {
					// Its socket is full: the final event cannot be
					// written now, and the stream must end within 1 s.
					fl |= flagStalled
				}
			}
			if fl != 0 {
				p.flags |= fl
				p.scheduleLocked()
			}
			p.c.mu.Unlock()
		}
		sh.mu.Unlock()
	}
}

// measureUnread ends p as a slow consumer when output its socket took but
// its client has not read (SIOCOUTQ: sent and not acknowledged, or not sent)
// stayed at or past the bound, MaxPendingBytes, or QueueSize events when it
// holds at least outqFloor bytes (the kernel buffers that much for a reader
// that is merely a little behind), while the client read nothing over two
// ticks: a client that does not read leaves a burst there while the kernel's
// buffers hide it from the short-write check; one that reads, however
// slowly, is not cut by this. Runs on the ticker.
func (p *parked) measureUnread() {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.closed || c.cond != "" {
		return
	}
	n, err := unix.IoctlGetInt(p.fd, unix.SIOCOUTQ)
	if err != nil {
		p.measure.Store(false)
		return
	}
	per := max(p.perEvent.Load(), 1)
	acked := p.sent.Load() - int64(n)
	progress := acked > p.acked
	p.acked = acked
	if n < c.maxBytes && (n < outqFloor || int64(n)/per < int64(c.max)) {
		p.strikes = 0
		p.measure.Store(false)
		return
	}
	if progress {
		p.strikes = 0 // behind, but reading: measured again next tick
		return
	}
	if p.strikes++; p.strikes >= 2 {
		c.finishLocked(CondSlowConsumer, 0)
	}
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
}
