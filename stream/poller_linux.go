//go:build linux

package stream

import (
	"slices"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sluicehq/sluice/event"
)

// The poller's scheduling and writing: streams queued for a writer, the
// coalescing window, and the writers that service them (see park_linux.go
// for the concurrency contract).

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
		cond := c.cond
		c.mu.Unlock()
		ending := event.EndWriteError // the reason if writing fails from here
		if cond != "" {
			ending = cond
		}
		switch {
		case fl&flagGone != 0:
			pl.closePark(p, event.EndClientGone)
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

		// What the stream writes next, as one chunk.
		wr.buf = slices.Grow(buf[:0], 512)[:chunkRoom]
		cond = wr.next(fl&flagKeepAlive != 0)
		if cond != "" {
			ending = cond
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
func (pl *poller) closePark(p *parked, reason event.EndReason) {
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
