//go:build linux

package stream

// The poller's watchers: the epoll loop (client input, hang-ups, a full
// socket draining) and the ticker (keep-alives, credential expiry, stalled
// and unread output).

import (
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sluicehq/sluice/event"
)

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

// scanYieldEvery is how long a scan works before it lets the Go scheduler
// poll the network. A scan walks every parked stream, ~1 ms for 5,000 on a
// loaded core: with one P, a publish request arriving meanwhile would wait
// for it whole (see yielder). It yields between shards, never holding a
// shard's lock.
const scanYieldEvery = 100 * time.Microsecond

// scan marks keep-alives due, ends streams whose credential expired (protocol.md §6:
// within a tick after expiry plus leeway) and cuts stalled writes.
func (pl *poller) scan(now int64) {
	ka, wt := int64(pl.s.cfg.KeepAlive), int64(pl.s.cfg.WriteTimeout)
	y := pl.scanYield
	y.rested(time.Now().UnixNano())
	for i := range pl.table {
		if i > 0 {
			y.maybe(time.Now().UnixNano())
		}
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
			if expired {
				p.c.finishLocked(event.EndTokenExpired, 0)
				if p.blocked {
					// Its socket is full: the final event cannot be
					// written now, and the stream must end within 1 s.
					fl |= flagStalled
				}
			}
			if fl&flagStalled != 0 {
				// The client took nothing for WriteTimeout: a slow
				// consumer, unless the stream ends for another reason.
				p.c.finishLocked(event.EndSlowConsumer, 0)
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
// slowly, is not cut by this.
//
// A burst of small events can fit whole in the two kernels' buffers, most
// of it in the client's, where SIOCOUTQ does not see it, and leave no write
// blocked. Output waiting under the bound while the client advertises a
// zero receive window (its buffer full, its reader not reading) is treated
// as a blocked write is: the stream is cut once the client has taken
// nothing for WriteTimeout. Runs on the ticker.
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
	over := n >= c.maxBytes || n >= outqFloor && int64(n)/per >= int64(c.max)
	if !over && (n == 0 || !peerWindowClosed(p.fd)) {
		p.strikes = 0
		p.measure.Store(false)
		return
	}
	if progress {
		p.strikes = 0 // behind, but reading: measured again next tick
		return
	}
	need := 2
	if !over { // a zero window: the grace of a blocked write
		need = max(2, min(255, int((p.pl.s.cfg.WriteTimeout+tick-1)/tick)))
	}
	if p.strikes < 255 {
		p.strikes++
	}
	if int(p.strikes) >= need {
		c.finishLocked(event.EndSlowConsumer, 0)
	}
}

// peerWindowClosed reports whether the client advertises a zero receive
// window: its kernel's buffer for the stream is full, so its reader has
// stopped reading (TCP_INFO's tcpi_snd_wnd, Linux 6.2 and later; false
// where the kernel does not report it).
func peerWindowClosed(fd int) bool {
	var info unix.TCPInfo
	size := uint32(unsafe.Sizeof(info))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_INFO,
		uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 || uintptr(size) < unsafe.Offsetof(info.Snd_wnd)+unsafe.Sizeof(info.Snd_wnd) {
		return false
	}
	return info.Snd_wnd == 0
}
